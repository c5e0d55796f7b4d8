"""Training's knobs: ``epochs``, ``learning_rate``, ``beta``, ``mixed_precision`` (train), as one
dataset trains with them: its own ``datasets.<name>.model.epochs`` where it names one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from vaelab.core.schema import REQUIRED, knob, parse_section
from vaelab.model.params import model_choice


@dataclass(frozen=True)
class TrainParams:
    epochs: int = knob(REQUIRED, "int", "passes over the training images", low=1)
    learning_rate: float = knob(REQUIRED, "float", "Adam's step size", low=0.0, low_inclusive=False)
    beta: float = knob(1.0, "float", "weight of the KL term (Higgins et al. 2017's beta-VAE); 1 is the ELBO", low=0.0)
    mixed_precision: bool = knob(False, "bool", "16-bit compute, float32 weights: float16 on GPUs, bfloat16 on CPUs")


def train_params(raw: Mapping[str, Any], name: str) -> TrainParams:
    """How dataset ``name`` trains, from the top-level mapping ``raw``, checked: its ``epochs`` are the
    dataset's own where its ``model`` entry names them (as :func:`vaelab.model.params.model_params`
    does for ``latent_dim``), so every reader of the params sees the epochs train runs."""
    train = parse_section(TrainParams, raw, whole=False)
    epochs = model_choice(raw, name).epochs
    return train if epochs is None else replace(train, epochs=epochs)
