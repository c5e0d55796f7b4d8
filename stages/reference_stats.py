"""Stage reference_stats: Inception feature mean and covariance of a dataset's real test images.

    python -m stages.reference_stats --dataset mnist --data data/prepared/mnist.npz \
        --out data/reference/mnist.npz

Depends only on the prepared data and the FID params (weights, image size, and the seed, which
picks random weights and the KID sample). Output: see :func:`vaelab.evaluation.save_reference`.
"""

from __future__ import annotations

import argparse

from vaelab.cli import stage_params, stage_parser
from vaelab.errors import run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(__doc__)
    parser.add_argument("--data", required=True, help="prepared .npz of the preprocess stage")
    parser.add_argument("--out", required=True, help="reference statistics .npz to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params, _ = stage_params(args)

    from vaelab.data import load_prepared
    from vaelab.evaluation import compute_reference, save_reference
    from vaelab.features import build_feature_extractor

    data = load_prepared(args.data)
    extractor = build_feature_extractor(params.fid.weights, params.fid.image_size, params.seed)
    reference = compute_reference(data.x_test, extractor, params.fid.batch_size, params.seed)
    save_reference(reference, args.out)
    print(f"{args.dataset}: reference statistics of {reference.n} test images "
          f"({extractor.network}, weights {extractor.weights_label}, {extractor.image_size} px) -> {args.out}")


if __name__ == "__main__":
    run_cli(main)
