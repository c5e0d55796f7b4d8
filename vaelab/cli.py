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


# The files stages hand each other, by argument name (dvc.yaml passes their paths).
STAGE_INPUTS = {
    "raw": "the download stage's folder (data/raw/<dataset>)",
    "data": "prepared .npz of the preprocess stage",
    "models": "model folder of the train stage",
    "density": "latent mixture of the fit_density stage",
    "reference": "reference statistics of the reference_stats stage",
    "history": "per-epoch history CSV of the train stage",
}


def stage_parser(doc: str, inputs: tuple[str, ...] = (), out: str | None = None) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (the stage's docstring), with
    ``--dataset``, ``--params``, a required ``--<name>`` for each of ``inputs`` (names of
    :data:`STAGE_INPUTS`) and ``--out`` (helped by ``out``) when given; a stage adds any other
    argument itself."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a key under datasets: in params.yaml")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    for name in inputs:
        parser.add_argument(f"--{name}", required=True, help=STAGE_INPUTS[name])
    if out is not None:
        parser.add_argument("--out", required=True, help=out)
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
