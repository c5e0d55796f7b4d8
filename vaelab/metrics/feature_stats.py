"""Features of image sets, streamed: batch by batch through the network, and their mean, covariance and a sample.

Images go batch by batch through the feature network's own preprocessing
(:mod:`vaelab.metrics.features`) and its forward pass; only one batch of resized
images exists at a time, whatever the number of images. :func:`compute_statistics` merges the
features into float64 running statistics (:class:`RunningStats`) and keeps a
seeded uniform sample of feature vectors (for KID and precision/recall): memory does not grow
with the number of images.

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from vaelab.core.prepared import check_image_array
from vaelab.core.errors import VaelabError
from vaelab.metrics.features import FeatureExtractor
from vaelab.metrics.distances import warn_if_biased

STATS_CHUNK = 1024  # feature rows per merge into the running statistics (8 MB of float32 at 2048-d)


class RunningStats:
    """Streaming mean and covariance of feature vectors, accumulated in float64.

    ``add(batch)`` takes (B, D) arrays; memory is O(D^2) whatever the number of samples.
    Batches are merged with the pairwise update of Chan, Golub & LeVeque (1979), which centres
    each batch on its own mean, so it is accurate even when the mean is large against the spread
    (summing x and x x^T would cancel catastrophically there).
    """

    def __init__(self) -> None:
        self.n = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # sum of outer products of deviations from the mean

    @property
    def dims(self) -> int | None:
        return None if self._mean is None else self._mean.size

    def add(self, batch: np.ndarray) -> None:
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"feature batch must be 2-d (B, D), got shape {x.shape}")
        if self._mean is not None and x.shape[1] != self._mean.size:
            raise ValueError(f"feature batch has {x.shape[1]} dimensions, earlier batches had {self._mean.size}")
        b = x.shape[0]
        if b == 0:
            return
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        batch_m2 = centred.T @ centred
        if self._mean is None:
            self._mean, self._m2 = batch_mean, batch_m2
            self.n = b
            return
        total = self.n + b
        delta = batch_mean - self._mean
        self._mean += delta * (b / total)
        self._m2 += batch_m2
        self._m2 += np.outer(delta, delta * (self.n * b / total))
        self.n = total

    @property
    def mean(self) -> np.ndarray:
        """(D,) float64."""
        if self._mean is None:
            raise ValueError("no samples added")
        return self._mean.copy()

    def covariance(self, what: str = "features") -> np.ndarray:
        """(D, D) float64 unbiased sample covariance (ddof=1, as ``np.cov``); warns when n < D."""
        if self._m2 is None or self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.n}")
        warn_if_biased(self.n, self._m2.shape[0], what)
        cov = self._m2 / (self.n - 1)
        return 0.5 * (cov + cov.T)


def _rebatch(source: Any, batch_size: int) -> Iterator[np.ndarray]:
    """uint8 array (N, H, W, C) or an iterable of uint8 batches -> batches of ``batch_size``
    (the last one shorter). Slices of an array are views: nothing is copied up front."""
    if isinstance(source, np.ndarray):
        check_image_array(source, "feature input")
        for start in range(0, len(source), batch_size):
            yield source[start:start + batch_size]
        return
    pending: list[np.ndarray] = []
    count = 0
    shape = None
    for batch in source:
        batch = check_image_array(batch, "feature input")
        if shape is None:
            shape = batch.shape[1:]
        elif batch.shape[1:] != shape:
            raise VaelabError(f"image batches differ in shape: {shape} then {batch.shape[1:]}; all images must match")
        pending.append(batch)
        count += len(batch)
        while count >= batch_size:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:batch_size]
            rest = joined[batch_size:]
            pending, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def _nonempty(source: Any, batch_size: int) -> Iterator[np.ndarray]:
    """All batches of :func:`_rebatch`; an empty image set fails here, before any TensorFlow work."""
    batches = _rebatch(source, batch_size)
    try:
        first = next(batches)
    except StopIteration:
        raise VaelabError("no images to compute features of; the image set is empty") from None

    def chain() -> Iterator[np.ndarray]:
        yield first
        yield from batches

    return chain()


def compute_activations(source: Any, extractor: FeatureExtractor, batch_size: int = 100, *,
                        progress: bool = True, total: int | None = None,
                        description: str = "features") -> Iterator[np.ndarray]:
    """Yield float32 (B, dims) features of the images in ``source``, batch by batch.

    ``source``: a uint8 array (N, H, W, 1|3) or an iterable of uint8 batches (any sizes; e.g.
    generated images, produced lazily). Each batch goes through the network's preprocessing and
    its forward pass (:attr:`FeatureExtractor.embed`), so memory does not grow with N. A tqdm bar
    shows images done and images per second (``total`` defaults to ``len(source)`` for arrays).

    A plain loop, not a ``tf.data`` pipeline: on a CPU the forward pass already keeps every
    core busy, so overlapping the next batch's preprocessing gains nothing, and TensorFlow's
    ``from_generator`` sets glibc's ``M_TRIM_THRESHOLD`` to 128 kB for the whole process,
    which hands freed memory back to the system at once (``benchmarks/bench_features.py``).
    """
    if batch_size < 1:
        raise VaelabError(f"fid.batch_size = {batch_size} is invalid; allowed: an integer >= 1")
    if total is None and isinstance(source, np.ndarray):
        total = len(source)
    batches = _nonempty(source, batch_size)

    from tqdm.auto import tqdm

    with tqdm(total=total, unit="img", desc=description, disable=not progress, mininterval=1.0) as bar:
        for images in batches:
            features = np.asarray(extractor.embed(images), dtype=np.float32)
            bar.update(len(features))
            yield features


@dataclass(frozen=True)
class FeatureStats:
    """Statistics of the features of a set of images.

    ``mu`` float64 (D,), ``sigma`` float64 (D, D), ``n`` images, ``sample`` float32 (k, D): a
    uniform random subset of k <= ``keep`` feature vectors (for KID and precision/recall),
    ``seconds`` wall time, ``metadata``: what made the features (:data:`vaelab.metrics.features.METADATA_KEYS`;
    reference statistics carry it, :mod:`vaelab.metrics.reference`).
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    sample: np.ndarray
    seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


def compute_statistics(source: Any, extractor: FeatureExtractor, batch_size: int = 100, *,
                       progress: bool = True, total: int | None = None, keep: int = 0, seed: int = 0,
                       description: str = "features") -> FeatureStats:
    """Mean and covariance (float64) of the features of ``source``, streamed through
    :class:`RunningStats`; also keeps a seeded uniform sample of ``keep`` feature
    vectors (reservoir sampling, Vitter 1985's algorithm R). Warns when N < dims (biased FID)."""
    start = time.perf_counter()
    stats = RunningStats()
    reservoir = _Reservoir(keep, extractor.dims, seed)
    # Merge features into the float64 statistics in chunks of STATS_CHUNK rows: each merge costs
    # O(D^2) whatever its size, so merging every batch of 50 would spend a share of the run on it.
    chunk = np.empty((STATS_CHUNK, extractor.dims), np.float32)
    filled = 0
    for features in compute_activations(source, extractor, batch_size, progress=progress, total=total,
                                        description=description):
        reservoir.add(features)
        while len(features):
            take = min(len(features), STATS_CHUNK - filled)
            chunk[filled:filled + take] = features[:take]
            filled += take
            features = features[take:]
            if filled == STATS_CHUNK:
                stats.add(chunk)
                filled = 0
    stats.add(chunk[:filled])
    if stats.n < 2:
        raise VaelabError(f"{description}: FID needs at least 2 images, got {stats.n}")
    return FeatureStats(mu=stats.mean, sigma=stats.covariance(description), n=stats.n,
                        sample=reservoir.sample(), seconds=time.perf_counter() - start)


class _Reservoir:
    """A uniform random sample of at most ``size`` rows of a stream (algorithm R), seeded."""

    def __init__(self, size: int, dims: int, seed: int) -> None:
        self.size = size
        self.rows = np.zeros((size, dims), np.float32)
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def add(self, batch: np.ndarray) -> None:
        if self.size == 0:
            self.seen += len(batch)
            return
        for row in batch:
            if self.seen < self.size:
                self.rows[self.seen] = row
            else:
                slot = self.rng.integers(0, self.seen + 1)
                if slot < self.size:
                    self.rows[slot] = row
            self.seen += 1

    def sample(self) -> np.ndarray:
        return self.rows[:min(self.seen, self.size)].copy()
