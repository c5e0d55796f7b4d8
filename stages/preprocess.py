"""DVC stage `preprocess@<dataset>`: decode the raw files into one prepared .npz.

    python -m stages.preprocess --dataset NAME --raw data/raw/NAME --out data/prepared/NAME.npz
        [--params params.yaml]

Writes uint8 NHWC train/test images, int64 labels and class names (see :mod:`vaelab.core.prepared`);
the work per dataset kind is described in :mod:`vaelab.data.preprocess`.
"""

from __future__ import annotations

import logging

from vaelab.core.cli import run_cli, stage_params, stage_parser


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, ("raw",), out="the prepared file to write (data/prepared/<dataset>.npz)")
    args = parser.parse_args(argv)

    from vaelab.core.prepared import save_prepared
    from vaelab.data.kinds import KINDS
    from vaelab.core.params import shared_params
    from vaelab.data.params import data_params
    from vaelab.data.preprocess import prepare_dataset

    raw = stage_params(args)
    dataset = data_params(raw, args.dataset)
    data = prepare_dataset(KINDS[dataset.kind], dataset, args.raw, shared_params(raw).data_seed)
    save_prepared(data, args.out)
    logging.getLogger(__name__).info(
        "%s: %d train / %d test images of %s, %d classes -> %s", args.dataset, len(data.x_train),
        len(data.x_test), "x".join(map(str, data.image_shape)), len(data.class_names), args.out)


if __name__ == "__main__":
    run_cli(main)
