"""Latent-space and pixel-space maths of the figures, numpy only (scikit-learn for PCA and t-SNE).

Nearest training images of generated ones (blocked, exact), 2-D projections of latent codes
(identity, PCA, t-SNE: van der Maaten & Hinton 2008), the manifold grid of Gaussian quantiles
(Kingma & Welling 2014, Fig. 4) and straight-line interpolation between two codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def nearest_neighbours(queries: np.ndarray, train: np.ndarray, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each query image, the index of and L2 distance to its nearest image in ``train``.

    ``queries`` (Q, ...) and ``train`` (N, ...) uint8 images of one shape; pixel space, 0..255.
    Returns ``(indices int64 (Q,), distances float64 (Q,))``; ties go to the lowest index.

    Squared distances are ``||a||^2 - 2 a.b + ||b||^2``, computed ``batch_size`` training
    images at a time so memory stays at one block. The blocks are float64: every term is an
    integer below 2^53 for uint8 pixels (255^2 * D fits for any realistic D), so the result
    equals the brute-force distance exactly, unlike float32, where ``a.b`` rounds at ~1e7.
    """
    queries, train = np.asarray(queries), np.asarray(train)
    if queries.shape[1:] != train.shape[1:]:
        raise ValueError(f"queries {queries.shape[1:]} and train {train.shape[1:]} images differ in shape")
    if len(train) == 0 or len(queries) == 0:
        raise ValueError("need at least one query and one training image")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    q = queries.reshape(len(queries), -1).astype(np.float64)
    q_norms = np.einsum("ij,ij->i", q, q)
    best = np.full(len(q), np.inf)
    best_index = np.zeros(len(q), dtype=np.int64)
    for start in range(0, len(train), batch_size):
        block = train[start:start + batch_size].reshape(-1, q.shape[1]).astype(np.float64)
        squared = q_norms[:, None] - 2.0 * (q @ block.T) + np.einsum("ij,ij->i", block, block)[None, :]
        index = np.argmin(squared, axis=1)
        value = squared[np.arange(len(q)), index]
        better = value < best  # strict: an equal distance in a later block keeps the earlier index
        best[better] = value[better]
        best_index[better] = start + index[better]
    return best_index, np.sqrt(np.maximum(best, 0.0))


PROJECTIONS = ("identity", "pca", "tsne")


def latent_projection(z: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """Project latent codes ``z`` (N, D) to (N, 2) float64 for a scatter plot.

    ``identity``: the codes themselves (D <= 2; D = 1 gets a zero second column).
    ``pca``: the first two principal components (D >= 2).
    ``tsne``: t-SNE (van der Maaten & Hinton 2008), seeded, perplexity capped for small N.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"z must be (N >= 1, D), got {z.shape}")
    if method == "identity":
        if z.shape[1] > 2:
            raise ValueError(f"identity projection needs latent_dim <= 2, got {z.shape[1]}")
        return np.hstack([z, np.zeros((len(z), 2 - z.shape[1]))])
    if method == "pca":
        from sklearn.decomposition import PCA

        if z.shape[1] < 2:
            raise ValueError(f"PCA to 2-D needs latent_dim >= 2, got {z.shape[1]}")
        return PCA(n_components=2, svd_solver="full").fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        if len(z) < 3:
            raise ValueError(f"t-SNE needs at least 3 points, got {len(z)}")
        perplexity = min(30.0, (len(z) - 1) / 3)  # sklearn requires perplexity < N
        return TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(z)
    raise ValueError(f"unknown projection {method!r}; use one of {PROJECTIONS}")


@dataclass(frozen=True)
class ManifoldGrid:
    """Latent points of a manifold figure.

    ``z``: (S, n, n, D) float32; ``z[s, r, c]`` is drawn in row r, column c of slice s, with
    ``z[..., 0] = values[c]`` and ``z[..., 1] = values[n - 1 - r]`` (up is larger, as on a plot
    axis). ``slices``: the z[2] value of each slice (empty for D = 2, where S = 1).
    """

    z: np.ndarray
    values: np.ndarray
    slices: tuple[float, ...] = ()


def gaussian_quantiles(n: int, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """``norm.ppf(linspace(low, high, n))``: n points evenly spaced in probability under N(0, 1)."""
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf(p) for p in np.linspace(low, high, n)])


def manifold_latents(n: int, latent_dim: int, num_slices: int = 3) -> ManifoldGrid:
    """The n x n grid of Gaussian quantiles over z[0], z[1] (Kingma & Welling 2014, Fig. 4).

    latent_dim 2: one grid. latent_dim 3: ``num_slices`` grids at z[2] = the quantiles
    ``linspace(0.1, 0.9, num_slices)`` (0 for one slice). Other sizes: ValueError (a grid
    over two axes of a larger space says little).
    """
    if latent_dim not in (2, 3):
        raise ValueError(f"a manifold grid needs latent_dim 2 or 3, got {latent_dim}")
    if n < 2:
        raise ValueError(f"a manifold grid needs n >= 2, got {n}")
    values = gaussian_quantiles(n)
    x, y = np.meshgrid(values, values[::-1])  # row 0 at the top holds the largest z[1]
    slices: tuple[float, ...] = ()
    if latent_dim == 2:
        z = np.stack([x, y], axis=-1)[None]
    else:
        slices = tuple(float(v) for v in (gaussian_quantiles(num_slices, 0.1, 0.9) if num_slices > 1 else [0.0]))
        z = np.stack([np.stack([x, y, np.full_like(x, s)], axis=-1) for s in slices])
    return ManifoldGrid(z=z.astype(np.float32), values=values, slices=slices)


def interpolation_latents(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` points on the straight line from ``z_a`` to ``z_b`` (D,), both ends included: (steps, D) float32."""
    z_a, z_b = np.asarray(z_a, dtype=np.float64), np.asarray(z_b, dtype=np.float64)
    if z_a.shape != z_b.shape or z_a.ndim != 1:
        raise ValueError(f"z_a and z_b must be vectors of one size, got {z_a.shape} and {z_b.shape}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return ((1.0 - t) * z_a + t * z_b).astype(np.float32)


def pick_pair_of_classes(labels: np.ndarray, seed: int) -> tuple[int, int] | None:
    """Indices of two images with different labels, chosen with ``seed``; None without two classes."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if len(np.unique(labels)) < 2:
        return None
    a = int(rng.integers(len(labels)))
    others = np.flatnonzero(labels != labels[a])
    return a, int(others[rng.integers(len(others))])
