"""The plot stage's knobs: ``plots``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from vaelab.core.schema import knob, parse_section, section


@dataclass(frozen=True)
class PlotParams:
    tsne: bool = knob(False, "bool", "also a t-SNE of the latent space when latent_dim > 2")
    num_latent_points: int = knob(10000, "int", "test images in the latent-space figures", low=1)


def plot_params(raw: Mapping[str, Any]) -> PlotParams:
    return parse_section(PlotParams, section(raw, "plots"), "plots.")
