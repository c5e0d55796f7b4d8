"""All of ``params.yaml`` checked at once, for code that reads the whole file (tests, benchmarks,
scripts). No stage imports this module: each checks only its own phase's sections
(:mod:`vaelab.core.params`), so that a change here or to another phase's schema re-runs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.core.params import SharedParams, check_top_level, dataset_entry, read_params, shared_params
from vaelab.data.params import DataParams, data_params
from vaelab.figures.params import PlotParams, plot_params
from vaelab.metrics.params import FidParams, fid_params
from vaelab.model.density import GmmParams, gmm_params
from vaelab.model.params import ModelParams, model_params
from vaelab.model.two_stage import TwoStageParams, two_stage_params
from vaelab.training.params import TrainParams, train_params


@dataclass(frozen=True)
class DatasetParams:
    """One entry under ``datasets:``: its data settings, its whole model and how it trains (each
    with ``latent_dim`` and ``epochs`` resolved by :func:`vaelab.core.params.per_dataset`)."""

    data: DataParams
    model: ModelParams
    train: TrainParams


@dataclass(frozen=True)
class Params:
    """Every section, checked by its phase's schema."""

    shared: SharedParams
    fid: FidParams
    gmm: GmmParams
    two_stage: TwoStageParams
    plots: PlotParams
    datasets: dict[str, DatasetParams]

    def dataset(self, name: str) -> DatasetParams:
        """The entry ``datasets.<name>``; an unknown name is a VaelabError listing the known ones."""
        if name not in self.datasets:
            dataset_entry({"datasets": self.datasets}, name, "data")  # raises, naming the known ones
        return self.datasets[name]


def parse_params(raw: Any) -> Params:
    """Check the parsed YAML mapping ``raw`` section by section."""
    raw = check_top_level(raw)
    return Params(
        shared=shared_params(raw), fid=fid_params(raw), gmm=gmm_params(raw), two_stage=two_stage_params(raw),
        plots=plot_params(raw),
        datasets={name: DatasetParams(data_params(raw, name), model_params(raw, name), train_params(raw, name))
                  for name in raw["datasets"]},
    )


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check every section of ``path``."""
    return parse_params(read_params(path))
