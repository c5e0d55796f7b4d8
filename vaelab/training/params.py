"""Training's knobs: ``epochs``, ``learning_rate``, ``beta``, ``mixed_precision`` (train), as one
dataset trains with them: ``epochs`` the top-level number, else (null) the dataset's own
``datasets.<name>.model.epochs`` (:func:`vaelab.core.params.per_dataset`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from vaelab.core.params import per_dataset
from vaelab.core.schema import REQUIRED, knob, parse_section
from vaelab.model.params import model_choice


@dataclass(frozen=True)
class TrainParams:
    learning_rate: float = knob(REQUIRED, "float", "Adam's step size", low=0.0, low_inclusive=False)
    epochs: int | None = knob(None, "int", "passes over the training images for every dataset; null: each "
                                           "dataset's own", low=1)
    beta: float = knob(1.0, "float", "weight of the KL term (Higgins et al. 2017's beta-VAE); 1 is the ELBO", low=0.0)
    mixed_precision: bool = knob(False, "bool", "16-bit compute, float32 weights: float16 on GPUs, bfloat16 on CPUs")


def train_params(raw: Mapping[str, Any], name: str) -> TrainParams:
    """How dataset ``name`` trains, from the top-level mapping ``raw``, checked: its ``epochs`` the
    top-level number, else (null) the dataset's own (as :func:`vaelab.model.params.model_params`
    resolves ``latent_dim``), so every reader of the params sees the epochs train runs."""
    train = parse_section(TrainParams, raw, whole=False)
    return replace(train, epochs=per_dataset("epochs", train.epochs, model_choice(raw, name).epochs, name))
