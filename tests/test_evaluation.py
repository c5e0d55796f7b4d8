"""Evaluation glue with stand-in callables and a stand-in feature network; the two stage CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from vaelab.density import fit_density, save_density
from vaelab.errors import VaelabError
from vaelab.evaluation import (
    active_units, check_reference, compute_reference, evaluate, load_reference,
    prior_sample_batches, save_reference, write_metrics,
)
from vaelab.features import build_stand_in_extractor, compute_activations
from vaelab.fid import frechet_distance


def images(n: int, seed: int, size: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def extractor():
    return build_stand_in_extractor(image_size=16, dims=8)


@pytest.fixture(scope="module")
def test_images():
    return images(60, seed=0)


@pytest.fixture(scope="module")
def reference(extractor, test_images):
    return compute_reference(test_images, extractor, batch_size=25, seed=0, progress=False)


def test_reference_round_trip(tmp_path, reference, extractor):
    path = tmp_path / "ref" / "mnist.npz"
    save_reference(reference, path)
    loaded = load_reference(path)
    np.testing.assert_array_equal(loaded.mu, reference.mu)
    np.testing.assert_array_equal(loaded.sigma, reference.sigma)
    np.testing.assert_array_equal(loaded.sample, reference.sample)
    assert loaded.mu.dtype == loaded.sigma.dtype == np.float64
    assert loaded.n == 60 and loaded.metadata == extractor.metadata
    with np.load(path, allow_pickle=False) as npz:  # no pickled objects inside
        assert str(npz["feature_weights"]) == "stand-in(seed=0)" and str(npz["fid_precision"]) == "float32"
    assert [p.name for p in path.parent.iterdir()] == ["mnist.npz"]  # no temporary left behind


def test_missing_or_damaged_reference(tmp_path):
    with pytest.raises(VaelabError, match="not found.*reference_stats"):
        load_reference(tmp_path / "absent.npz")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"not a zip")
    with pytest.raises(VaelabError, match="damaged"):
        load_reference(damaged)


def test_reference_from_other_settings_is_refused(reference):
    expected = dict(reference.metadata, fid_image_size=299)
    with pytest.raises(VaelabError, match="fid_image_size: 16 there, 299 now"):
        check_reference(reference, expected, "data/reference/mnist.npz")
    check_reference(reference, reference.metadata)


def test_prior_sample_batches_are_lazy_slices():
    calls = []

    def generate(start, count):
        calls.append((start, count))
        return np.zeros((count, 4, 4, 1), np.uint8)

    batches = prior_sample_batches(generate, num_samples=23, batch_size=10)
    assert calls == []  # nothing generated before it is asked for
    next(batches)
    assert calls == [(0, 10)]
    assert [len(b) for b in batches] == [10, 3]
    assert calls == [(0, 10), (10, 10), (20, 3)]
    with pytest.raises(ValueError, match="returned 2 images"):
        list(prior_sample_batches(lambda start, count: np.zeros((2, 4, 4, 1), np.uint8), 5, 5))


def test_active_units_counts_dimensions_with_variance_above_threshold():
    rng = np.random.default_rng(1)
    means = np.stack([rng.standard_normal(500),          # variance ~1: active
                      0.05 * rng.standard_normal(500),   # ~0.0025: inactive
                      np.full(500, 3.0),                 # constant: inactive
                      0.5 * rng.standard_normal(500)],   # ~0.25: active
                     axis=1)
    assert active_units(means) == 2
    assert active_units(means, threshold=1e-4) == 3
    with pytest.raises(ValueError):
        active_units(np.zeros(5))


def run_evaluate(test_images, reference, extractor, generate_batch, reconstruct_batch, num_samples=60, **samplers):
    latent = np.random.default_rng(2).standard_normal((len(test_images), 3)) * [1.0, 0.01, 2.0]
    return evaluate(
        samplers={"prior": generate_batch, **samplers}, num_samples=num_samples, reconstruct_batch=reconstruct_batch,
        test_images=test_images,
        elbo=lambda x: {"elbo": -12.5, "reconstruction": 10.0, "kl": 2.5, "loss": 12.5},
        encode_mean=lambda x: latent[: len(x)],
        reference=reference, extractor=extractor, batch_size=25, seed=0, progress=False,
    )


def test_evaluate_perfect_model_scores_zero(test_images, reference, extractor):
    # A "model" that generates exactly the test images and reconstructs perfectly.
    metrics = run_evaluate(test_images, reference, extractor,
                           generate_batch=lambda start, count: test_images[start:start + count],
                           reconstruct_batch=lambda x: x)
    assert metrics["fid"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0
    assert metrics["pr_num_samples"] == 60 and metrics["pr_k"] == 3
    assert metrics["fid_reconstruction"] == pytest.approx(0.0, abs=1e-9)
    # Unbiased KID of a set against itself is not exactly 0 (the cross term keeps its diagonal) but small.
    assert abs(metrics["kid"]) < 0.01
    assert metrics["test_elbo"] == -12.5 and metrics["test_reconstruction"] == 10.0 and metrics["test_kl"] == 2.5
    assert metrics["active_units"] == 2
    assert metrics["fid_num_samples"] == 60 and metrics["fid_num_reference"] == 60
    assert metrics["feature_weights"] == "stand-in(seed=0)" and metrics["fid_feature_dims"] == 8


def test_evaluate_bad_model_scores_worse(test_images, reference, extractor):
    dark = lambda x: (x // 4).astype(np.uint8)  # noqa: E731
    noise = images(200, seed=3)
    metrics = run_evaluate(test_images, reference, extractor,
                           generate_batch=lambda start, count: noise[start:start + count],
                           reconstruct_batch=dark, num_samples=200)
    # The generator is the same distribution as the test images (uniform noise), the reconstructions are not.
    assert metrics["fid_reconstruction"] > 10 * metrics["fid"] > 0
    reconstructed = compute_reference(dark(test_images), extractor, 25, 0, progress=False)
    assert metrics["fid_reconstruction"] == pytest.approx(
        frechet_distance(reconstructed.mu, reconstructed.sigma, reference.mu, reference.sigma), rel=1e-9)
    assert metrics["fid_num_samples"] == 200


def test_every_sampler_gets_fid_kid_precision_and_recall(test_images, reference, extractor):
    collapsed = np.repeat(test_images[:1], 60, axis=0)  # every sample is the first test image
    metrics = run_evaluate(test_images, reference, extractor,
                           generate_batch=lambda start, count: test_images[start:start + count],
                           reconstruct_batch=lambda x: x,
                           gmm=lambda start, count: collapsed[start:start + count])
    assert metrics["fid"] == pytest.approx(0.0, abs=1e-9)
    # A collapsed set has zero covariance: FID = |mu_ref - f(x0)|^2 + tr(sigma_ref).
    f0 = np.concatenate(list(compute_activations(test_images[:1], extractor, progress=False)))[0].astype(np.float64)
    assert metrics["fid_gmm"] == pytest.approx(np.sum((reference.mu - f0) ** 2) + np.trace(reference.sigma), rel=1e-6)
    # A collapsed sampler sits on one real point: precise, but it recalls 1 real image of 60.
    assert (metrics["precision_gmm"], metrics["recall_gmm"]) == (1.0, 1 / 60)
    assert metrics["kid_gmm"] > metrics["kid"]
    assert {"fid", "kid", "precision", "recall", "fid_gmm", "kid_gmm", "precision_gmm", "recall_gmm"} <= set(metrics)


def test_precision_recall_use_equally_many_points_of_each_set(test_images, reference, extractor):
    many = images(150, seed=8)
    metrics = run_evaluate(test_images, reference, extractor,
                           generate_batch=lambda start, count: many[start:start + count],
                           reconstruct_batch=lambda x: x, num_samples=150)
    assert metrics["fid_num_samples"] == 150 and metrics["pr_num_samples"] == 60
    assert 0.0 < metrics["precision"] <= 1.0 and 0.0 < metrics["recall"] <= 1.0


def test_evaluate_refuses_reference_of_another_network(test_images, reference):
    other = build_stand_in_extractor(image_size=16, dims=8, seed=1)
    with pytest.raises(VaelabError, match="other FID settings"):
        run_evaluate(test_images, reference, other, lambda s, c: test_images[s:s + c], lambda x: x)


def test_write_metrics_flat_json(tmp_path):
    path = tmp_path / "metrics" / "mnist.json"
    write_metrics({"fid": 1.5, "kid": float("nan"), "active_units": 2, "feature_weights": "imagenet"}, path)
    assert json.loads(path.read_text()) == {"fid": 1.5, "kid": None, "active_units": 2, "feature_weights": "imagenet"}


# ---- the stage CLIs, on a tiny prepared dataset, random Inception weights at 75 px -------------------------

def _params(tmp_path: Path, **fid) -> Path:
    params = {
        "seed": 7, "latent_dim": 2, "hidden_dim": 16, "epochs": 1, "batch_size": 32, "learning_rate": 0.001,
        "beta": 1.0,
        "datasets": {"tiny": {"data": {"kind": "mnist"}, "model": {"architecture": "mlp", "likelihood": "bernoulli"}}},
        "fid": {"network": "random", "num_samples": 40, "batch_size": 20, "image_size": 75, **fid},
    }
    path = tmp_path / f"params{len(fid)}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _stage(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_reference_stats_and_evaluate_stages(tmp_path):
    from vaelab import models
    from vaelab.data import PreparedData, save_prepared
    from vaelab.params import load_params

    x = images(80, seed=4, size=28)
    data = PreparedData(x_train=x[:40], y_train=np.zeros(40, np.int64), x_test=x[40:],
                        y_test=np.zeros(40, np.int64), class_names=("a",))
    prepared = tmp_path / "prepared" / "tiny.npz"
    save_prepared(data, prepared)
    params_path = _params(tmp_path)
    params = load_params(params_path)
    config = models.arch_config(params, params.dataset("tiny"), (28, 28, 1))
    model_dir = tmp_path / "models" / "tiny"
    model_dir.mkdir(parents=True)
    models.save_vae(models.Vae(models.build_encoder(config), models.build_decoder(config), config), model_dir)
    density = tmp_path / "models" / "tiny.gmm.npz"
    save_density(fit_density(np.random.default_rng(0).standard_normal((50, 2)), components=3, seed=0), density)

    reference = tmp_path / "reference" / "tiny.npz"
    result = _stage("stages.reference_stats", "--dataset", "tiny", "--data", str(prepared), "--out", str(reference),
                    "--params", str(params_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FID is biased" in result.stderr  # 40 images < 2048 dimensions
    ref = load_reference(reference)
    assert ref.n == 40 and ref.mu.shape == (2048,) and ref.sigma.shape == (2048, 2048)
    assert ref.metadata["feature_weights"] == "he-normal(seed=7)" and ref.metadata["fid_image_size"] == 75

    out = tmp_path / "metrics" / "tiny.json"
    args = ["--dataset", "tiny", "--data", str(prepared), "--models", str(model_dir), "--density", str(density),
            "--reference", str(reference), "--out", str(out)]
    result = _stage("stages.evaluate", *args, "--params", str(params_path))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    for key in ("fid", "fid_gmm", "fid_reconstruction", "kid", "kid_gmm", "test_elbo", "test_reconstruction", "test_kl",
                "precision", "recall", "precision_gmm", "recall_gmm"):
        assert isinstance(metrics[key], float) and np.isfinite(metrics[key]), key
    assert metrics["fid"] > 0 and metrics["test_elbo"] < 0
    assert 0 <= metrics["active_units"] <= 2
    assert metrics["fid_num_samples"] == 40 and metrics["feature_network"] == "random"

    # Reproducible: the same params and seed give the same metrics, to the last digit.
    again = tmp_path / "metrics" / "again.json"
    result = _stage("stages.evaluate", *args[:-1], str(again), "--params", str(params_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert again.read_text() == out.read_text()

    # Reference statistics made with other FID settings: one clear line, exit 1, nothing written.
    out.unlink()
    result = _stage("stages.evaluate", *args, "--params", str(_params(tmp_path, image_size=80)))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: reference statistics")
    assert "fid_image_size: 75 there, 80 now" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_reference_stats_stage_missing_data_is_one_line(tmp_path):
    result = _stage("stages.reference_stats", "--dataset", "tiny", "--data", str(tmp_path / "absent.npz"),
                    "--out", str(tmp_path / "ref.npz"), "--params", str(_params(tmp_path)))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: prepared data {tmp_path / 'absent.npz'} not found; run `dvc repro preprocess@<dataset>` first"]
