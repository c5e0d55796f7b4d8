"""What every stage command shares: its argument parser, its params and the source table.

Stages stay thin: ``dvc.yaml`` passes each one ``--dataset`` and its paths; the stage adds its
own path arguments to :func:`stage_parser` and loads its settings with :func:`stage_params`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaelab.params import DatasetParams, Params
    from vaelab.sources import SourceFile


def stage_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (the stage's docstring), with
    ``--dataset`` and ``--params``; the stage adds its input and output paths."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a key under datasets: in params.yaml")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    return parser


def stage_params(args: argparse.Namespace) -> tuple["Params", "DatasetParams"]:
    """Load and validate ``args.params`` and pick ``args.dataset``: bad params or an unknown
    dataset fail here, before any work."""
    from vaelab.params import load_params

    params = load_params(args.params)
    return params, params.dataset(args.dataset)


def stage_source_table() -> dict[str, tuple["SourceFile", ...]]:
    """The source table (:func:`vaelab.sources.load_source_table`), with the loud warning on
    stderr when ``VAELAB_SOURCES`` replaces the canonical one."""
    from vaelab.download import sources_override_warning
    from vaelab.sources import load_source_table

    warning = sources_override_warning()
    if warning:
        print(warning, file=sys.stderr)
    return load_source_table()
