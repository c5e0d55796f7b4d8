"""DVC stage `preprocess@<dataset>`: decode the raw files into one prepared .npz.

    python -m stages.preprocess --dataset NAME --raw data/raw/NAME --out data/prepared/NAME.npz
        [--params params.yaml]

Writes uint8 NHWC train/test images, int64 labels and class names (see :mod:`vaelab.data`);
the work per dataset kind is described in :mod:`vaelab.preprocess`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from vaelab.errors import run_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a key under `datasets:` in params.yaml")
    parser.add_argument("--raw", required=True, help="the download stage's folder (data/raw/<dataset>)")
    parser.add_argument("--out", required=True, help="the prepared file to write (data/prepared/<dataset>.npz)")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    args = parser.parse_args(argv)

    from vaelab.data import save_prepared
    from vaelab.download import sources_override_warning
    from vaelab.params import load_params
    from vaelab.preprocess import prepare_dataset
    from vaelab.sources import load_source_table

    params = load_params(args.params)
    dataset = params.dataset(args.dataset)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    warning = sources_override_warning()
    if warning:
        print(warning, file=sys.stderr)
    data = prepare_dataset(dataset, args.raw, params.seed, table=load_source_table())
    save_prepared(data, args.out)
    logging.getLogger("stages.preprocess").info(
        "%s: %d train / %d test images of %s, %d classes -> %s", args.dataset, len(data.x_train),
        len(data.x_test), "x".join(map(str, data.image_shape)), len(data.class_names), args.out)


if __name__ == "__main__":
    run_cli(main)
