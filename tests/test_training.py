"""Training: learning, determinism, resume after interruption, the NaN guard, bad params and
the train stage's outputs. Tiny images (10x10) and tiny networks keep each fit to seconds."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT
from vaelab.core.prepared import PreparedData, save_prepared
from vaelab.core.errors import VaelabError
from vaelab.training.backup import fingerprint, read_backup
from vaelab.training.hardware import cpu_has_bfloat16, mixed_precision_policy
from vaelab.model.networks import ArchConfig, decode_uint8
from vaelab.model.outputs import HISTORY_COLUMNS, load_vae, read_history
from vaelab.training.loop import (TrainConfig, check_training_inputs, diverged_kl, run_training, train_config,
                                  train_dataset, train_vae)

SHAPE = (10, 10, 1)
# conv with dropout: exercises the decoder's crop (10 -> 5 -> 3 -> 12 -> 10) and the dropout
# layers' own random streams in the determinism and resume tests.
CONV = ArchConfig(SHAPE, latent_dim=2, hidden_dim=16, architecture="conv", filters=(4, 8), dropout=0.1)
TRAIN = TrainConfig(epochs=4, batch_size=32, learning_rate=3e-3, seed=11)


def learnable_images(n: int, seed: int) -> np.ndarray:
    """uint8 (n, 10, 10, 1): a bright square at one of four places, plus a little noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 30, (n, *SHAPE), dtype=np.uint8)
    for i, corner in enumerate(rng.integers(0, 4, n)):
        r, c = divmod(int(corner), 2)
        images[i, 5 * r: 5 * r + 5, 5 * c: 5 * c + 5] = 230
    return images


X_TRAIN, X_TEST = learnable_images(200, 0), learnable_images(40, 1)


def weights_of(result) -> list[np.ndarray]:
    return [np.asarray(v) for v in result.model.weights]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train_vae(X_TRAIN, X_TEST, CONV, TRAIN, tmp_path_factory.mktemp("b") / "backup", verbose=0)


def test_loss_falls_and_history_has_every_column(uninterrupted):
    history = uninterrupted.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert all(set(row) == set(HISTORY_COLUMNS) for row in history)
    assert history[-1]["loss"] < history[0]["loss"] - 5
    assert history[-1]["val_loss"] < history[0]["val_loss"] - 5
    for row in history:
        assert row["loss"] == pytest.approx(row["reconstruction"] + row["kl"], rel=1e-5)
    assert uninterrupted.progress.shape == (4, 16, *SHAPE) and uninterrupted.progress.dtype == np.uint8
    # The last progress frame is the final decoder on the fixed prior points.
    np.testing.assert_array_equal(uninterrupted.progress[-1],
                                  decode_uint8(uninterrupted.vae, uninterrupted.progress_latents))


def test_same_seed_gives_identical_history_and_weights(uninterrupted, tmp_path):
    again = train_vae(X_TRAIN, X_TEST, CONV, TRAIN, tmp_path / "backup", verbose=0)
    assert again.history == uninterrupted.history
    for a, b in zip(weights_of(again), weights_of(uninterrupted)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.progress, uninterrupted.progress)


def interrupted_backup(folder: Path, train: TrainConfig = TRAIN) -> Path:
    """A backup folder of a run of ``train`` interrupted after its backup of epoch 2."""
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # after the backup of epoch 2 was written
                raise KeyboardInterrupt("simulated interruption")

    with pytest.raises(KeyboardInterrupt):
        train_vae(X_TRAIN, X_TEST, CONV, train, folder, verbose=0, callbacks=[Interrupt()])
    assert json.loads((folder / "state.json").read_text())["epoch"] == 2
    return folder


def test_resume_after_interruption_equals_uninterrupted(uninterrupted, tmp_path):
    backup = interrupted_backup(tmp_path / "backup")
    out, history = tmp_path / "model", tmp_path / "history.csv"
    resumed = run_training(X_TRAIN, X_TEST, CONV, TRAIN, out, history, backup, verbose=0)
    assert resumed.resumed_from_epoch == 2
    assert resumed.history == uninterrupted.history
    for a, b in zip(weights_of(resumed), weights_of(uninterrupted)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.progress, uninterrupted.progress)
    # The stage's outputs: history CSV with every epoch, model folder, and no backup left.
    written = read_history(history)
    assert {column: list(values) for column, values in written.items()} == {
        column: [row[column] for row in uninterrupted.history] for column in HISTORY_COLUMNS}
    assert history.read_text().splitlines()[0] == ",".join(HISTORY_COLUMNS)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "decoder.keras", "encoder.keras", "progress.npy", "progress_latents.npy"]
    np.testing.assert_array_equal(np.load(out / "progress.npy"), uninterrupted.progress)
    assert not backup.exists()
    loaded = load_vae(out)
    np.testing.assert_array_equal(decode_uint8(loaded, resumed.progress_latents), uninterrupted.progress[-1])


@pytest.mark.parametrize("change", ["learning_rate", "data"])
def test_a_backup_made_under_other_settings_restarts_the_run(tmp_path, caplog, change):
    backup = interrupted_backup(tmp_path / "backup")  # made with TRAIN on X_TRAIN
    train, x_train = TRAIN, X_TRAIN
    if change == "learning_rate":
        train = dataclasses.replace(TRAIN, learning_rate=1e-3)
    else:
        x_train = X_TRAIN.copy()
        x_train[0, 0, 0, 0] ^= 1  # one pixel of one image
    assert fingerprint(x_train, X_TEST, CONV, train) != fingerprint(X_TRAIN, X_TEST, CONV, TRAIN)
    with caplog.at_level(logging.INFO, logger="vaelab"):
        resumed = train_vae(x_train, X_TEST, CONV, train, backup, verbose=0)
    assert resumed.resumed_from_epoch == 0
    assert f"ignoring the backup in {backup} (incomplete or made with other settings)" in caplog.text
    fresh = train_vae(x_train, X_TEST, CONV, train, tmp_path / "fresh", verbose=0)
    assert resumed.history == fresh.history
    assert read_backup(tmp_path / "nothing-here", "anything") is None


def test_gaussian_likelihood_trains_with_a_short_last_validation_batch(tmp_path):
    # 40 test images in batches of 32: the last validation batch (8) has a batch size unknown
    # at trace time; the Gaussian NLL must not depend on it.
    gaussian = dataclasses.replace(CONV, likelihood="gaussian", dropout=0.0)
    result = train_vae(X_TRAIN, X_TEST, gaussian, dataclasses.replace(TRAIN, epochs=1), tmp_path / "b", verbose=0)
    row = result.history[-1]
    assert np.isfinite(row["val_loss"]) and np.isfinite(row["loss"])
    from vaelab.model.elbo import elbo_terms

    # The same term computed outside the traced step (other noise draws): close, not equal.
    terms = elbo_terms(result.vae, X_TEST, seed=0, batch_size=32)
    assert terms["reconstruction"] == pytest.approx(row["val_reconstruction"], rel=0.05)


@pytest.mark.parametrize("architecture", ["mlp", "conv", "infogan"])
@pytest.mark.parametrize("likelihood, gamma", [("bernoulli", 0.1), ("gaussian", 0.1), ("gaussian", "learned")])
def test_every_architecture_and_likelihood_trains_saves_and_loads(tmp_path, architecture, likelihood, gamma):
    """The minimal config that touches every network and likelihood: two epochs of a few steps,
    a finite falling loss, and the saved model giving the trained model's outputs."""
    config = ArchConfig(SHAPE, latent_dim=2, hidden_dim=8, architecture=architecture, filters=(4, 8),
                        likelihood=likelihood, gamma=gamma)
    train = TrainConfig(epochs=2, batch_size=50, learning_rate=3e-3, seed=1)
    out = tmp_path / "model"
    result = run_training(X_TRAIN, X_TEST, config, train, out, tmp_path / "history.csv", tmp_path / "backup",
                          verbose=0)
    assert all(np.isfinite(row["loss"]) for row in result.history)
    loaded = load_vae(out)
    assert loaded.config == config
    z = result.progress_latents
    np.testing.assert_array_equal(decode_uint8(loaded, z), result.progress[-1])
    if gamma == "learned":
        # Dai & Wipf's gamma starts at 1 (log gamma 0) and falls as the reconstructions improve.
        assert loaded.learned_log_gamma == result.vae.learned_log_gamma < 0
        assert (out / "gamma.json").is_file()
    else:
        assert loaded.learned_log_gamma is None and not (out / "gamma.json").exists()


def bright_pictures_with_dark_outliers(n: int, size: int, seed: int) -> np.ndarray:
    """uint8 (n, size, size, 3): near-white pictures and one in 16 dark noise: in training mode
    batch norm blows the few outliers up to several standard deviations in every unit at once
    (as Caltech101's white-background photos did)."""
    rng = np.random.default_rng(seed)
    images = (240 - rng.integers(0, 30, (n, size, size, 3))).astype(np.uint8)
    outliers = rng.choice(n, max(1, n // 16), replace=False)
    images[outliers] = rng.integers(0, 80, (len(outliers), size, size, 3))
    return images


def test_infogan_keeps_its_kl_finite_on_colour_images_with_outliers(tmp_path):
    """The regression of the diverged Caltech101 run (docs/models.md): with a log-variance head
    this data gave a validation KL of ~5,400 nats after the first epoch (run to run it varied:
    exp() of batch norm's outliers); Dai & Wipf's softplus standard deviation gives 11 and 20."""
    images = bright_pictures_with_dark_outliers(64, 32, seed=0)
    config = ArchConfig((32, 32, 3), latent_dim=16, hidden_dim=8, architecture="infogan")
    train = TrainConfig(epochs=2, batch_size=16, learning_rate=1e-3, seed=1)
    result = train_vae(images, images[:16], config, train, tmp_path / "backup", verbose=0)
    for row in result.history:
        assert diverged_kl(row["val_kl"], config.image_shape, config.architecture) is None
        assert 0 < row["kl"] < 1000 and 0 < row["val_kl"] < 1000


def test_learned_gamma_enters_the_test_elbo(tmp_path):
    from vaelab.model.elbo import elbo_terms

    config = ArchConfig(SHAPE, latent_dim=2, hidden_dim=8, architecture="mlp", likelihood="gaussian", gamma="learned")
    result = train_vae(X_TRAIN, X_TEST, config, dataclasses.replace(TRAIN, epochs=2), tmp_path / "b", verbose=0)
    learned = elbo_terms(result.vae, X_TEST, seed=0)
    as_if_one = elbo_terms(dataclasses.replace(result.vae, learned_log_gamma=0.0), X_TEST, seed=0)
    assert learned["kl"] == as_if_one["kl"] and learned["reconstruction"] != as_if_one["reconstruction"]
    assert learned["reconstruction"] == pytest.approx(result.history[-1]["val_reconstruction"], rel=0.05)


def test_foreign_backup_folder_is_refused(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "thesis.tex").write_text("precious")
    with pytest.raises(VaelabError, match="holds other files"):
        train_vae(X_TRAIN, X_TEST, CONV, TRAIN, tmp_path / "backup", verbose=0)
    assert (tmp_path / "backup" / "thesis.tex").exists()


def test_nan_loss_stops_with_dataset_and_epoch_and_writes_nothing(tmp_path):
    import keras

    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                weights = self.model.decoder.get_layer("hidden").kernel
                weights.assign(np.full(weights.shape, np.nan, np.float32))

    mlp = ArchConfig(SHAPE, latent_dim=2, hidden_dim=8)
    out, history = tmp_path / "model", tmp_path / "history.csv"
    with pytest.raises(VaelabError, match=r"training diverged on dataset toy at epoch 2: loss is nan; lower learning_rate"):
        run_training(X_TRAIN, X_TEST, mlp, TrainConfig(epochs=3, batch_size=50, learning_rate=1e-3, seed=0),
                     out, history, tmp_path / "backup", dataset="toy", verbose=0, callbacks=[Poison()])
    assert not out.exists() and not history.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup"]  # no temporary leftovers


@pytest.mark.parametrize("train, n_train, match", [
    (TrainConfig(epochs=1, batch_size=201, learning_rate=1e-3, seed=0), 200, "batch_size = 201 is larger than the 200"),
    (TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, seed=0), 0, "0 training"),
])
def test_data_the_settings_cannot_train_on_is_refused(train, n_train, match):
    # The settings' own ranges are checked with params.yaml (tests/test_params.py).
    with pytest.raises(VaelabError, match=match):
        check_training_inputs(train, n_train, 10, "toy")


def test_pipeline_is_a_pure_function_of_seed_and_epoch():
    x = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1)
    whole = [b.numpy().ravel() for b in train_dataset(x, 8, seed=3, start_epoch=0, epochs=3)]
    tail = [b.numpy().ravel() for b in train_dataset(x, 8, seed=3, start_epoch=2, epochs=3)]
    assert len(whole) == 15 and len(tail) == 5
    for a, b in zip(whole[10:], tail):
        np.testing.assert_array_equal(a, b)
    epoch0 = np.sort(np.concatenate(whole[:5]) * 255)
    np.testing.assert_allclose(epoch0, np.arange(40), atol=1e-4)  # a permutation, scaled to [0, 1]
    assert not np.array_equal(np.concatenate(whole[:5]), np.concatenate(whole[5:10]))  # reshuffled


# ---------------------------------------------------------------------------------------------
# The stage CLI


TOY = {"toy": {"data": {"kind": "mnist"}, "model": {"architecture": "mlp"}}}


def _prepared(tmp_path: Path) -> Path:
    path = tmp_path / "toy.npz"
    save_prepared(PreparedData(X_TRAIN, np.zeros(200, np.int64), X_TEST, np.zeros(40, np.int64), ("a",)), path)
    return path


def _stage_args(tmp_path: Path, params: Path) -> list[str]:
    return ["--dataset", "toy", "--data", str(_prepared(tmp_path)), "--out", str(tmp_path / "models" / "toy"),
            "--history", str(tmp_path / "plots" / "toy" / "history.csv"), "--backup", str(tmp_path / "ckpt" / "toy"),
            "--params", str(params)]


def toy_params(write_params, **overrides) -> Path:
    return write_params(**{"seed": 3, "hidden_dim": 8, "batch_size": 50, "datasets": TOY, "conv": {"filters": [4, 8]},
                           **overrides})


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 500}, "batch_size = 500 is larger than the 200 training images of dataset toy; set batch_size "
                          "in params.yaml to at most 200"),
    ({"latent_dim": 0}, "params.yaml: latent_dim = 0 is invalid; allowed: an integer >= 1"),
    ({"datasets": {"toy": {"data": {"kind": "mnist"}, "model": {"architecture": "resnet"}}}},
     "params.yaml: datasets.toy.model.architecture = 'resnet' is invalid; allowed: mlp | conv | infogan"),
])
def test_stage_refuses_bad_params_before_any_work(tmp_path, write_params, overrides, message):
    from stages import train as stage

    with pytest.raises(VaelabError) as error:
        stage.main(_stage_args(tmp_path, toy_params(write_params, **overrides)))
    assert str(error.value) == message
    assert not (tmp_path / "models").exists() and not (tmp_path / "ckpt").exists()


def test_top_level_epochs_rule_every_dataset_and_null_leaves_each_its_own(write_params):
    """A top-level `epochs` number is every dataset's; `null` gives each its `datasets.<name>.model.epochs`."""
    from vaelab.core.params import read_params, shared_params
    from vaelab.params import load_params
    from vaelab.training.params import train_params

    own = {"toy": {"data": {"kind": "mnist"}, "model": {"architecture": "mlp", "epochs": 3}}}
    for top, expected in ((5, 5), (None, 3)):
        path = toy_params(write_params, epochs=top, datasets=own)
        raw = read_params(path)
        config = train_config(shared_params(raw), train_params(raw, "toy"))
        assert (config.epochs, config.batch_size, config.seed) == (expected, 50, 3)
        # The whole-file view (tests, benchmarks, scripts) reads the same epochs as the stage.
        assert load_params(path).dataset("toy").train.epochs == expected


@pytest.mark.slow
def test_stage_cli_writes_model_and_history(tmp_path, write_params):
    # The dataset's own 2 epochs under a null top level: the stage passes them on.
    own_epochs = {"toy": {"data": {"kind": "mnist"}, "model": {"architecture": "mlp", "epochs": 2}}}
    args = _stage_args(tmp_path, toy_params(write_params, epochs=None, datasets=own_epochs))
    result = subprocess.run([sys.executable, "-m", "stages.train", *args], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Epoch 2/2" in result.stdout  # Keras' per-epoch progress lines
    assert list(read_history(tmp_path / "plots" / "toy" / "history.csv")["epoch"]) == [1, 2]
    vae = load_vae(tmp_path / "models" / "toy")
    assert vae.config.image_shape == SHAPE and vae.config.architecture == "mlp"
    assert np.load(tmp_path / "models" / "toy" / "progress.npy").shape == (2, 16, *SHAPE)
    assert np.load(tmp_path / "models" / "toy" / "progress_latents.npy").shape == (16, 2)
    assert not (tmp_path / "ckpt" / "toy").exists()

    bad = subprocess.run([sys.executable, "-m", "stages.train",
                          *_stage_args(tmp_path, toy_params(write_params, batch_size=999))],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == ("error: batch_size = 999 is larger than the 200 training images of "
                                                   "dataset toy; set batch_size in params.yaml to at most 200")


@pytest.mark.slow
def test_train_stage_killed_mid_run_resumes_to_the_same_bytes(tmp_path, write_params):
    """kill -9 of the train stage after a backup, then the same command again: the history is
    byte-identical to an uninterrupted run's and so are the weights (infogan with the default
    learned-gamma Gaussian: batch norm's moving averages, Adam's moments, log gamma and the noise
    generator all come back from the backup)."""
    import os
    import signal
    import time

    model = {"architecture": "infogan", "likelihood": "gaussian", "gamma": "learned"}
    params = toy_params(write_params, epochs=40, datasets={"toy": {"data": {"kind": "mnist"}, "model": model}})
    runs = {}
    for name in ("uninterrupted", "killed"):
        folder = tmp_path / name
        folder.mkdir()
        args = [sys.executable, "-m", "stages.train", *_stage_args(folder, params)]
        if name == "killed":
            process = subprocess.Popen(args, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            state = folder / "ckpt" / "toy" / "state.json"
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and process.poll() is None:
                if state.is_file() and json.loads(state.read_text())["epoch"] >= 2:
                    os.kill(process.pid, signal.SIGKILL)
                    break
                time.sleep(0.01)
            assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
            assert not (folder / "models" / "toy").exists()
            backed_up = json.loads(state.read_text())["epoch"]  # the backup the run died after
        result = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        if name == "killed":
            assert f"resuming after epoch {backed_up}" in result.stderr, result.stderr[-3000:]
        else:
            assert "resuming after epoch" not in result.stderr
        runs[name] = folder
    a, b = (runs[name] / "plots" / "toy" / "history.csv" for name in ("uninterrupted", "killed"))
    assert a.read_bytes() == b.read_bytes()
    for saved in ("progress.npy", "progress_latents.npy", "gamma.json", "config.json"):
        assert (runs["uninterrupted"] / "models" / "toy" / saved).read_bytes() == \
            (runs["killed"] / "models" / "toy" / saved).read_bytes(), saved
    first, second = (load_vae(runs[name] / "models" / "toy") for name in ("uninterrupted", "killed"))
    assert first.learned_log_gamma is not None and first.learned_log_gamma == second.learned_log_gamma
    for net in ("encoder", "decoder"):
        ours, theirs = getattr(first, net).get_weights(), getattr(second, net).get_weights()
        assert len(ours) == len(theirs)
        for x, y in zip(ours, theirs):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("on_gpu", [False, True], ids=["cpu-bfloat16", "gpu-float16"])
def test_mixed_precision_trains_and_saves_float32_models(tmp_path, monkeypatch, caplog, on_gpu):
    import keras

    import vaelab.training.hardware

    # Both policies run here whatever the machine has: the GPU's float16 with loss scaling
    # (emulated on a CPU, slow but fine for 10x10 images) and the CPU's bfloat16, on a CPU
    # without bfloat16 hardware as CI's AVX2 machines are: training runs, with a warning.
    monkeypatch.setattr(vaelab.training.hardware, "gpu_available", lambda: on_gpu)
    monkeypatch.setattr(vaelab.training.hardware, "cpu_has_bfloat16", lambda: False)
    mlp = ArchConfig(SHAPE, latent_dim=2, hidden_dim=16)
    train = TrainConfig(epochs=2, batch_size=50, learning_rate=3e-3, seed=3, mixed_precision=True)
    out = tmp_path / "model"
    with caplog.at_level(logging.INFO, logger="vaelab"):
        result = run_training(X_TRAIN, X_TEST, mlp, train, out, tmp_path / "history.csv", tmp_path / "backup",
                              verbose=0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ([] if on_gpu else [
        "train dataset: mixed_precision on this CPU means bfloat16 without hardware support (no AMX or AVX512-BF16), "
        "which runs slower than float32 (docs/gpu.md); set mixed_precision: false in params.yaml"])
    assert all(np.isfinite(row["loss"]) for row in result.history)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    loaded = load_vae(out)
    images = decode_uint8(loaded, result.progress_latents)
    assert images.dtype == np.uint8 and images.shape == (16, *SHAPE)
    compute = "float16" if on_gpu else "bfloat16"
    assert loaded.decoder.get_layer("hidden").compute_dtype == compute
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer) == on_gpu
    assert loaded.decoder.outputs[0].dtype == "float32"  # the output layer stays float32


def test_mixed_precision_policy_is_float16_on_gpus_and_bfloat16_on_cpus(monkeypatch):
    from vaelab.training import hardware

    assert mixed_precision_policy(False) is None
    assert mixed_precision_policy(True, on_gpu=True) == "mixed_float16"
    assert mixed_precision_policy(True, on_gpu=False) == "mixed_bfloat16"
    for gpu, policy in ((True, "mixed_float16"), (False, "mixed_bfloat16")):  # asked of TensorFlow when not given
        monkeypatch.setattr(hardware, "gpu_available", lambda gpu=gpu: gpu)
        assert mixed_precision_policy(True) == policy


def test_cpu_has_bfloat16_reads_the_amx_and_avx512_bf16_flags(tmp_path):
    def cpuinfo(flags: str) -> Path:
        path = tmp_path / f"cpuinfo-{len(list(tmp_path.iterdir()))}"
        path.write_text(f"processor\t: 0\nmodel name\t: test cpu avx512_bf16\nflags\t\t: {flags}\n\n"
                        f"processor\t: 1\nflags\t\t: {flags}\n")
        return path

    assert cpu_has_bfloat16(cpuinfo("fpu sse2 fma avx avx2")) is False  # an AVX2 EPYC; the model name does not count
    assert cpu_has_bfloat16(cpuinfo("avx2 avx512f avx512_bf16 avx512_vnni")) is True
    assert cpu_has_bfloat16(cpuinfo("avx2 avx512f amx_bf16 amx_tile amx_int8")) is True
    assert cpu_has_bfloat16(cpuinfo("avx2 avx512f avx512_bf16x")) is False  # whole flags only
    assert cpu_has_bfloat16(tmp_path / "no-such-file") is None


MIRRORED_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.test_training import CONV, TRAIN, X_TEST, X_TRAIN
from vaelab.training.loop import train_vae
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
result = train_vae(X_TRAIN, X_TEST, CONV, TRAIN, sys.argv[1], verbose=0, strategy=strategy)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "history": result.history}))
"""


def test_mirrored_strategy_over_two_replicas_learns_like_one(uninterrupted, tmp_path):
    """The several-GPU path (MirroredStrategy), on two logical CPUs in a fresh process: the
    per-replica loss is divided by the number of replicas, so the run follows the one-device run.
    (Not bit-identical: each replica draws its own noise and gradients are summed in another order.)"""
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "backup")], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    mirrored, single = report["history"], uninterrupted.history
    assert [row["epoch"] for row in mirrored] == [1, 2, 3, 4]
    assert mirrored[-1]["loss"] < mirrored[0]["loss"] - 5
    for a, b in zip(mirrored, single):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=0.05)


def test_diverged_kl_flags_a_kl_above_what_an_8bit_image_holds():
    # 28*28*1 * ln 256 = 4347.41 nats; 64*64*3 * ln 256 = 68139.1 nats
    assert diverged_kl(25.6, (28, 28, 1), "infogan") is None
    assert diverged_kl(4347.0, (28, 28, 1), "infogan") is None
    assert diverged_kl(49.3, (64, 64, 3), "conv") is None
    message = diverged_kl(5.254589e6, (64, 64, 3), "infogan")  # the diverged Caltech101 run (docs/models.md)
    assert message == ("the validation KL is 5.255e+06 nats per image, more than the 68139 nats an 8-bit 64x64x3 "
                       "image holds: training diverged (architecture infogan); try architecture conv or a lower "
                       "learning_rate in params.yaml")
    assert "diverged" in diverged_kl(4348.0, (28, 28, 1), "mlp")
    assert "diverged" in diverged_kl(float("nan"), (28, 28, 1), "mlp")
    assert "diverged" in diverged_kl(float("inf"), (28, 28, 1), "mlp")


def test_run_training_logs_the_divergence_warning_with_the_last_validation_kl(tmp_path, monkeypatch, caplog):
    """The wiring of :func:`diverged_kl`: called on the last epoch's val_kl, the image shape and the
    architecture, its message logged as a warning after the outputs are written."""
    import vaelab.training.loop as loop

    seen = []
    monkeypatch.setattr(loop, "diverged_kl", lambda *args: seen.append(args) or "the KL is far too big")
    config = ArchConfig(SHAPE, latent_dim=2, hidden_dim=8)
    with caplog.at_level(logging.INFO, logger="vaelab"):
        result = run_training(X_TRAIN, X_TEST, config, dataclasses.replace(TRAIN, epochs=1), tmp_path / "model",
                              tmp_path / "history.csv", tmp_path / "backup", dataset="toy", verbose=0)
    assert seen == [(result.history[-1]["val_kl"], SHAPE, "mlp")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["train toy: the KL is far too big"]
    assert (tmp_path / "model" / "encoder.keras").is_file()
