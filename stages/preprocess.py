"""DVC stage `preprocess@<dataset>`: decode the raw files into one prepared .npz.

    python -m stages.preprocess --dataset NAME --raw data/raw/NAME --out data/prepared/NAME.npz
        [--params params.yaml]

Writes uint8 NHWC train/test images, int64 labels and class names (see :mod:`vaelab.data`);
the work per dataset kind is described in :mod:`vaelab.preprocess`.
"""

from __future__ import annotations

import logging
import sys

from vaelab.cli import stage_params, stage_parser, stage_source_table
from vaelab.errors import run_cli


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, ("raw",), out="the prepared file to write (data/prepared/<dataset>.npz)")
    args = parser.parse_args(argv)

    from vaelab.data import save_prepared
    from vaelab.preprocess import prepare_dataset

    params, dataset = stage_params(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    data = prepare_dataset(dataset, args.raw, params.seed, table=stage_source_table())
    save_prepared(data, args.out)
    logging.getLogger("stages.preprocess").info(
        "%s: %d train / %d test images of %s, %d classes -> %s", args.dataset, len(data.x_train),
        len(data.x_test), "x".join(map(str, data.image_shape)), len(data.class_names), args.out)


if __name__ == "__main__":
    run_cli(main)
