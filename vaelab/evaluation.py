"""Judging a VAE: FID of prior samples and of reconstructions, KID, the test ELBO, active units.

The functions take plain callables (generate a batch, reconstruct a batch, ELBO of a set), so
they do not depend on how the VAE is stored; ``stages/evaluate.py`` binds them to
:mod:`vaelab.models`. Also the reference-statistics file (the real test images' feature mean
and covariance) that both stages share.

References: FID, Heusel et al. (2017); KID, Bińkowski et al. (2018); active units, Burda,
Grosse & Salakhutdinov (2016), "Importance weighted autoencoders".
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from vaelab.errors import VaelabError
from vaelab.features import METADATA_KEYS, FeatureExtractor, compute_statistics
from vaelab.fid import frechet_distance, kernel_inception_distance
from vaelab.io import atomic_path

# Feature vectors of the real test images kept in the reference file for KID (8 MB at 2048-d).
KID_SAMPLE_SIZE = 1000
KID_SUBSETS = 100
# A latent dimension is active when its posterior mean varies over the data by more than this
# (Burda et al. 2016, section 5.2).
ACTIVE_UNIT_THRESHOLD = 0.01


@dataclass(frozen=True)
class ReferenceStats:
    """Feature statistics of the real test images, and what produced them.

    ``mu`` float64 (D,), ``sigma`` float64 (D, D), ``n`` images, ``sample`` float32 (k, D)
    (a seeded random subset of feature vectors, for KID), ``metadata``: the feature metadata
    (:data:`vaelab.features.METADATA_KEYS`: network, weights and their hash, preprocessing,
    precision, image size, dims).
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    sample: np.ndarray
    metadata: dict[str, Any]


def compute_reference(images: np.ndarray, extractor: FeatureExtractor, batch_size: int, seed: int,
                      progress: bool = True) -> ReferenceStats:
    """Feature statistics of ``images`` (uint8 (N, H, W, C)), keeping a KID sample seeded by ``seed``."""
    stats = compute_statistics(images, extractor, batch_size, progress=progress, keep=KID_SAMPLE_SIZE,
                               seed=seed, description="reference features")
    return ReferenceStats(mu=stats.mu, sigma=stats.sigma, n=stats.n, sample=stats.sample,
                          metadata=extractor.metadata)


def save_reference(reference: ReferenceStats, path: str | Path) -> None:
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


def load_reference(path: str | Path) -> ReferenceStats:
    """Read a file written by :func:`save_reference`; missing or damaged is a VaelabError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            reference = ReferenceStats(
                mu=npz["mu"].astype(np.float64), sigma=npz["sigma"].astype(np.float64), n=int(npz["n"]),
                sample=npz["sample"].astype(np.float32),
                metadata={key: npz[key].item() for key in METADATA_KEYS},
            )
    except FileNotFoundError:
        raise VaelabError(f"reference statistics {path} not found; run `dvc repro reference_stats@<dataset>` first") from None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise VaelabError(f"reference statistics {path} are damaged ({error}); delete them and re-run the "
                          f"reference_stats stage") from None
    dims = reference.metadata["fid_feature_dims"]
    if reference.mu.shape != (dims,) or reference.sigma.shape != (dims, dims):
        raise VaelabError(f"reference statistics {path} are damaged (mean {reference.mu.shape}, covariance "
                          f"{reference.sigma.shape}, expected {dims}-d); delete them and re-run the reference_stats stage")
    return reference


def check_reference(reference: ReferenceStats, expected: Mapping[str, Any], path: str | Path = "reference") -> None:
    """Refuse reference statistics made by another network, weights file, preprocessing, precision
    or image size than ``expected`` (a feature metadata dict): their FID would be meaningless."""
    differ = [f"{key}: {reference.metadata.get(key)!r} there, {value!r} now"
              for key, value in expected.items() if reference.metadata.get(key) != value]
    if differ:
        raise VaelabError(
            f"reference statistics {path} were computed with other FID settings ({'; '.join(differ)}); "
            f"re-run `dvc repro reference_stats@<dataset>` (or restore the fid params they were made with)"
        )


def prior_sample_batches(generate_batch: Callable[[int, int], np.ndarray], num_samples: int,
                         batch_size: int) -> Iterator[np.ndarray]:
    """Call ``generate_batch(start, count)`` -> uint8 (count, H, W, C) for consecutive slices of
    ``num_samples`` images, lazily: only one batch of generated images exists at a time."""
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        batch = np.asarray(generate_batch(start, count))
        if len(batch) != count:
            raise ValueError(f"generate_batch({start}, {count}) returned {len(batch)} images")
        yield batch


def mapped_batches(images: np.ndarray, transform: Callable[[np.ndarray], np.ndarray],
                   batch_size: int) -> Iterator[np.ndarray]:
    """``transform`` (e.g. reconstruct through the VAE) applied to ``images`` batch by batch, lazily."""
    for start in range(0, len(images), batch_size):
        yield np.asarray(transform(images[start:start + batch_size]))


def active_units(posterior_means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of latent dimensions whose posterior mean E_q(z|x)[z_d] has variance over the data
    ``posterior_means`` (N, latent_dim) above ``threshold`` (Burda et al. 2016)."""
    means = np.asarray(posterior_means, dtype=np.float64)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"posterior means must be (N >= 2, latent_dim), got shape {means.shape}")
    return int(np.sum(means.var(axis=0) > threshold))


def evaluate(*, generate_batch: Callable[[int, int], np.ndarray], num_samples: int,
             reconstruct_batch: Callable[[np.ndarray], np.ndarray], test_images: np.ndarray,
             elbo: Callable[[np.ndarray], Mapping[str, float]], encode_mean: Callable[[np.ndarray], np.ndarray],
             reference: ReferenceStats, extractor: FeatureExtractor, batch_size: int, seed: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """All metrics of one model as a flat dict (numbers, plus two strings naming the features).

    * ``fid``: ``num_samples`` images from ``generate_batch(start, count)`` (decoded prior samples)
      against ``reference``; ``kid``: KID of a seeded subset of the same features against the
      reference's sample;
    * ``fid_reconstruction``: ``reconstruct_batch`` of every test image against ``reference``;
    * ``test_elbo``, ``test_reconstruction``, ``test_kl``: ``elbo(test_images)`` (nats per image);
    * ``active_units``: see :func:`active_units`, from ``encode_mean(test_images)``;
    * metadata: fid_num_samples, fid_num_reference, and the feature network, weights, size, dims.
    """
    check_reference(reference, extractor.metadata)
    generated = compute_statistics(prior_sample_batches(generate_batch, num_samples, batch_size), extractor,
                                   batch_size, progress=progress, total=num_samples, keep=KID_SAMPLE_SIZE,
                                   seed=seed, description="generated features")
    fid = frechet_distance(generated.mu, generated.sigma, reference.mu, reference.sigma)
    kid = float("nan")
    if len(reference.sample) >= 2 and len(generated.sample) >= 2:
        kid, _ = kernel_inception_distance(generated.sample, reference.sample, num_subsets=KID_SUBSETS,
                                           subset_size=KID_SAMPLE_SIZE, seed=seed)
    reconstructed = compute_statistics(mapped_batches(test_images, reconstruct_batch, batch_size), extractor,
                                       batch_size, progress=progress, total=len(test_images),
                                       description="reconstruction features")
    fid_reconstruction = frechet_distance(reconstructed.mu, reconstructed.sigma, reference.mu, reference.sigma)
    terms = elbo(test_images)
    metrics: dict[str, Any] = {
        "fid": fid,
        "fid_reconstruction": fid_reconstruction,
        "kid": kid,
        "test_elbo": float(terms["elbo"]),
        "test_reconstruction": float(terms["reconstruction"]),
        "test_kl": float(terms["kl"]),
        "active_units": active_units(encode_mean(test_images)),
        "fid_num_samples": int(num_samples),
        "fid_num_reference": int(reference.n),
    }
    metrics.update(extractor.metadata)
    return metrics


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> None:
    """Flat JSON, atomically. Non-finite numbers become null (JSON has no NaN)."""
    clean = {key: (None if isinstance(value, float) and not np.isfinite(value) else value)
             for key, value in metrics.items()}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(clean, indent=2) + "\n")
