"""Ex-post density estimation: a Gaussian mixture fitted to where the encoder puts the data.

Ghosh, Sajjadi, Vergari, Black & Schölkopf (2020), "From variational to deterministic
autoencoders", section 4. A VAE's decoder is trained on latents the encoder produces, but
sampled from the prior N(0, I), which leaves "holes" the aggregate posterior never fills: the
decoder is asked for latents it never saw. Fitting a density to the encoder means of the
training images and sampling from it instead gives better samples from the same decoder at
no training cost. The mixture here: scikit-learn's ``GaussianMixture`` with full covariances
(10 components by default, k-means initialised, seeded), fitted once per model by the
``fit_gmm`` stage and saved as plain arrays (no pickles); sampling is numpy alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.core.io import atomic_path, load_arrays
from vaelab.core.schema import knob, parse_section, section

# Added to each covariance's diagonal (scikit-learn's reg_covar): keeps a component whose points
# span fewer than L dimensions (e.g. collapsed latent units) invertible.
REG_COVAR = 1e-6


@dataclass(frozen=True)
class GmmParams:
    components: int = knob(10, "int", "components of the Gaussian mixture on the encoder means "
                                      "(Ghosh et al. 2020's ex-post density)", low=1)

def gmm_params(raw: Mapping[str, Any]) -> GmmParams:
    return parse_section(GmmParams, section(raw, "gmm"), "gmm.")


@dataclass(frozen=True)
class GaussianMixtureDensity:
    """A fitted mixture: ``weights`` (K,), ``means`` (K, L), ``covariances`` (K, L, L), all
    float64; ``num_points`` it was fitted to and the ``seed`` of its initialisation."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    num_points: int
    seed: int

    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def components(self) -> int:
        return int(self.means.shape[0])


def fit_density(latents: np.ndarray, components: int, seed: int) -> GaussianMixtureDensity:
    """Fit a full-covariance Gaussian mixture of ``components`` to ``latents`` (N, L), seeded.

    Needs N >= components; a mixture that does not converge is still returned (scikit-learn
    warns), as the ex-post sampler only needs a good-enough density.
    """
    from sklearn.mixture import GaussianMixture

    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or len(z) < components or not np.all(np.isfinite(z)):
        raise VaelabError(f"the mixture of {components} components needs at least {components} finite latent "
                          f"points (N, L), got {z.shape}; use more training images or fewer gmm.components")
    mixture = GaussianMixture(n_components=components, covariance_type="full", reg_covar=REG_COVAR,
                              max_iter=500, random_state=seed)
    mixture.fit(z)
    return GaussianMixtureDensity(weights=mixture.weights_.astype(np.float64), means=mixture.means_.astype(np.float64),
                                  covariances=mixture.covariances_.astype(np.float64), num_points=len(z), seed=seed)


def sample_density(density: GaussianMixtureDensity, n: int, seed: int) -> np.ndarray:
    """float32 (n, L) draws from the mixture, with numpy's PCG64 seeded by ``seed``: a component
    per draw by its weight, then mean + cholesky(covariance) @ eps."""
    rng = np.random.default_rng(seed)
    weights = density.weights / density.weights.sum()
    components = rng.choice(density.components, size=n, p=weights)
    eps = rng.standard_normal((n, density.latent_dim))
    factors = np.linalg.cholesky(density.covariances)
    z = density.means[components] + np.einsum("nij,nj->ni", factors[components], eps)
    return z.astype(np.float32)


def save_density(density: GaussianMixtureDensity, path: str | Path) -> None:
    """Write an ``.npz`` of plain arrays, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, weights=density.weights, means=density.means, covariances=density.covariances,
                     num_points=np.int64(density.num_points), seed=np.int64(density.seed))


def load_density(path: str | Path) -> GaussianMixtureDensity:
    """Read a file written by :func:`save_density`; missing or damaged is a VaelabError."""
    density = load_arrays(path, lambda npz: GaussianMixtureDensity(
        weights=npz["weights"], means=npz["means"], covariances=npz["covariances"],
        num_points=int(npz["num_points"]), seed=int(npz["seed"])), "latent density", "fit_gmm")
    k, dims = density.means.shape if density.means.ndim == 2 else (0, 0)
    if density.weights.shape != (k,) or density.covariances.shape != (k, dims, dims) or k == 0:
        raise VaelabError(f"latent density {path} is damaged (weights {density.weights.shape}, means "
                          f"{density.means.shape}, covariances {density.covariances.shape}); re-run fit_gmm")
    return density
