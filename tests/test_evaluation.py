"""Evaluation glue with stand-in callables and a stand-in feature network; the two stage CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT
from vaelab.model.density import fit_density, save_density
from vaelab.core.errors import VaelabError
from vaelab.metrics.evaluation import active_units, evaluate, generated_batches, write_metrics
from vaelab.metrics.reference import check_reference, compute_reference, load_reference, save_reference
from tests.stand_in import build_stand_in_extractor
from vaelab.metrics.feature_stats import compute_activations
from vaelab.metrics.distances import frechet_distance


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


def test_generated_batches_are_lazy_slices():
    calls = []

    def generate(start, count):
        calls.append((start, count))
        return np.zeros((count, 4, 4, 1), np.uint8)

    batches = generated_batches(generate, num_samples=23, batch_size=10)
    assert calls == []  # nothing generated before it is asked for
    next(batches)
    assert calls == [(0, 10)]
    assert [len(b) for b in batches] == [10, 3]
    assert calls == [(0, 10), (10, 10), (20, 3)]
    with pytest.raises(ValueError, match="returned 2 images"):
        list(generated_batches(lambda start, count: np.zeros((2, 4, 4, 1), np.uint8), 5, 5))


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
    result = run_evaluate(test_images, reference, extractor,
                          generate_batch=lambda start, count: test_images[start:start + count],
                          reconstruct_batch=lambda x: x)
    metrics, provenance = result.metrics, result.provenance
    assert metrics["prior"]["fid"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["prior"]["precision"] == 1.0 and metrics["prior"]["recall"] == 1.0
    assert provenance["pr_num_samples"] == 60 and provenance["pr_k"] == 3
    assert metrics["reconstruction"]["fid"] == pytest.approx(0.0, abs=1e-9)
    # Unbiased KID of a set against itself is not exactly 0 (the cross term keeps its diagonal) but small.
    assert abs(metrics["prior"]["kid"]) < 0.01
    assert metrics["test"] == {"elbo": -12.5, "reconstruction": 10.0, "kl": 2.5, "active_units": 2}
    assert provenance["fid_num_samples"] == 60 and provenance["fid_num_reference"] == 60
    assert provenance["feature_weights"] == "stand-in(seed=0)" and provenance["fid_feature_dims"] == 8
    # The metrics hold numbers only: every string is provenance.
    assert set(metrics) == {"prior", "reconstruction", "test"}
    assert all(isinstance(v, (int, float)) for part in metrics.values() for v in part.values())


def test_evaluate_bad_model_scores_worse(test_images, reference, extractor):
    dark = lambda x: (x // 4).astype(np.uint8)  # noqa: E731
    noise = images(200, seed=3)
    result = run_evaluate(test_images, reference, extractor,
                          generate_batch=lambda start, count: noise[start:start + count],
                          reconstruct_batch=dark, num_samples=200)
    metrics = result.metrics
    # The generator is the same distribution as the test images (uniform noise), the reconstructions are not.
    assert metrics["reconstruction"]["fid"] > 10 * metrics["prior"]["fid"] > 0
    reconstructed = compute_reference(dark(test_images), extractor, 25, 0, progress=False)
    assert metrics["reconstruction"]["fid"] == pytest.approx(
        frechet_distance(reconstructed.mu, reconstructed.sigma, reference.mu, reference.sigma), rel=1e-9)
    assert result.provenance["fid_num_samples"] == 200


def test_every_sampler_gets_fid_kid_precision_and_recall(test_images, reference, extractor):
    collapsed = np.repeat(test_images[:1], 60, axis=0)  # every sample is the first test image
    metrics = run_evaluate(test_images, reference, extractor,
                           generate_batch=lambda start, count: test_images[start:start + count],
                           reconstruct_batch=lambda x: x,
                           gmm=lambda start, count: collapsed[start:start + count]).metrics
    assert metrics["prior"]["fid"] == pytest.approx(0.0, abs=1e-9)
    # A collapsed set has zero covariance: FID = |mu_ref - f(x0)|^2 + tr(sigma_ref).
    f0 = np.concatenate(list(compute_activations(test_images[:1], extractor, progress=False)))[0].astype(np.float64)
    gmm = metrics["gmm"]
    assert gmm["fid"] == pytest.approx(np.sum((reference.mu - f0) ** 2) + np.trace(reference.sigma), rel=1e-6)
    # A collapsed sampler sits on one real point: precise, but it recalls 1 real image of 60.
    assert (gmm["precision"], gmm["recall"]) == (1.0, 1 / 60)
    assert gmm["kid"] > metrics["prior"]["kid"]
    # Every sampler, the same four metrics.
    assert set(metrics["prior"]) == set(gmm) == {"fid", "kid", "precision", "recall"}


def test_precision_recall_use_equally_many_points_of_each_set(test_images, reference, extractor, monkeypatch):
    from vaelab.metrics import evaluation

    compared, original = [], evaluation.precision_recall

    def recorded(real, fake, *args, **kwargs):  # the real function, its inputs' sizes recorded
        compared.append((len(real), len(fake)))
        return original(real, fake, *args, **kwargs)

    monkeypatch.setattr(evaluation, "precision_recall", recorded)
    many = images(150, seed=8)
    result = run_evaluate(test_images, reference, extractor,
                          generate_batch=lambda start, count: many[start:start + count],
                          reconstruct_batch=lambda x: x, num_samples=150)
    assert result.provenance["fid_num_samples"] == 150 and result.provenance["pr_num_samples"] == 60
    assert compared and all(sizes == (60, 60) for sizes in compared)
    assert 0.0 < result.metrics["prior"]["precision"] <= 1.0 and 0.0 < result.metrics["prior"]["recall"] <= 1.0


def test_evaluate_refuses_reference_of_another_network(test_images, reference):
    other = build_stand_in_extractor(image_size=16, dims=8, seed=1)
    with pytest.raises(VaelabError, match="other FID settings"):
        run_evaluate(test_images, reference, other, lambda s, c: test_images[s:s + c], lambda x: x)


def test_write_metrics_nested_json(tmp_path):
    path = tmp_path / "metrics" / "mnist.json"
    write_metrics({"prior": {"fid": 1.5, "kid": float("nan")}, "test": {"active_units": 2}}, path)
    assert json.loads(path.read_text()) == {"prior": {"fid": 1.5, "kid": None}, "test": {"active_units": 2}}


# ---- the stage CLIs, on a tiny prepared dataset, random Inception weights at 75 px -------------------------

TINY = {"tiny": {"data": {"kind": "mnist"}, "model": {"architecture": "mlp", "likelihood": "bernoulli"}}}


@pytest.fixture
def tiny_stage_inputs(tmp_path, write_params):
    """A prepared dataset of 40 + 40 images, an untrained model folder, its mixture and params."""
    from vaelab.model import networks
    from vaelab.core.prepared import PreparedData, save_prepared
    from vaelab.params import load_params
    from vaelab.model.outputs import save_vae

    x = images(80, seed=4, size=28)
    prepared = tmp_path / "prepared" / "tiny.npz"
    save_prepared(PreparedData(x_train=x[:40], y_train=np.zeros(40, np.int64), x_test=x[40:],
                               y_test=np.zeros(40, np.int64), class_names=("a",)), prepared)
    params_path = write_params(datasets=TINY, epochs=1, fid={"num_samples": 40, "batch_size": 20})
    params = load_params(params_path)
    config = networks.arch_config(params.dataset("tiny").model, (28, 28, 1))
    model_dir = tmp_path / "models" / "tiny"
    model_dir.mkdir(parents=True)
    save_vae(networks.TrainedVae(networks.build_encoder(config), networks.build_decoder(config), config), model_dir)
    density = tmp_path / "models" / "tiny.gmm.npz"
    save_density(fit_density(np.random.default_rng(0).standard_normal((50, 2)), components=3, seed=0), density)
    from vaelab.model.two_stage import TwoStageParams, fit_two_stage, save_two_stage

    codes = np.random.default_rng(1).standard_normal((50, 2)).astype(np.float32)
    two_stage = tmp_path / "models" / "tiny.two_stage"
    save_two_stage(fit_two_stage(codes, np.full_like(codes, -2.0), TwoStageParams(epochs=1, width=8), seed=0,
                                 batch_size=25), two_stage)
    return {"data": prepared, "models": model_dir, "density": density, "two_stage": two_stage, "params": params_path}


@pytest.mark.slow
def test_reference_stats_score_and_evaluate_stages(tmp_path, tiny_stage_inputs, write_params):
    from stages import evaluate as evaluate_stage
    from stages import reference_stats as reference_stage
    from stages import score as score_stage

    inputs = tiny_stage_inputs
    reference = tmp_path / "reference" / "tiny.npz"
    with pytest.warns(UserWarning, match="40 samples < 2048 feature dimensions"):
        reference_stage.main(["--dataset", "tiny", "--data", str(inputs["data"]), "--out", str(reference),
                              "--params", str(inputs["params"])])
    ref = load_reference(reference)
    assert ref.n == 40 and ref.mu.shape == (2048,) and ref.sigma.shape == (2048, 2048)
    assert ref.metadata["feature_weights"] == "he-normal(seed=7)" and ref.metadata["fid_image_size"] == 75

    parts = tmp_path / "metrics" / "tiny"
    common = ["--dataset", "tiny", "--models", str(inputs["models"]), "--reference", str(reference),
              "--params", str(inputs["params"])]
    extra = {"prior": [], "gmm": ["--fitted", str(inputs["density"])],
             "two_stage": ["--fitted", str(inputs["two_stage"])], "reconstructions": ["--data", str(inputs["data"])]}

    def score_args(sampler, out=None):
        return [*common, "--sampler", sampler, *extra[sampler], "--out", str(out or parts / f"{sampler}.json")]

    # The one subprocess: a score stage as DVC runs it.
    result = subprocess.run([sys.executable, "-m", "stages.score", *score_args("gmm")], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for sampler in ("prior", "two_stage", "reconstructions"):
        score_stage.main(score_args(sampler))
    out, provenance_path = tmp_path / "metrics" / "tiny.json", tmp_path / "metrics" / "tiny.provenance.json"
    join = ["--dataset", "tiny", "--scores", *(str(parts / f"{name}.json") for name in extra),
            "--out", str(out), "--provenance", str(provenance_path)]
    evaluate_stage.main(join)
    metrics = json.loads(out.read_text())
    assert list(metrics) == ["prior", "gmm", "two_stage", "reconstruction", "test"]
    for sampler in ("prior", "gmm", "two_stage"):
        for key in ("fid", "kid", "precision", "recall"):
            assert isinstance(metrics[sampler][key], float) and np.isfinite(metrics[sampler][key]), (sampler, key)
    for key in ("elbo", "reconstruction", "kl"):
        assert isinstance(metrics["test"][key], float) and np.isfinite(metrics["test"][key]), key
    assert np.isfinite(metrics["reconstruction"]["fid"])
    assert metrics["prior"]["fid"] > 0 and metrics["test"]["elbo"] < 0
    assert 0 <= metrics["test"]["active_units"] <= 2
    provenance = json.loads(provenance_path.read_text())
    assert provenance["fid_num_samples"] == 40 and provenance["feature_network"] == "random"
    assert provenance["feature_weights"] == "he-normal(seed=7)" and provenance["fid_num_reconstructions"] == 40
    # One output format, and none of TensorFlow's C++ start-up lines.
    lines = [line for line in result.stderr.splitlines() if line.strip() and "\r" not in line and "|" not in line]
    assert lines[0].startswith("info: TensorFlow ") and "runs on" in lines[0]
    assert lines[-1].startswith(f"info: tiny: gmm fid {metrics['gmm']['fid']:.3f}, precision ")
    assert all(line.split(":")[0] in ("info", "warning") for line in lines), lines
    assert not any(marker in result.stderr for marker in ("I0000", "E0000", "absl::", "cuInit", "oneDNN"))

    # The stages score what one call of evaluate() scores, to the last digit.
    from vaelab.metrics.evaluation import evaluate
    from vaelab.metrics.features import build_feature_extractor
    from vaelab.core.prepared import load_prepared
    from vaelab.model import networks
    from vaelab.model.elbo import elbo_terms
    from vaelab.model.outputs import load_vae
    from vaelab.model.samplers import load_samplers

    vae, data = load_vae(inputs["models"]), load_prepared(inputs["data"])
    draws = load_samplers(2, inputs["density"], inputs["two_stage"])
    latents = {name: draw(40, 7) for name, draw in draws.items()}
    whole = evaluate(
        samplers={name: (lambda start, count, z=z: networks.decode_uint8(vae, z[start:start + count], 32))
                  for name, z in latents.items()},
        num_samples=40, reconstruct_batch=lambda images: networks.reconstruct_uint8(vae, images, 32),
        test_images=data.x_test, elbo=lambda images: elbo_terms(vae, images, seed=7, beta=1.0, batch_size=32),
        encode_mean=lambda images: networks.encode_mean(vae, images, 32), reference=ref,
        extractor=build_feature_extractor("random", 75, 7), batch_size=20, seed=7, progress=False)
    assert whole.metrics == metrics and whole.provenance == provenance

    # Reproducible: the same params and seed give the same part, to the last digit.
    again = tmp_path / "again.json"
    score_stage.main(score_args("prior", again))
    assert again.read_text() == (parts / "prior.json").read_text()

    # Reference statistics made with other FID settings: one clear error before any work, nothing written.
    again.unlink()
    bad = [*score_args("prior", again)[:-4], "--params", str(write_params(datasets=TINY, fid={"image_size": 80})),
           "--sampler", "prior", "--out", str(again)]
    with pytest.raises(VaelabError) as error:
        score_stage.main(bad)
    assert str(error.value) == (
        f"reference statistics {reference} were computed with other FID settings (fid_preprocessing: "
        f"'tf2-resize-bilinear-75 (half_pixel_centers=True), x/127.5-1' there, "
        f"'tf2-resize-bilinear-80 (half_pixel_centers=True), x/127.5-1' now; fid_image_size: 75 there, 80 now); "
        f"re-run `dvc repro reference_stats@<dataset>` (or restore the fid params they were made with)")
    assert not again.exists()


def test_reference_stats_stage_missing_data_is_one_clear_error(tmp_path, write_params):
    from stages import reference_stats as reference_stage

    with pytest.raises(VaelabError) as error:
        reference_stage.main(["--dataset", "mnist", "--data", str(tmp_path / "absent.npz"),
                              "--out", str(tmp_path / "ref.npz"), "--params", str(write_params())])
    assert str(error.value) == (f"prepared data {tmp_path / 'absent.npz'} not found; run "
                                f"`dvc repro preprocess@<dataset>` first")
    assert not (tmp_path / "ref.npz").exists()


@pytest.mark.slow
def test_tensorflow_start_up_lines_show_only_with_the_switch():
    code = "from vaelab.core.cli import setup_logging, start_tensorflow; setup_logging(); start_tensorflow()"

    def start(**env: str) -> list[str]:
        clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "VAELAB_TF_LOGS")}
        result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        return [line for line in result.stderr.splitlines() if line.strip()]

    quiet = start()
    assert len(quiet) == 1 and quiet[0].startswith("info: TensorFlow ")
    assert quiet[0].endswith("set VAELAB_TF_LOGS=1 to see its own start-up messages")
    loud = start(VAELAB_TF_LOGS="1")
    assert loud[-1] == quiet[0] and len(loud) > 1  # TensorFlow's own lines come first


def test_reconstruction_fid_scores_as_many_test_images_as_a_sampler(test_images, reference, extractor):
    # 40 samples per FID of 60 test images: the reconstructions are of the first 40, not all 60.
    dark = lambda x: (x // 4).astype(np.uint8)  # noqa: E731
    seen = []
    result = run_evaluate(test_images, reference, extractor,
                          generate_batch=lambda start, count: test_images[start:start + count],
                          reconstruct_batch=lambda x: seen.append(len(x)) or dark(x), num_samples=40)
    assert sum(seen) == 40 and result.provenance["fid_num_reconstructions"] == 40
    first = compute_reference(dark(test_images[:40]), extractor, 25, 0, progress=False)
    assert result.metrics["reconstruction"]["fid"] == pytest.approx(
        frechet_distance(first.mu, first.sigma, reference.mu, reference.sigma), rel=1e-9)


def test_join_scores_lists_parts_in_order_and_refuses_parts_of_another_network():
    """The evaluate stage's join: metrics in the parts' order, one provenance (the feature metadata,
    then the counts, then pr_k); parts made by another network do not join."""
    from vaelab.metrics.evaluation import join_scores, sampler_part, test_part

    meta = {"feature_network": "random", "fid_image_size": 75}
    parts = [sampler_part("prior", {"fid": 2.0}, 40, 50, meta), sampler_part("gmm", {"fid": 1.0}, 40, 50, meta),
             test_part({"fid": 3.0}, 30, 60, {"elbo": -1.0}, meta)]
    joined = join_scores(parts)
    assert list(joined.metrics) == ["prior", "gmm", "reconstruction", "test"]
    assert joined.metrics["gmm"] == {"fid": 1.0} and joined.metrics["test"] == {"elbo": -1.0}
    assert list(joined.provenance.items()) == [
        ("feature_network", "random"), ("fid_image_size", 75), ("fid_num_samples", 50),
        ("fid_num_reconstructions", 30), ("fid_num_reference", 60), ("pr_num_samples", 40), ("pr_k", 3)]
    other = sampler_part("two_stage", {"fid": 4.0}, 40, 50, {**meta, "feature_network": "inception2015"})
    with pytest.raises(ValueError, match="scores disagree on feature_network: 'random' and 'inception2015'"):
        join_scores([*parts, other])
