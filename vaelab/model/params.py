"""The model's knobs: ``latent_dim``, ``hidden_dim``, ``conv`` and each dataset's ``model`` (train;
the later stages read the saved architecture instead). A dataset's ``model`` entry is everything
train reads per dataset, so it also holds that dataset's own ``epochs`` and ``latent_dim``. The ex-post density's ``gmm`` is
:mod:`vaelab.model.density`'s."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from vaelab.core.params import dataset_entry
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
    # needs steps (README: What a run costs), and a small dataset gets few from the global knob.
    epochs: int | None = knob(None, "int", "this dataset's passes over its training images, in place of the "
                                           "top-level epochs (absent: those)", low=1)
    latent_dim: int | None = knob(None, "int", "this dataset's size of z, in place of the top-level latent_dim "
                                               "(absent: that)", low=1)


@dataclass(frozen=True)
class ModelParams:
    """The model of one dataset: the top-level sizes (``latent_dim`` the dataset's own where its entry
    names one), ``conv`` and the dataset's ``model`` entry."""

    latent_dim: int = knob(REQUIRED, "int", "size of z", low=1)
    hidden_dim: int = knob(REQUIRED, "int", "mlp: width of the hidden layer; conv: width of the dense layer", low=1)
    conv: ConvParams = ConvParams()
    choice: ModelChoice = ModelChoice()


def conv_params(raw: Mapping[str, Any]) -> ConvParams:
    return parse_section(ConvParams, section(raw, "conv"), "conv.")


def model_choice(raw: Mapping[str, Any], name: str) -> ModelChoice:
    return parse_section(ModelChoice, dataset_entry(raw, name, "model"), f"datasets.{name}.model.")


def model_params(raw: Mapping[str, Any], name: str) -> ModelParams:
    """The model of dataset ``name`` from the top-level mapping ``raw``, checked; its ``latent_dim``
    is the dataset's own where its ``model`` entry names one."""
    choice = model_choice(raw, name)
    model = parse_section(ModelParams, raw, whole=False, conv=conv_params(raw), choice=choice)
    return model if choice.latent_dim is None else replace(model, latent_dim=choice.latent_dim)
