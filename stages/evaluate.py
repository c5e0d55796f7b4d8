"""Stage evaluate: FID of prior samples and of reconstructions, KID, test ELBO, active units.

    python -m stages.evaluate --dataset mnist --data data/prepared/mnist.npz \
        --models models/mnist --reference data/reference/mnist.npz --out metrics/mnist.json

Writes flat JSON metrics (see :func:`vaelab.evaluation.evaluate`) for `dvc metrics`.
"""

from __future__ import annotations

import argparse

from vaelab.cli import stage_params, stage_parser
from vaelab.errors import VaelabError, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(__doc__)
    parser.add_argument("--data", required=True, help="prepared .npz of the preprocess stage")
    parser.add_argument("--models", required=True, help="model folder of the train stage")
    parser.add_argument("--reference", required=True, help="reference statistics of the reference_stats stage")
    parser.add_argument("--out", required=True, help="metrics .json to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params, _ = stage_params(args)
    fid = params.fid

    from vaelab.evaluation import check_reference, evaluate, load_reference, write_metrics
    from vaelab.features import build_feature_extractor, find_weights, network_metadata

    # Cheap checks first: missing weights or mismatched reference statistics fail before any
    # network is built.
    reference = load_reference(args.reference)
    weights = find_weights(fid.network, params.seed)
    check_reference(reference, network_metadata(weights, fid.image_size, fid.precision), args.reference)

    from vaelab import models
    from vaelab.data import load_prepared
    from vaelab.losses import elbo_terms

    data = load_prepared(args.data)
    vae = models.load_vae(args.models)
    if tuple(vae.config.image_shape) != tuple(data.x_test.shape[1:]):
        raise VaelabError(
            f"model {args.models} takes images of shape {tuple(vae.config.image_shape)} but {args.data} holds "
            f"{tuple(data.x_test.shape[1:])}; re-run `dvc repro train@{args.dataset}`"
        )
    extractor = build_feature_extractor(fid.network, fid.image_size, params.seed, fid.precision, weights)
    # All prior points at once: (num_samples, latent_dim) floats are small; their images are not.
    z = models.sample_prior(vae.config.latent_dim, fid.num_samples, params.seed)
    batch = params.batch_size

    metrics = evaluate(
        generate_batch=lambda start, count: models.decode_uint8(vae, z[start:start + count], batch),
        num_samples=fid.num_samples,
        reconstruct_batch=lambda images: models.reconstruct_uint8(vae, images, batch),
        test_images=data.x_test,
        # beta=1: report the true ELBO whatever beta training used.
        elbo=lambda images: elbo_terms(vae, images, seed=params.seed, beta=1.0, batch_size=batch),
        encode_mean=lambda images: models.encode_mean(vae, images, batch),
        reference=reference, extractor=extractor, batch_size=fid.batch_size, seed=params.seed,
    )
    write_metrics(metrics, args.out)
    print(f"{args.dataset}: fid {metrics['fid']:.3f}, fid_reconstruction {metrics['fid_reconstruction']:.3f}, "
          f"test_elbo {metrics['test_elbo']:.2f} nats -> {args.out}")


if __name__ == "__main__":
    run_cli(main)
