"""DVC stage `download@<dataset>`: fetch a dataset's files, verified against pinned hashes.

    python -m stages.download --dataset NAME --out data/raw/NAME [--params params.yaml]

The files, their mirrors and pinned hashes are the kind's ``vaelab/data/sources/<kind>.toml``:
a file verifies by its own checksum (the canonical file) or, where pinned, by its content (the
hash of its gunzipped bytes); Caltech101's extracted folder, in a local mirror, by a manifest
hash. One info line per file says which matched; a file that matches none is a one-line error
naming both hashes of each identity tried, and nothing of that file is left in ``--out``.

Environment: ``VAELAB_DATA_MIRROR`` (a local folder to copy the files from instead of the
network) and ``VAELAB_SOURCES`` (a replacement source table, for tests); see
:mod:`vaelab.data.download`.
"""

from __future__ import annotations

import logging

from vaelab.core.cli import run_cli, stage_params, stage_parser

log = logging.getLogger("vaelab")


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, out="folder to hold the raw files (data/raw/<dataset>)")
    args = parser.parse_args(argv)

    from vaelab.data.download import download_dataset
    from vaelab.data.kinds import KINDS, load_sources, sources_override_warning
    from vaelab.data.params import data_params

    data = data_params(stage_params(args), args.dataset)
    warning = sources_override_warning()  # VAELAB_SOURCES replaces the canonical table: say so loudly
    if warning:
        log.warning("%s", warning)
    download_dataset(KINDS[data.kind], load_sources(data.kind), args.out, path=data.path)


if __name__ == "__main__":
    run_cli(main)
