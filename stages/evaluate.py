"""Stage evaluate: FID, KID, precision and recall of prior and ex-post density samples, FID of
reconstructions, test ELBO, active units.

    python -m stages.evaluate --dataset mnist --data data/prepared/mnist.npz --models models/mnist \
        --density models/mnist.gmm.npz --two-stage models/mnist.two_stage --reference data/reference/mnist.npz \
        --out metrics/mnist.json --provenance metrics/mnist.provenance.json

Writes the metrics, nested per sampler (see :func:`vaelab.fid.evaluation.evaluate`), for `dvc
metrics`, and beside them what made them.
"""

from __future__ import annotations

import argparse
import logging

from vaelab.core.cli import run_cli, stage_params, stage_parser, start_tensorflow
from vaelab.core.errors import VaelabError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(__doc__, ("data", "models", "density", "two_stage", "reference"),
                          out="metrics .json to write")
    parser.add_argument("--provenance", required=True,
                        help="what made the metrics (network, weights and hash, preprocessing, counts): .json to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raw = stage_params(args)

    from vaelab.core.params import shared_params
    from vaelab.fid.evaluation import evaluate, write_metrics
    from vaelab.fid.features import build_feature_extractor, find_weights, network_metadata
    from vaelab.fid.params import fid_params
    from vaelab.fid.reference import check_reference, load_reference

    params, fid = shared_params(raw), fid_params(raw)

    # Cheap checks first: missing weights or mismatched reference statistics fail before any
    # network is built.
    reference = load_reference(args.reference)
    weights = find_weights(fid.network, params.data_seed)  # the reference statistics' network
    check_reference(reference, network_metadata(weights, fid.image_size, fid.precision), args.reference)

    from vaelab.model import networks
    from vaelab.core.prepared import load_prepared
    from vaelab.model.elbo import elbo_terms
    from vaelab.model.outputs import load_vae
    from vaelab.model.samplers import load_samplers

    data = load_prepared(args.data)
    start_tensorflow()
    vae = load_vae(args.models)
    if tuple(vae.config.image_shape) != tuple(data.x_test.shape[1:]):
        raise VaelabError(
            f"model {args.models} takes images of shape {tuple(vae.config.image_shape)} but {args.data} holds "
            f"{tuple(data.x_test.shape[1:])}; re-run `dvc repro train@{args.dataset}`"
        )
    samplers = load_samplers(vae.config.latent_dim, args.density, args.two_stage, args.dataset)
    extractor = build_feature_extractor(fid.network, fid.image_size, params.data_seed, fid.precision, weights)
    # All latent points at once: (num_samples, latent_dim) floats are small; their images are not.
    latents = {name: draw(fid.num_samples, params.seed) for name, draw in samplers.items()}
    batch = params.batch_size

    def sampler(z):
        return lambda start, count: networks.decode_uint8(vae, z[start:start + count], batch)

    result = evaluate(
        samplers={name: sampler(z) for name, z in latents.items()},
        num_samples=fid.num_samples,
        reconstruct_batch=lambda images: networks.reconstruct_uint8(vae, images, batch),
        test_images=data.x_test,
        # beta=1: report the true ELBO whatever beta training used.
        elbo=lambda images: elbo_terms(vae, images, seed=params.seed, beta=1.0, batch_size=batch),
        encode_mean=lambda images: networks.encode_mean(vae, images, batch),
        reference=reference, extractor=extractor, batch_size=fid.batch_size, seed=params.seed,
    )
    write_metrics(result.provenance, args.provenance)
    write_metrics(result.metrics, args.out)
    metrics = result.metrics
    logging.getLogger(__name__).info(
        "%s: fid %s, precision %.3f, recall %.3f (prior), reconstruction fid %.3f, test elbo %.2f nats -> %s",
        args.dataset, ", ".join(f"{name} {metrics[name]['fid']:.3f}" for name in latents),
        metrics["prior"]["precision"], metrics["prior"]["recall"], metrics["reconstruction"]["fid"],
        metrics["test"]["elbo"], args.out)


if __name__ == "__main__":
    run_cli(main)
