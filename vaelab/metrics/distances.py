"""Fréchet distance between Gaussians fitted to features, and KID.

Numpy only (no TensorFlow), float64 throughout.

* :func:`frechet_distance`: the FID of Heusel et al. (2017), "GANs trained by a two time-scale
  update rule converge to a local Nash equilibrium",
  ``d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
* :func:`kernel_inception_distance`: the unbiased MMD^2 with the cubic polynomial kernel of
  Bińkowski et al. (2018), "Demystifying MMD GANs", averaged over random subsets.
"""

from __future__ import annotations

import warnings

import numpy as np

from vaelab.core.errors import VaelabError

# Eigenvalues of a covariance that are negative by more than this fraction of the largest one
# are not rounding error: the matrix is not positive semi-definite and its square root would be
# complex. (Rounding in a 2048x2048 float64 eigendecomposition is ~1e-13 of the largest one.)
NEGATIVE_EIGENVALUE_RTOL = 1e-6


class FidBiasWarning(UserWarning):
    """Fewer samples than feature dimensions: the covariance is rank deficient and FID is biased."""


def warn_if_biased(n: int, dims: int, what: str = "features") -> None:
    """Warn (:class:`FidBiasWarning`) when ``n`` samples are fewer than ``dims`` feature dimensions.

    The sample covariance then has rank < dims, and FID's estimate is strongly biased upwards
    (Chong & Forsyth 2020, "Effectively unbiased FID"); Heusel et al. recommend >= 10,000 samples.
    """
    if n < dims:
        warnings.warn(
            f"{what}: {n} samples < {dims} feature dimensions; the covariance is rank deficient and "
            f"FID is biased; use at least {dims} samples (FID papers use 10,000) for numbers you compare",
            FidBiasWarning, stacklevel=3,
        )


def _as_stats(mu: np.ndarray, sigma: np.ndarray, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"{which}: mean of shape {mu.shape} and covariance of shape {sigma.shape} do not match; "
                         f"expected (D,) and (D, D)")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise VaelabError(f"{which}: the feature statistics contain NaN or infinity; recompute them")
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray, which: str) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (D, D) via ``eigh``.

    Eigenvalues that are negative only by rounding (the matrix is singular or nearly so, e.g.
    fewer samples than dimensions) are clipped to 0; clearly negative ones are an error.
    """
    sym = 0.5 * (sigma + sigma.T)
    eigenvalues, eigenvectors = np.linalg.eigh(sym)
    _check_nonnegative(eigenvalues, which)
    return (eigenvectors * _roots(eigenvalues)) @ eigenvectors.T


def _roots(eigenvalues: np.ndarray) -> np.ndarray:
    """Square roots of PSD eigenvalues; those within rounding of 0 (below D * eps * largest)
    count as 0. Otherwise the square root would turn rounding noise of ~1e-16 into ~1e-8 per
    null direction, and FID of singular covariances would be off by ~1e-6 relative."""
    if eigenvalues.size == 0:
        return eigenvalues
    floor = eigenvalues.size * np.finfo(np.float64).eps * float(np.max(np.abs(eigenvalues)))
    return np.sqrt(np.where(eigenvalues > floor, eigenvalues, 0.0))


def _check_nonnegative(eigenvalues: np.ndarray, which: str) -> None:
    largest = float(np.max(np.abs(eigenvalues))) if eigenvalues.size else 0.0
    smallest = float(np.min(eigenvalues)) if eigenvalues.size else 0.0
    if smallest < -NEGATIVE_EIGENVALUE_RTOL * largest:
        # sqrt of a negative eigenvalue: the matrix square root has an imaginary part.
        raise VaelabError(
            f"{which} is not positive semi-definite (eigenvalue {smallest:.3g} against largest {largest:.3g}): "
            f"its square root has an imaginary part of {np.sqrt(-smallest):.3g}; the statistics are not a "
            f"covariance (damaged or mismatched files?); recompute them"
        )


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``mu``: (D,), ``sigma``: (D, D) symmetric PSD. The cross term
    ``tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2))``: the inner matrix is symmetric PSD,
    so its eigenvalues are real and >= 0 and the trace is the sum of their square roots. Unlike
    ``scipy.linalg.sqrtm(S1 @ S2)`` this does not blow up when a covariance is singular (fewer
    samples than dimensions). An eigenvalue clearly below zero (a complex square root, i.e. a
    large imaginary part) raises :class:`~vaelab.core.errors.VaelabError` rather than being dropped.
    """
    mu1, sigma1 = _as_stats(mu1, sigma1, "first statistics")
    mu2, sigma2 = _as_stats(mu2, sigma2, "second statistics")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    if np.any(np.diagonal(sigma2) < 0):
        raise VaelabError("second covariance has negative variances on its diagonal; it is not a covariance "
                          "(damaged or mismatched files?); recompute the statistics")
    root1 = _psd_sqrt(sigma1, "first covariance")
    inner = root1 @ (0.5 * (sigma2 + sigma2.T)) @ root1
    # A negative eigenvalue of sigma2 within the range of sigma1 shows up here. (eigh rather
    # than eigvalsh: with OpenBLAS it is the faster of the two at D = 2048.)
    eigenvalues = np.linalg.eigh(0.5 * (inner + inner.T))[0]
    _check_nonnegative(eigenvalues, "the product of the covariances")
    trace_sqrt = float(np.sum(_roots(eigenvalues)))
    diff = mu1 - mu2
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    # Mathematically >= 0; only rounding can take it below.
    return max(distance, 0.0)


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, *, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID of Bińkowski et al. (2018): unbiased MMD^2 with kernel k(x, y) = (x.y / D + 1)^3.

    ``features1``: (N1, D), ``features2``: (N2, D). Each of ``num_subsets`` rounds draws
    ``m = min(subset_size, N1, N2)`` rows of each without replacement (seeded); returns the mean
    and standard deviation of the per-subset estimates. When m equals both N1 and N2 every subset
    is the whole set, so one round is computed. Can be slightly negative (it is unbiased).
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {f1.shape} and {f2.shape}")
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {len(f1)} and {len(f2)}")
    dims = f1.shape[1]
    if m == len(f1) == len(f2):
        num_subsets = 1
    rng = np.random.default_rng(seed)
    estimates = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f1[rng.choice(len(f1), m, replace=False)] if m < len(f1) else f1
        y = f2[rng.choice(len(f2), m, replace=False)] if m < len(f2) else f2
        k_xx = (x @ x.T / dims + 1.0) ** 3
        k_yy = (y @ y.T / dims + 1.0) ** 3
        k_xy = (x @ y.T / dims + 1.0) ** 3
        # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        estimates[i] = within - 2.0 * k_xy.mean()
    return float(estimates.mean()), float(estimates.std())
