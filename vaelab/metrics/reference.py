"""The reference statistics: the real test images' feature mean and covariance, a seeded sample of
their feature vectors, and what made them (the reference_stats stage writes them, evaluate reads
them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.core.io import atomic_path, load_arrays
from vaelab.metrics.feature_stats import FeatureStats, compute_statistics
from vaelab.metrics.features import METADATA_KEYS, FeatureExtractor

# Feature vectors kept of each image set (a seeded uniform sample, at most this many), for KID and
# precision/recall: 80 MB at 2048-d, whatever the number of images.
FEATURE_SAMPLE_SIZE = 10000


def compute_reference(images: np.ndarray, extractor: FeatureExtractor, batch_size: int, seed: int,
                      progress: bool = True) -> FeatureStats:
    """Feature statistics of ``images`` (uint8 (N, H, W, C)), keeping a KID sample seeded by ``seed``."""
    stats = compute_statistics(images, extractor, batch_size, progress=progress, keep=FEATURE_SAMPLE_SIZE,
                               seed=seed, description="reference features")
    return dataclasses.replace(stats, metadata=extractor.metadata)


def save_reference(reference: FeatureStats, path: str | Path) -> None:
    """Write an uncompressed ``.npz`` (no pickles; a 2048x2048 float64 covariance barely
    compresses), atomically."""
    meta = reference.metadata
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                mu=np.asarray(reference.mu, np.float64), sigma=np.asarray(reference.sigma, np.float64),
                n=np.int64(reference.n), sample=np.asarray(reference.sample, np.float32),
                **{key: np.asarray(meta[key]) for key in METADATA_KEYS},
            )


def load_reference(path: str | Path) -> FeatureStats:
    """Read a file written by :func:`save_reference`; missing or damaged is a VaelabError."""
    reference = load_arrays(path, lambda npz: FeatureStats(
        mu=npz["mu"].astype(np.float64), sigma=npz["sigma"].astype(np.float64), n=int(npz["n"]),
        sample=npz["sample"].astype(np.float32), metadata={key: npz[key].item() for key in METADATA_KEYS},
    ), "reference statistics", "reference_stats")
    dims = reference.metadata["fid_feature_dims"]
    if reference.mu.shape != (dims,) or reference.sigma.shape != (dims, dims):
        raise VaelabError(f"reference statistics {path} are damaged (mean {reference.mu.shape}, covariance "
                          f"{reference.sigma.shape}, expected {dims}-d); delete them and re-run the reference_stats stage")
    return reference


def check_reference(reference: FeatureStats, expected: Mapping[str, Any], path: str | Path = "reference") -> None:
    """Refuse reference statistics made by another network, weights file, preprocessing, precision
    or image size than ``expected`` (a feature metadata dict): their FID would be meaningless."""
    differ = [f"{key}: {reference.metadata.get(key)!r} there, {value!r} now"
              for key, value in expected.items() if reference.metadata.get(key) != value]
    if differ:
        raise VaelabError(
            f"reference statistics {path} were computed with other FID settings ({'; '.join(differ)}); "
            f"re-run `dvc repro reference_stats@<dataset>` (or restore the fid params they were made with)"
        )
