"""The latent samplers, as one idea: each draws (n, latent_dim) float32 points, seeded, that the
first decoder turns into images. ``prior`` is N(0, I); ``gmm`` the ex-post Gaussian mixture
(Ghosh et al. 2020, :mod:`vaelab.model.density`); ``two_stage`` the second VAE of the Two-Stage
VAE (Dai & Wipf 2019, :mod:`vaelab.model.two_stage`). The score stages give each the same
metrics (``stages/score.py``) and plot the same samples figure; a sampler added here, with a
score stage in ``dvc.yaml``, gets both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.model.density import load_density, sample_density
from vaelab.model.networks import sample_prior
from vaelab.model.two_stage import load_two_stage, sample_two_stage

# name -> a short description (figure titles); the order metrics and figures list them in.
SAMPLERS = {
    "prior": "N(0, I)",
    "gmm": "the Gaussian mixture fitted to mu(x)",
    "two_stage": "the Two-Stage VAE's second decoder",
}

Draw = Callable[[int, int], np.ndarray]  # (n, seed) -> float32 (n, latent_dim)


def load_sampler(name: str, latent_dim: int, fitted: str | Path | None = None, dataset: str = "<dataset>") -> Draw:
    """Sampler ``name`` of :data:`SAMPLERS` for a model with ``latent_dim``: ``prior`` needs
    nothing, ``gmm`` and ``two_stage`` the file their fit stage wrote (``fitted``); one fitted to
    another latent size is a VaelabError naming the fix."""
    if name == "prior":
        return lambda n, seed: sample_prior(latent_dim, n, seed)
    if name not in SAMPLERS or fitted is None:
        raise ValueError(f"sampler {name!r} needs a fitted file; known samplers: {', '.join(SAMPLERS)}")
    fit = load_density(fitted) if name == "gmm" else load_two_stage(fitted)
    if fit.latent_dim != latent_dim:
        raise VaelabError(f"latent sampler {fitted} is {fit.latent_dim}-d but the model's latent space is {latent_dim}-d; "
                          f"re-run `dvc repro fit_{name}@{dataset}`")
    if name == "gmm":
        return lambda n, seed: sample_density(fit, n, seed)
    return lambda n, seed: sample_two_stage(fit, n, seed)


def load_samplers(latent_dim: int, density: str | Path, two_stage: str | Path, dataset: str = "<dataset>") -> dict[str, Draw]:
    """Every sampler of :data:`SAMPLERS` for a model with ``latent_dim``, from the fit stages'
    files (:func:`load_sampler`)."""
    fitted = {"prior": None, "gmm": density, "two_stage": two_stage}
    return {name: load_sampler(name, latent_dim, fitted[name], dataset) for name in SAMPLERS}
