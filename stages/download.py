"""DVC stage `download@<dataset>`: fetch a dataset's canonical files, checksum-verified.

    python -m stages.download --dataset NAME --out data/raw/NAME [--params params.yaml]

Environment: ``VAELAB_DATA_MIRROR`` (a local folder to copy the files from instead of the
network) and ``VAELAB_SOURCES`` (a replacement source table, for tests); see
:mod:`vaelab.download`.
"""

from __future__ import annotations

from vaelab.cli import run_cli, stage_params, stage_parser, stage_source_table


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, out="folder to hold the raw files (data/raw/<dataset>)")
    args = parser.parse_args(argv)

    from vaelab.download import download_dataset

    _, dataset = stage_params(args)
    download_dataset(stage_source_table()[dataset.kind], args.out, path=dataset.path)


if __name__ == "__main__":
    run_cli(main)
