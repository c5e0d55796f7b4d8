"""Improved precision and recall of a generative model, on feature vectors; numpy only, float64.

Kynkäänniemi, Karras, Laine, Lehtinen & Aila (2019), "Improved precision and recall metric for
assessing generative models". Each set of feature vectors estimates its manifold as the union
of balls around its points, each ball reaching the point's k-th nearest neighbour in the same
set (k = 3). Then

* precision = the fraction of generated points inside the real manifold (are samples realistic?);
* recall = the fraction of real points inside the generated manifold (is the data covered?).

FID mixes both into one number; these two say which failed: blurry or off-manifold samples lower
precision, missing modes lower recall.

Distances are computed in row blocks (:data:`BLOCK_ROWS` x N at a time), so an N x M distance
matrix never sits in memory whole: 10,000 x 10,000 float64 would take 800 MB, one block 80 MB.
"""

from __future__ import annotations

import numpy as np

DEFAULT_K = 3
BLOCK_ROWS = 1000
# Squared distances within this fraction of |a|^2 + |b|^2 of zero are rounding, not distance: the
# expansion |a|^2 + |b|^2 - 2 a.b of two equal 2048-d vectors leaves ~1e-13 of it behind, and a
# duplicate point must be at distance 0, inside a ball of radius 0.
ROUNDING_RTOL = 1e-10


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 1:
        raise ValueError(f"{name} must be (N >= 1, D) feature vectors, got shape {x.shape}")
    return x


def _squared_distances(a: np.ndarray, a_norms: np.ndarray, b: np.ndarray, b_norms: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances; rounding-level values snap to 0."""
    scale = a_norms[:, None] + b_norms[None, :]
    d2 = scale - 2.0 * (a @ b.T)
    d2[d2 <= ROUNDING_RTOL * scale] = 0.0
    return d2


def kth_neighbour_radii(features: np.ndarray, k: int = DEFAULT_K, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """(N,) float64: each point's distance to its k-th nearest neighbour among the others.

    The point itself (distance 0) is the 0-th; a duplicate of it counts as a neighbour at 0.
    Needs N > k.
    """
    x = _as_features(features, "features")
    if not 1 <= k < len(x):
        raise ValueError(f"k = {k} needs more than k points, got {len(x)}")
    norms = np.einsum("ij,ij->i", x, x)
    radii = np.empty(len(x))
    for start in range(0, len(x), block_rows):
        d2 = _squared_distances(x[start:start + block_rows], norms[start:start + block_rows], x, norms)
        radii[start:start + block_rows] = np.partition(d2, k, axis=1)[:, k]
    return np.sqrt(radii)


def manifold_coverage(queries: np.ndarray, points: np.ndarray, radii: np.ndarray,
                      block_rows: int = BLOCK_ROWS) -> float:
    """Fraction of ``queries`` (M, D) inside at least one ball (``points`` (N, D), ``radii`` (N,))."""
    q = _as_features(queries, "queries")
    p = _as_features(points, "points")
    radii = np.asarray(radii, dtype=np.float64)
    if radii.shape != (len(p),) or q.shape[1] != p.shape[1]:
        raise ValueError(f"queries {q.shape}, points {p.shape} and radii {radii.shape} do not fit together")
    q_norms, p_norms = np.einsum("ij,ij->i", q, q), np.einsum("ij,ij->i", p, p)
    inside = 0
    for start in range(0, len(q), block_rows):
        d2 = _squared_distances(q[start:start + block_rows], q_norms[start:start + block_rows], p, p_norms)
        inside += int(np.count_nonzero(np.any(d2 <= radii[None, :] ** 2, axis=1)))
    return inside / len(q)


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = DEFAULT_K,
                     block_rows: int = BLOCK_ROWS, real_radii: np.ndarray | None = None) -> tuple[float, float]:
    """(precision, recall) of ``generated`` (M, D) against ``real`` (N, D) features.

    ``real_radii``: :func:`kth_neighbour_radii` of ``real``, when the caller already has them
    (several generated sets against one reference). Kynkäänniemi et al. use equally many real
    and generated points; the caller picks them.
    """
    real = _as_features(real, "real features")
    generated = _as_features(generated, "generated features")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {generated.shape[1]}")
    if real_radii is None:
        real_radii = kth_neighbour_radii(real, k, block_rows)
    precision = manifold_coverage(generated, real, real_radii, block_rows)
    recall = manifold_coverage(real, generated, kth_neighbour_radii(generated, k, block_rows), block_rows)
    return precision, recall
