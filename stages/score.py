"""Stages score_prior, score_gmm, score_two_stage, score_reconstructions: one sampler's metrics.

    python -m stages.score --dataset mnist --sampler gmm --models models/mnist \
        --fitted models/mnist.gmm.npz --reference data/reference/mnist.npz --out metrics/mnist/gmm.json
    python -m stages.score --dataset mnist --sampler reconstructions --models models/mnist \
        --data data/prepared/mnist.npz --reference data/reference/mnist.npz --out metrics/mnist/reconstructions.json

A sampler (``prior``, ``gmm``, ``two_stage``: :mod:`vaelab.model.samplers`): FID, KID, precision
and recall of ``fid.num_samples`` decoded samples against the reference statistics.
``reconstructions``: FID of the test images' reconstructions, the test ELBO and active units.
Each is a stage of its own, so a change to one sampler re-scores that sampler alone; the
``evaluate`` stage joins the parts into the dataset's metrics file.
"""

from __future__ import annotations

import argparse
import logging

from vaelab.core.cli import run_cli, stage_params, stage_parser, start_tensorflow
from vaelab.core.errors import VaelabError

SCORED = ("prior", "gmm", "two_stage", "reconstructions")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(__doc__, ("models", "reference"), out="score part .json to write")
    parser.add_argument("--sampler", required=True, choices=SCORED, help="what to score")
    parser.add_argument("--fitted", help="gmm, two_stage: the sampler's fit (its fit stage's output)")
    parser.add_argument("--data", help="reconstructions: prepared .npz of the preprocess stage (its test images)")
    args = parser.parse_args(argv)
    needs = {"gmm": "fitted", "two_stage": "fitted", "reconstructions": "data"}.get(args.sampler)
    if needs and getattr(args, needs) is None:
        parser.error(f"--sampler {args.sampler} needs --{needs}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raw = stage_params(args)

    from vaelab.core.params import shared_params
    from vaelab.metrics.evaluation import (sampler_part, score_reconstructions, score_samples, score_test, test_part,
                                       write_metrics)
    from vaelab.metrics.features import build_feature_extractor, find_weights, network_metadata
    from vaelab.metrics.params import fid_params
    from vaelab.metrics.reference import check_reference, load_reference

    params, fid = shared_params(raw), fid_params(raw)
    # Cheap checks first: missing weights or mismatched reference statistics fail before any
    # network is built.
    reference = load_reference(args.reference)
    weights = find_weights(fid.network, params.data_seed)  # the reference statistics' network
    check_reference(reference, network_metadata(weights, fid.image_size, fid.precision), args.reference)

    from vaelab.core.prepared import load_prepared
    from vaelab.model import networks
    from vaelab.model.elbo import elbo_terms
    from vaelab.model.outputs import load_vae
    from vaelab.model.samplers import load_sampler

    data = load_prepared(args.data) if args.sampler == "reconstructions" else None
    start_tensorflow()
    vae = load_vae(args.models)
    batch = params.batch_size
    extractor = build_feature_extractor(fid.network, fid.image_size, params.data_seed, fid.precision, weights)
    log = logging.getLogger(__name__)
    if data is not None:
        if tuple(vae.config.image_shape) != tuple(data.x_test.shape[1:]):
            raise VaelabError(
                f"model {args.models} takes images of shape {tuple(vae.config.image_shape)} but {args.data} holds "
                f"{tuple(data.x_test.shape[1:])}; re-run `dvc repro train@{args.dataset}`")
        reconstruction, count = score_reconstructions(
            lambda images: networks.reconstruct_uint8(vae, images, batch), data.x_test, fid.num_samples, reference,
            extractor, fid.batch_size)
        # beta=1: report the true ELBO whatever beta training used.
        test = score_test(lambda images: elbo_terms(vae, images, seed=params.seed, beta=1.0, batch_size=batch),
                          lambda images: networks.encode_mean(vae, images, batch), data.x_test)
        part = test_part(reconstruction, count, reference.n, test, extractor.metadata)
        log.info("%s: reconstruction fid %.3f, test elbo %.2f nats -> %s", args.dataset, reconstruction["fid"],
                 test["elbo"], args.out)
    else:
        draw = load_sampler(args.sampler, vae.config.latent_dim, args.fitted, args.dataset)
        # All latent points at once: (num_samples, latent_dim) floats are small; their images are not.
        z = draw(fid.num_samples, params.seed)
        metrics, points = score_samples(lambda start, count: networks.decode_uint8(vae, z[start:start + count], batch),
                                        fid.num_samples, reference, extractor, fid.batch_size, params.seed,
                                        args.sampler)
        part = sampler_part(args.sampler, metrics, points, fid.num_samples, extractor.metadata)
        log.info("%s: %s fid %.3f, precision %.3f, recall %.3f -> %s", args.dataset, args.sampler, metrics["fid"],
                 metrics["precision"], metrics["recall"], args.out)
    write_metrics(part, args.out)


if __name__ == "__main__":
    run_cli(main)
