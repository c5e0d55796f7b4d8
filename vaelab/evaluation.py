"""Judging a VAE: FID, KID, precision and recall of its samples (from the prior and from the
ex-post latent density), FID of reconstructions, the test ELBO, active units.

The functions take plain callables (generate a batch, reconstruct a batch, ELBO of a set), so
they do not depend on how the VAE is stored; ``stages/evaluate.py`` binds them to
:mod:`vaelab.models` and :mod:`vaelab.density`. Also the reference-statistics file (the real
test images' feature mean and covariance, and a seeded sample of their feature vectors) that
both stages share.

References: FID, Heusel et al. (2017); KID, Bińkowski et al. (2018); precision and recall,
Kynkäänniemi et al. (2019); ex-post density sampling, Ghosh et al. (2020); active units, Burda,
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
from vaelab.feature_stats import FeatureStats, compute_statistics
from vaelab.features import METADATA_KEYS, FeatureExtractor
from vaelab.fid import frechet_distance, kernel_inception_distance
from vaelab.io import atomic_path
from vaelab.precision_recall import DEFAULT_K, kth_neighbour_radii, precision_recall

# Feature vectors kept of each image set (a seeded uniform sample, at most this many), for KID and
# precision/recall: 80 MB at 2048-d, whatever the number of images.
FEATURE_SAMPLE_SIZE = 10000
# KID as Bińkowski et al. and torch-fidelity compute it: 100 subsets of 1,000.
KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100
# A latent dimension is active when its posterior mean varies over the data by more than this
# (Burda et al. 2016, section 5.2).
ACTIVE_UNIT_THRESHOLD = 0.01


@dataclass(frozen=True)
class ReferenceStats:
    """Feature statistics of the real test images, and what produced them.

    ``mu`` float64 (D,), ``sigma`` float64 (D, D), ``n`` images, ``sample`` float32 (k, D)
    (a seeded uniform sample of k = min(n, 10,000) feature vectors, for KID and precision/recall), ``metadata``: the feature metadata
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
    stats = compute_statistics(images, extractor, batch_size, progress=progress, keep=FEATURE_SAMPLE_SIZE,
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


def generated_batches(generate_batch: Callable[[int, int], np.ndarray], num_samples: int,
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


def equal_samples(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both feature samples cut to the smaller one's size by seeded draws without replacement:
    precision and recall compare manifolds estimated from equally many points (Kynkäänniemi et al.)."""
    m = min(len(a), len(b))
    rng = np.random.default_rng(seed)
    pick = lambda x: x if len(x) == m else x[np.sort(rng.choice(len(x), m, replace=False))]  # noqa: E731
    return pick(a), pick(b)


def sample_metrics(samples: FeatureStats, reference: ReferenceStats, seed: int,
                   radii_cache: dict[int, np.ndarray]) -> dict[str, float]:
    """FID, KID, precision and recall of one set of generated images' features against the
    reference. ``radii_cache`` keeps the reference's k-NN radii by sample size, so several sample
    sets against one reference compute them once."""
    metrics = {"fid": frechet_distance(samples.mu, samples.sigma, reference.mu, reference.sigma),
               "kid": float("nan"), "precision": float("nan"), "recall": float("nan")}
    if len(reference.sample) >= 2 and len(samples.sample) >= 2:
        metrics["kid"], _ = kernel_inception_distance(samples.sample, reference.sample, num_subsets=KID_SUBSETS,
                                                      subset_size=KID_SUBSET_SIZE, seed=seed)
    if min(len(reference.sample), len(samples.sample)) > DEFAULT_K:
        real, fake = equal_samples(reference.sample, samples.sample, seed)
        if len(real) not in radii_cache:
            radii_cache[len(real)] = kth_neighbour_radii(real, DEFAULT_K)
        metrics["precision"], metrics["recall"] = precision_recall(real, fake, DEFAULT_K,
                                                                   real_radii=radii_cache[len(real)])
    return metrics


def evaluate(*, samplers: Mapping[str, Callable[[int, int], np.ndarray]], num_samples: int,
             reconstruct_batch: Callable[[np.ndarray], np.ndarray], test_images: np.ndarray,
             elbo: Callable[[np.ndarray], Mapping[str, float]], encode_mean: Callable[[np.ndarray], np.ndarray],
             reference: ReferenceStats, extractor: FeatureExtractor, batch_size: int, seed: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """All metrics of one model as a flat dict (numbers, plus strings naming the features).

    * for each ``samplers`` entry ``name: generate_batch(start, count)`` (``prior``: decoded
      N(0, I) samples; ``gmm``: decoded samples of the ex-post density), ``num_samples`` images
      against ``reference``: ``fid``, ``kid``, ``precision``, ``recall`` (k = 3), suffixed
      ``_<name>`` except for ``prior`` (``fid_gmm``, ...);
    * ``fid_reconstruction``: ``reconstruct_batch`` of every test image against ``reference``;
    * ``test_elbo``, ``test_reconstruction``, ``test_kl``: ``elbo(test_images)`` (nats per image);
    * ``active_units``: see :func:`active_units`, from ``encode_mean(test_images)``;
    * metadata: fid_num_samples, fid_num_reference, pr_num_samples (points per manifold), pr_k,
      and the feature network, weights, preprocessing, precision, size, dims.
    """
    check_reference(reference, extractor.metadata)
    metrics: dict[str, Any] = {}
    radii_cache: dict[int, np.ndarray] = {}
    pr_points = 0
    for name, generate_batch in samplers.items():
        samples = compute_statistics(generated_batches(generate_batch, num_samples, batch_size), extractor,
                                     batch_size, progress=progress, total=num_samples, keep=FEATURE_SAMPLE_SIZE,
                                     seed=seed, description=f"{name} sample features")
        suffix = "" if name == "prior" else f"_{name}"
        metrics.update({f"{key}{suffix}": value
                        for key, value in sample_metrics(samples, reference, seed, radii_cache).items()})
        pr_points = min(len(samples.sample), len(reference.sample))
    reconstructed = compute_statistics(mapped_batches(test_images, reconstruct_batch, batch_size), extractor,
                                       batch_size, progress=progress, total=len(test_images),
                                       description="reconstruction features")
    metrics["fid_reconstruction"] = frechet_distance(reconstructed.mu, reconstructed.sigma, reference.mu,
                                                     reference.sigma)
    terms = elbo(test_images)
    metrics.update({
        "test_elbo": float(terms["elbo"]),
        "test_reconstruction": float(terms["reconstruction"]),
        "test_kl": float(terms["kl"]),
        "active_units": active_units(encode_mean(test_images)),
        "fid_num_samples": int(num_samples),
        "fid_num_reference": int(reference.n),
        "pr_num_samples": int(pr_points),
        "pr_k": DEFAULT_K,
    })
    metrics.update(extractor.metadata)
    return metrics


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> None:
    """Flat JSON, atomically. Non-finite numbers become null (JSON has no NaN)."""
    clean = {key: (None if isinstance(value, float) and not np.isfinite(value) else value)
             for key, value in metrics.items()}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(clean, indent=2) + "\n")
