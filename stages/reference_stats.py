"""Stage reference_stats: Inception feature mean and covariance of a dataset's real test images.

    python -m stages.reference_stats --dataset mnist --data data/prepared/mnist.npz \
        --out data/reference/mnist.npz

Depends only on the prepared data, the FID params (network, image size, precision) and
``data_seed``, which picks the random network's weights and the KID sample. Output: see
:func:`vaelab.metrics.reference.save_reference`.
"""

from __future__ import annotations

import argparse
import logging

from vaelab.core.cli import run_cli, stage_params, stage_parser, start_tensorflow


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return stage_parser(__doc__, ("data",), out="reference statistics .npz to write").parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raw = stage_params(args)

    from vaelab.core.params import shared_params
    from vaelab.core.prepared import load_prepared
    from vaelab.metrics.features import build_feature_extractor, find_weights
    from vaelab.metrics.params import fid_params
    from vaelab.metrics.reference import compute_reference, save_reference

    params, fid = shared_params(raw), fid_params(raw)
    data = load_prepared(args.data)
    weights = find_weights(fid.network, params.data_seed)  # a missing weights file fails before TensorFlow starts
    start_tensorflow()
    extractor = build_feature_extractor(fid.network, fid.image_size, params.data_seed, fid.precision, weights)
    reference = compute_reference(data.x_test, extractor, fid.batch_size, params.data_seed)
    save_reference(reference, args.out)
    meta = extractor.metadata
    logging.getLogger(__name__).info(
        "%s: reference statistics of %d test images (%s, weights %s, %s) -> %s", args.dataset, reference.n,
        meta["feature_network"], meta["feature_weights"], meta["fid_precision"], args.out)


if __name__ == "__main__":
    run_cli(main)
