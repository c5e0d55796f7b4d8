"""The latent samplers, as one idea: each draws (n, latent_dim) float32 points, seeded, that the
first decoder turns into images. ``prior`` is N(0, I); ``gmm`` the ex-post Gaussian mixture
(Ghosh et al. 2020, :mod:`vaelab.model.density`); ``two_stage`` the second VAE of the Two-Stage
VAE (Dai & Wipf 2019, :mod:`vaelab.model.two_stage`). Evaluate gives each the same metrics and
plot the same samples figure; a sampler added here gets both.
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


def load_samplers(latent_dim: int, density: str | Path, two_stage: str | Path, dataset: str = "<dataset>") -> dict[str, Draw]:
    """Every sampler of :data:`SAMPLERS` for a model with ``latent_dim``, from the fit_density
    stage's files; a file fitted to another latent size is a VaelabError naming the fix."""
    gmm, second = load_density(density), load_two_stage(two_stage)
    for path, size in ((density, gmm.latent_dim), (two_stage, second.latent_dim)):
        if size != latent_dim:
            raise VaelabError(f"latent sampler {path} is {size}-d but the model's latent space is {latent_dim}-d; "
                              f"re-run `dvc repro fit_density@{dataset}`")
    draws: dict[str, Draw] = {
        "prior": lambda n, seed: sample_prior(latent_dim, n, seed),
        "gmm": lambda n, seed: sample_density(gmm, n, seed),
        "two_stage": lambda n, seed: sample_two_stage(second, n, seed),
    }
    return {name: draws[name] for name in SAMPLERS}
