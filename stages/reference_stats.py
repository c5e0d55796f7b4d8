"""Stage reference_stats: Inception feature mean and covariance of a dataset's real test images.

    python -m stages.reference_stats --dataset mnist --data data/prepared/mnist.npz \
        --out data/reference/mnist.npz

Depends only on the prepared data and the FID params (network, image size, precision, and the
seed, which picks the random network's weights and the KID sample). Output: see :func:`vaelab.evaluation.save_reference`.
"""

from __future__ import annotations

import argparse

from vaelab.cli import stage_params, stage_parser
from vaelab.errors import run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return stage_parser(__doc__, ("data",), out="reference statistics .npz to write").parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params, _ = stage_params(args)

    from vaelab.data import load_prepared
    from vaelab.evaluation import compute_reference, save_reference
    from vaelab.features import build_feature_extractor

    data = load_prepared(args.data)
    fid = params.fid
    extractor = build_feature_extractor(fid.network, fid.image_size, params.seed, fid.precision)
    reference = compute_reference(data.x_test, extractor, fid.batch_size, params.seed)
    save_reference(reference, args.out)
    meta = extractor.metadata
    print(f"{args.dataset}: reference statistics of {reference.n} test images ({meta['feature_network']}, "
          f"weights {meta['feature_weights']}, {meta['fid_precision']}) -> {args.out}")


if __name__ == "__main__":
    run_cli(main)
