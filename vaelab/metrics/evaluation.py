"""Judging a VAE: FID, KID, precision and recall of its samples (from the prior and from the
ex-post latent density), FID of reconstructions, the test ELBO, active units.

The functions take plain callables (generate a batch, reconstruct a batch, ELBO of a set), so
they do not depend on how the VAE is stored; ``stages/evaluate.py`` binds them to
:mod:`vaelab.model.networks` and :mod:`vaelab.model.density`. The real test images' statistics
they compare with are :mod:`vaelab.metrics.reference`'s.

References: FID, Heusel et al. (2017); KID, Bińkowski et al. (2018); precision and recall,
Kynkäänniemi et al. (2019); ex-post density sampling, Ghosh et al. (2020); active units, Burda,
Grosse & Salakhutdinov (2016), "Importance weighted autoencoders".
"""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from vaelab.metrics.feature_stats import FeatureStats, compute_statistics
from vaelab.metrics.features import FeatureExtractor
from vaelab.metrics.distances import frechet_distance, kernel_inception_distance
from vaelab.core.io import atomic_path
from vaelab.metrics.reference import FEATURE_SAMPLE_SIZE, check_reference
from vaelab.metrics.precision_recall import DEFAULT_K, kth_neighbour_radii, precision_recall

# KID as Bińkowski et al. and torch-fidelity compute it: 100 subsets of 1,000.
KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100
# A latent dimension is active when its posterior mean varies over the data by more than this
# (Burda et al. 2016, section 5.2).
ACTIVE_UNIT_THRESHOLD = 0.01


# The counts a provenance file ends with, in this order (after the feature metadata).
PROVENANCE_COUNTS = ("fid_num_samples", "fid_num_reconstructions", "fid_num_reference", "pr_num_samples")


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


def sample_metrics(samples: FeatureStats, reference: FeatureStats, seed: int,
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


@dataclass(frozen=True)
class Evaluation:
    """What evaluate writes: ``metrics``, the numbers, nested per sampler so that `dvc metrics diff`
    and `dvc exp show` set them side by side (``prior.fid``, ``gmm.fid``, ...), and ``provenance``,
    what made them (the feature network, its weights and their hash, preprocessing, precision,
    sample counts): a sibling file, so the tables stay narrow."""

    metrics: dict[str, Any]
    provenance: dict[str, Any]


def score_samples(generate_batch: Callable[[int, int], np.ndarray], num_samples: int, reference: FeatureStats,
                  extractor: FeatureExtractor, batch_size: int, seed: int, name: str = "generated",
                  progress: bool = True, radii_cache: dict[int, np.ndarray] | None = None) -> tuple[dict[str, float], int]:
    """One sampler's ``fid``, ``kid``, ``precision`` and ``recall`` (k = 3): ``num_samples``
    images from ``generate_batch(start, count)`` -> uint8 (count, H, W, C), streamed, against
    ``reference``; and the points per manifold that precision and recall compared."""
    samples = compute_statistics(generated_batches(generate_batch, num_samples, batch_size), extractor,
                                 batch_size, progress=progress, total=num_samples, keep=FEATURE_SAMPLE_SIZE,
                                 seed=seed, description=f"{name} sample features")
    metrics = sample_metrics(samples, reference, seed, {} if radii_cache is None else radii_cache)
    return metrics, min(len(samples.sample), len(reference.sample))


def score_reconstructions(reconstruct_batch: Callable[[np.ndarray], np.ndarray], test_images: np.ndarray,
                          num_samples: int, reference: FeatureStats, extractor: FeatureExtractor, batch_size: int,
                          progress: bool = True) -> tuple[dict[str, float], int]:
    """``{"fid": ...}`` of ``reconstruct_batch`` applied to the first ``num_samples`` test images
    (all of them when there are fewer: a reconstruction FID costs what a sampler's does and carries
    the same small-sample bias), and how many were scored."""
    originals = test_images[:num_samples]
    reconstructed = compute_statistics(mapped_batches(originals, reconstruct_batch, batch_size), extractor,
                                       batch_size, progress=progress, total=len(originals),
                                       description="reconstruction features")
    return {"fid": frechet_distance(reconstructed.mu, reconstructed.sigma, reference.mu, reference.sigma)}, len(originals)


def score_test(elbo: Callable[[np.ndarray], Mapping[str, float]], encode_mean: Callable[[np.ndarray], np.ndarray],
               test_images: np.ndarray) -> dict[str, Any]:
    """``elbo``, ``reconstruction``, ``kl`` of ``elbo(test_images)`` (nats per image) and
    ``active_units`` (:func:`active_units`, from ``encode_mean(test_images)``)."""
    terms = elbo(test_images)
    return {"elbo": float(terms["elbo"]), "reconstruction": float(terms["reconstruction"]),
            "kl": float(terms["kl"]), "active_units": active_units(encode_mean(test_images))}


def evaluate(*, samplers: Mapping[str, Callable[[int, int], np.ndarray]], num_samples: int,
             reconstruct_batch: Callable[[np.ndarray], np.ndarray], test_images: np.ndarray,
             elbo: Callable[[np.ndarray], Mapping[str, float]], encode_mean: Callable[[np.ndarray], np.ndarray],
             reference: FeatureStats, extractor: FeatureExtractor, batch_size: int, seed: int = 0,
             progress: bool = True) -> Evaluation:
    """All metrics of one model in one call (:class:`Evaluation`); the pipeline computes the same
    parts in a stage each (:func:`score_samples` per sampler, :func:`score_reconstructions` and
    :func:`score_test`) and joins them with :func:`join_scores`.

    * ``metrics[<sampler>]`` for each ``samplers`` entry ``name: generate_batch(start, count)``
      (``prior``: decoded N(0, I) samples; ``gmm``: decoded samples of the ex-post density; any
      sampler added later alike), ``num_samples`` images against ``reference``;
    * ``metrics["reconstruction"]["fid"]``: :func:`score_reconstructions`;
    * ``metrics["test"]``: :func:`score_test`;
    * ``provenance``: the feature metadata and fid_num_samples, fid_num_reconstructions,
      fid_num_reference, pr_num_samples (points per manifold), pr_k.
    """
    check_reference(reference, extractor.metadata)
    parts = []
    radii_cache: dict[int, np.ndarray] = {}
    for name, generate_batch in samplers.items():
        metrics, points = score_samples(generate_batch, num_samples, reference, extractor, batch_size, seed, name,
                                        progress, radii_cache)
        parts.append(sampler_part(name, metrics, points, num_samples, extractor.metadata))
    metrics, count = score_reconstructions(reconstruct_batch, test_images, num_samples, reference, extractor,
                                           batch_size, progress)
    parts.append(test_part(metrics, count, reference.n, score_test(elbo, encode_mean, test_images),
                           extractor.metadata))
    return join_scores(parts)


def sampler_part(name: str, metrics: Mapping[str, float], points: int, num_samples: int,
                 metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What a sampler's score stage writes: its metrics under its name, and what made them."""
    return {"metrics": {name: dict(metrics)},
            "provenance": {**metadata, "fid_num_samples": int(num_samples), "pr_num_samples": int(points)}}


def test_part(reconstruction: Mapping[str, float], num_reconstructions: int, num_reference: int,
              test: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What the reconstructions' score stage writes: ``reconstruction`` and ``test`` metrics, and
    what made them."""
    return {"metrics": {"reconstruction": dict(reconstruction), "test": dict(test)},
            "provenance": {**metadata, "fid_num_reconstructions": int(num_reconstructions),
                           "fid_num_reference": int(num_reference)}}


def join_scores(parts: list[Mapping[str, Any]]) -> Evaluation:
    """One :class:`Evaluation` from score parts (:func:`sampler_part`, :func:`test_part`), their
    metrics in the parts' order. Parts made by different feature networks, weights, preprocessing
    or sample counts would not compare: a ValueError naming the first difference."""
    metrics: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    for part in parts:
        metrics.update(part["metrics"])
        for key, value in part["provenance"].items():
            if key in provenance and provenance[key] != value:
                raise ValueError(f"scores disagree on {key}: {provenance[key]!r} and {value!r}; re-run every "
                                 f"score stage of this dataset")
            provenance[key] = value
    order = [key for key in provenance if key not in PROVENANCE_COUNTS] + [
        key for key in PROVENANCE_COUNTS if key in provenance]
    return Evaluation(metrics=metrics, provenance={**{key: provenance[key] for key in order}, "pr_k": DEFAULT_K})


def _json_safe(value: Any) -> Any:
    """Non-finite numbers as null (JSON has no NaN), through nested mappings."""
    if isinstance(value, Mapping):
        return {key: _json_safe(v) for key, v in value.items()}
    return None if isinstance(value, float) and not np.isfinite(value) else value


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> None:
    """JSON (nested mappings allowed), atomically. Non-finite numbers become null."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
