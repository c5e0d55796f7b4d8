"""The model's knobs: ``latent_dim``, ``hidden_dim``, ``conv`` and each dataset's ``model`` (train;
the later stages read the saved architecture instead). A dataset's ``model`` entry is everything
train reads per dataset, so it also holds that dataset's own ``epochs`` and ``latent_dim``: the
top-level ones, when set to a number, replace them for every dataset; ``null`` leaves each
dataset its own (:func:`vaelab.core.params.per_dataset`). The ex-post density's ``gmm`` is
:mod:`vaelab.model.density`'s."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from vaelab.core.params import dataset_entry, per_dataset
from vaelab.core.schema import REQUIRED, knob, parse_section, section
from vaelab.model.losses import GAUSSIAN_SIGMA

ARCHITECTURES = ("mlp", "conv", "infogan")
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class ConvParams:
    filters: tuple[int, ...] = knob((32, 64, 128), "int_list",
                                    "channels of the stride-2 convolutions, one per halving of the image")
    dropout: float = knob(0.0, "float", "dropout rate after the dense hidden layers (conv only)", low=0.0, high=1.0)


@dataclass(frozen=True)
class ModelChoice:
    """One dataset's ``model`` settings."""

    architecture: str = knob("mlp", "choice", "the network (vaelab.model.networks)", choices=ARCHITECTURES)
    likelihood: str = knob("bernoulli", "choice", "the decoder's distribution of a pixel", choices=LIKELIHOODS)
    gamma: float | str = knob(GAUSSIAN_SIGMA, "float", "gaussian only: the decoder's standard deviation gamma, fixed at this "
                                            "value, or learned (Dai & Wipf 2019; log gamma starts at 0)",
                              low=0.0, low_inclusive=False, choices=("learned",))
    # Per dataset, because one epoch is a different number of steps on each: a learned gamma
    # needs steps (docs/costs.md), and a small dataset gets few from one global number.
    epochs: int | None = knob(None, "int", "this dataset's passes over its training images, used while the "
                                           "top-level epochs is null", low=1)
    latent_dim: int | None = knob(None, "int", "this dataset's size of z, used while the top-level latent_dim "
                                               "is null", low=1)


@dataclass(frozen=True)
class ModelParams:
    """The model of one dataset: the top-level sizes (``latent_dim`` resolved by
    :func:`vaelab.core.params.per_dataset`), ``conv`` and the dataset's ``model`` entry."""

    hidden_dim: int = knob(REQUIRED, "int", "mlp: width of the hidden layer; conv: width of the dense layer", low=1)
    latent_dim: int | None = knob(None, "int", "size of z for every dataset; null: each dataset's own", low=1)
    conv: ConvParams = ConvParams()
    choice: ModelChoice = ModelChoice()


def conv_params(raw: Mapping[str, Any]) -> ConvParams:
    return parse_section(ConvParams, section(raw, "conv"), "conv.")


def model_choice(raw: Mapping[str, Any], name: str) -> ModelChoice:
    return parse_section(ModelChoice, dataset_entry(raw, name, "model"), f"datasets.{name}.model.")


def model_params(raw: Mapping[str, Any], name: str) -> ModelParams:
    """The model of dataset ``name`` from the top-level mapping ``raw``, checked; its ``latent_dim``
    the top-level number, else (null) the dataset's own (:func:`vaelab.core.params.per_dataset`)."""
    choice = model_choice(raw, name)
    model = parse_section(ModelParams, raw, whole=False, conv=conv_params(raw), choice=choice)
    return replace(model, latent_dim=per_dataset("latent_dim", model.latent_dim, choice.latent_dim, name))
