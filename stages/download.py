"""DVC stage `download@<dataset>`: fetch a dataset's canonical files, checksum-verified.

    python -m stages.download --dataset NAME --out data/raw/NAME [--params params.yaml]

Environment: ``VAELAB_DATA_MIRROR`` (a local folder to copy the files from instead of the
network) and ``VAELAB_SOURCES`` (a replacement source table, for tests); see
:mod:`vaelab.download`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from vaelab.errors import run_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a key under `datasets:` in params.yaml")
    parser.add_argument("--out", required=True, help="folder to hold the raw files (data/raw/<dataset>)")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    args = parser.parse_args(argv)

    from vaelab.download import download_dataset, sources_override_warning
    from vaelab.params import load_params
    from vaelab.sources import load_source_table

    dataset = load_params(args.params).dataset(args.dataset)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    warning = sources_override_warning()
    if warning:
        print(warning, file=sys.stderr)
    table = load_source_table()
    download_dataset(dataset.kind, args.out, table=table, path=dataset.path)


if __name__ == "__main__":
    run_cli(main)
