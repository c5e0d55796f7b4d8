"""Training a VAE: the Keras model with its own train/test steps, the tf.data input pipeline,
resumable backups, the NaN guard, and writing the train stage's outputs.

Reproducibility contract: the same data, :class:`~vaelab.models.ArchConfig`,
:class:`TrainConfig` and seed give the same history and weights on the same machine
(``keras.utils.set_random_seed`` + ``tf.config.experimental.enable_op_determinism``), and a
run interrupted after epoch k and resumed from its backup finishes with exactly the weights
and history of an uninterrupted run. That holds because everything random is either restored
from the backup (weights, Adam moments, the reparameterisation noise generator's state) or a
pure function of (seed, epoch): the order of the training images in epoch e is
``stateless_shuffle(range(N), seed=(seed, e))``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vaelab.errors import VaelabError
from vaelab.io import atomic_path
from vaelab.models import (PROGRESS_FILE, PROGRESS_LATENTS_FILE, ArchConfig, Vae, build_decoder,
                           build_encoder, decoder_mean, sample_prior, save_vae, to_uint8)

HISTORY_COLUMNS = ("epoch", "loss", "reconstruction", "kl", "val_loss", "val_reconstruction", "val_kl")
NUM_PROGRESS_IMAGES = 16
_STATE_FILE = "state.json"


@dataclass(frozen=True)
class TrainConfig:
    """How to train (Adam, one seed for everything random).

    jit_compile: compile the train/test steps with XLA. Off: on CPUs it measured 0.7x (mlp)
    and 0.55x (conv) the speed of TensorFlow's oneDNN kernels on a Xeon, and no faster on an
    AVX2 EPYC (benchmarks/bench_train.py); Keras' default ("auto") turns XLA off under op
    determinism, which reproducibility needs. mixed_precision: 16-bit compute with float32
    weights and outputs, see :func:`mixed_precision_policy`.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    beta: float = 1.0
    jit_compile: bool = False
    mixed_precision: bool = False


def train_config(params: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a :class:`vaelab.params.Params`."""
    return TrainConfig(
        epochs=params.epochs, batch_size=params.batch_size, learning_rate=params.learning_rate,
        seed=params.seed, beta=params.beta,
        mixed_precision=params.mixed_precision,
    )


def check_training_inputs(train: TrainConfig, num_train: int, num_test: int, dataset: str) -> None:
    """Fail before any work when the data cannot be trained on with these settings."""
    if num_train < 1 or num_test < 1:
        raise VaelabError(
            f"dataset {dataset} has {num_train} training and {num_test} test images; both splits need "
            f"at least one image (re-run the preprocess stage, or lower test_fraction)"
        )
    if train.batch_size > num_train:
        raise VaelabError(
            f"batch_size = {train.batch_size} is larger than the {num_train} training images of dataset "
            f"{dataset}; set batch_size in params.yaml to at most {num_train}"
        )
    for key in ("epochs", "batch_size"):
        if getattr(train, key) < 1:
            raise VaelabError(f"{key} = {getattr(train, key)} is invalid; set it to an integer >= 1 in params.yaml")
    if not train.learning_rate > 0 or not math.isfinite(train.learning_rate):
        raise VaelabError(f"learning_rate = {train.learning_rate} is invalid; set it to a number > 0 in params.yaml")


# --------------------------------------------------------------------------------------------
# Input pipeline


def train_dataset(x_uint8: np.ndarray, batch_size: int, seed: int, start_epoch: int, epochs: int):
    """Batches of float32 images in [0, 1], (batch_size, H, W, C), for epochs start_epoch..epochs-1.

    Each epoch is a fresh permutation ``stateless_shuffle(range(N), seed=(seed, epoch))`` cut
    into N // batch_size full batches (the remainder, different images each epoch, is
    dropped so every step has one static shape for XLA). The uint8 images are gathered and
    scaled inside the pipeline, so the float copy of the dataset never exists in memory.
    """
    import tensorflow as tf

    n = len(x_uint8)
    steps = n // batch_size
    images = tf.constant(x_uint8)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.reshape(order[: steps * batch_size], (steps, batch_size)))

    return (tf.data.Dataset.range(start_epoch, epochs)
            .flat_map(epoch_batches)
            .map(lambda idx: tf.cast(tf.gather(images, idx), tf.float32) / 255.0,
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def eval_dataset(x_uint8: np.ndarray, batch_size: int):
    """All of ``x_uint8`` in order, as float32 [0, 1] batches (the last one may be smaller)."""
    import tensorflow as tf

    images = tf.constant(x_uint8)
    return (tf.data.Dataset.range(len(x_uint8)).batch(batch_size)
            .map(lambda idx: tf.cast(tf.gather(images, idx), tf.float32) / 255.0,
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


# --------------------------------------------------------------------------------------------
# The model


def _vae_class():
    """The VAE keras.Model class (defined lazily so importing this module does not import Keras)."""
    import keras
    import tensorflow as tf
    from keras import ops

    from vaelab.losses import kl_per_image, reconstruction_nll_per_image

    class VAE(keras.Model):
        """Encoder + reparameterised sample + decoder, trained on the negative ELBO (Kingma &
        Welling 2014) with a beta-weighted KL (Higgins et al. 2017). Input: float32 images in
        [0, 1] (N, H, W, C). Metrics: loss, reconstruction, kl in nats per image.

        Follows the Keras VAE guide: custom train_step/test_step and Mean trackers. The noise
        eps ~ N(0, I) comes from a SeedGenerator whose state is part of the model's weights,
        so a restored backup continues the same noise stream.
        """

        def __init__(self, encoder, decoder, likelihood: str, beta: float, seed: int, **kwargs):
            super().__init__(**kwargs)
            self.encoder = encoder
            self.decoder = decoder
            self.likelihood = likelihood
            self.beta = float(beta)
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
            self.kl_tracker = keras.metrics.Mean(name="kl")

        @property
        def metrics(self):
            return [self.reconstruction_tracker, self.kl_tracker]

        def call(self, images, training=False):
            mean, log_var = self.encoder(images, training=training)
            eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
            z = mean + ops.exp(0.5 * log_var) * eps
            return self.decoder(z, training=training), mean, log_var

        def _terms(self, images, training):
            outputs, mean, log_var = self(images, training=training)
            reconstruction = ops.mean(reconstruction_nll_per_image(self.likelihood, images, outputs))
            kl = ops.mean(kl_per_image(mean, log_var))
            return reconstruction + self.beta * kl, reconstruction, kl

        def _track(self, loss, reconstruction, kl):
            self.reconstruction_tracker.update_state(reconstruction)
            self.kl_tracker.update_state(kl)
            # The epoch's loss is derived from the two means rather than tracked separately:
            # mean(r + b*k) = mean(r) + b*mean(k), and a third float32 accumulator was seen to
            # round 1 ulp differently between a resumed and an uninterrupted run on CI.
            reconstruction, kl = self.reconstruction_tracker.result(), self.kl_tracker.result()
            return {"loss": reconstruction + self.beta * kl, "reconstruction": reconstruction, "kl": kl}

        def train_step(self, images):
            with tf.GradientTape() as tape:
                loss, reconstruction, kl = self._terms(images, training=True)
                # Gradients are summed over replicas (MirroredStrategy): divide the per-replica
                # mean so the update is that of the global batch mean; then loss scaling
                # (a no-op unless mixed precision wraps Adam in a LossScaleOptimizer).
                scaled = self.optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)
            gradients = tape.gradient(scaled, self.trainable_weights)
            self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
            return self._track(loss, reconstruction, kl)

        def test_step(self, images):
            return self._track(*self._terms(images, training=False))

    return VAE


def mixed_precision_policy(train: TrainConfig, on_gpu: bool | None = None) -> str | None:
    """The Keras dtype policy of the hidden layers: None (float32) unless ``train.mixed_precision``;
    then "mixed_float16" on a GPU (tensor cores; Adam gets loss scaling) and "mixed_bfloat16"
    on a CPU, the one 16-bit type CPUs have hardware for (AMX, AVX512-BF16). Measured on 2
    cores: a Xeon with AMX ran 1.44x the float32 speed for the CIFAR-10 conv VAE and 1.1x for
    the MNIST mlp; an AVX2-only EPYC, which emulates it, 0.5x (mlp) and 0.1x (conv), so
    :func:`train_vae` warns on such CPUs. ``on_gpu``: default, whether TensorFlow sees a GPU."""
    if not train.mixed_precision:
        return None
    if on_gpu is None:
        import tensorflow as tf

        on_gpu = bool(tf.config.list_logical_devices("GPU"))
    return "mixed_float16" if on_gpu else "mixed_bfloat16"


def cpu_has_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU computes bfloat16 in hardware (the ``amx_bf16`` or ``avx512_bf16`` flag
    of Linux's ``cpuinfo``); None where that file cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = set(re.findall(r"\w+", "\n".join(line for line in text.splitlines() if line.startswith("flags"))))
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def bfloat16_is_emulated(train: TrainConfig) -> bool:
    """Whether ``train`` runs in bfloat16 on a CPU known to lack bfloat16 hardware (measured
    2x (mlp) to 10x (conv) slower than float32 there)."""
    return mixed_precision_policy(train) == "mixed_bfloat16" and cpu_has_bfloat16() is False


def build_vae(config: ArchConfig, train: TrainConfig):
    """Build and compile the training model (call inside the distribution strategy's scope)."""
    import keras

    dtype = mixed_precision_policy(train)
    vae = _vae_class()(build_encoder(config, dtype), build_decoder(config, dtype),
                       likelihood=config.likelihood, beta=train.beta, seed=train.seed, name="vae")
    optimizer = keras.optimizers.Adam(learning_rate=train.learning_rate)
    if dtype == "mixed_float16":  # float16 gradients underflow without it; bfloat16 has float32's range
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    vae.compile(optimizer=optimizer, jit_compile=train.jit_compile)
    # Build the weights now (BackupAndRestore needs a built model to restore into).
    vae(np.zeros((1, *config.image_shape), np.float32))
    return vae


def distribution_strategy():
    """MirroredStrategy over all GPUs when there are several, else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


# --------------------------------------------------------------------------------------------
# Callbacks: per-epoch record (history, progress frames, NaN guard) and the resumable backup


def _callback_classes():
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        """After every epoch: stop on a NaN/inf loss (VaelabError naming dataset and epoch), else
        append the history row and decode the fixed prior latents into progress frames."""

        def __init__(self, dataset: str, latents: np.ndarray, likelihood: str,
                     rows: list[dict[str, float]], frames: list[np.ndarray]):
            super().__init__()
            self.dataset, self.latents, self.likelihood = dataset, latents, likelihood
            self.rows, self.frames = rows, frames

        def on_test_batch_end(self, batch, logs=None):
            # Reading the validation logs after every batch (a host sync) keeps val_loss
            # bit-identical between identical runs; without it, the last epoch's val_loss was
            # seen to differ in its last bit in about one run in four (TF 2.21, CPU).
            for value in (logs or {}).values():
                np.asarray(value)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            for key in HISTORY_COLUMNS[1:]:
                value = float(logs.get(key, float("nan")))
                if not math.isfinite(value):
                    raise VaelabError(
                        f"training diverged on dataset {self.dataset} at epoch {epoch + 1}: {key} is {value}; "
                        f"lower learning_rate in params.yaml (or check the data); no model was written"
                    )
            self.rows.append({"epoch": epoch + 1, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:]}})
            outputs = self.model.decoder(self.latents, training=False)
            self.frames.append(to_uint8(decoder_mean(self.likelihood, outputs)))

    class ResumableBackup(keras.callbacks.BackupAndRestore):
        """BackupAndRestore that also keeps the history rows and progress frames, writes each
        file atomically (a crash mid-save leaves the previous complete backup) and refuses a
        backup made with other settings (``fingerprint``)."""

        def __init__(self, backup_dir: Path, fingerprint: str, recorder: EpochRecorder):
            super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=False)
            self.fingerprint, self.recorder = fingerprint, recorder

        def _save_model(self):
            folder = Path(self.backup_dir)
            folder.mkdir(parents=True, exist_ok=True)
            epoch = self._current_epoch
            weights = f"epoch-{epoch:05d}.weights.h5"
            extras = f"epoch-{epoch:05d}.npz"
            self.model.save_weights(folder / weights, overwrite=True)
            with open(folder / f".{extras}", "wb") as handle:
                np.savez(handle, rows=np.array([[r[k] for k in HISTORY_COLUMNS] for r in self.recorder.rows]),
                         frames=np.stack(self.recorder.frames),
                         seed_states=np.array([np.asarray(g.state) for g in _seed_generators(self.model)]))
            os.replace(folder / f".{extras}", folder / extras)
            state = {"epoch": epoch, "weights": weights, "extras": extras, "fingerprint": self.fingerprint}
            (folder / f".{_STATE_FILE}").write_text(json.dumps(state))
            os.replace(folder / f".{_STATE_FILE}", folder / _STATE_FILE)  # the commit point
            for old in folder.glob("epoch-*"):
                if old.name not in (weights, extras):
                    old.unlink()

        def _load_model(self):
            state = read_backup(Path(self.backup_dir), self.fingerprint)
            if state is None:
                return
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(Path(self.backup_dir) / state["weights"])
            # Keras' weights files leave out the random generators' states (the VAE's noise,
            # dropout): restore them too, or the resumed run draws other numbers.
            generators = _seed_generators(self.model)
            if len(generators) != len(state["seed_states"]):
                raise RuntimeError("backup and model disagree on the number of random generators")
            for generator, value in zip(generators, state["seed_states"]):
                generator.state.assign(value)
            self.model._initial_epoch = state["epoch"]

    return EpochRecorder, ResumableBackup


def _seed_generators(model) -> list[Any]:
    """Every keras.random.SeedGenerator of ``model``'s layers, in a fixed order."""
    import keras

    found = []
    for layer in model._flatten_layers(include_self=True):
        for name in sorted(vars(layer)):
            value = vars(layer)[name]
            if isinstance(value, keras.random.SeedGenerator) and not any(value is g for g in found):
                found.append(value)
    return found


def fingerprint(x_train: np.ndarray, x_test: np.ndarray, config: ArchConfig, train: TrainConfig) -> str:
    """A digest of everything that determines the training run; a backup resumes only a run with the same one."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(config.to_json().encode())
    digest.update(json.dumps(asdict(train), sort_keys=True).encode())
    # The same params train in float16 on a GPU and bfloat16 on a CPU: not the same run.
    digest.update(str(mixed_precision_policy(train)).encode())
    for array in (x_train, x_test):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _check_backup_dir(backup_dir: Path) -> None:
    """Refuse a backup folder holding anything but our files: it gets deleted after the run."""
    if backup_dir.exists():
        foreign = [p.name for p in backup_dir.iterdir()
                   if not re.fullmatch(r"\.?(state\.json|epoch-\d+\.(weights\.h5|npz))", p.name)]
        if foreign or not backup_dir.is_dir():
            raise VaelabError(
                f"backup folder {backup_dir} holds other files ({', '.join(sorted(foreign)[:3]) or 'not a folder'}); "
                f"it is deleted after training, so point --backup at a folder of its own"
            )


def read_backup(backup_dir: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The backup's state (epoch, file names, rows, frames), or None when there is no usable one."""
    try:
        state = json.loads((backup_dir / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if state.get("fingerprint") != expected_fingerprint:
        return None
    try:
        with np.load(backup_dir / state["extras"]) as extras:
            state["rows"] = [dict(zip(HISTORY_COLUMNS, map(float, row))) for row in extras["rows"]]
            state["frames"] = list(extras["frames"])
            state["seed_states"] = extras["seed_states"]
    except (OSError, KeyError, ValueError):
        return None
    if not (backup_dir / state["weights"]).is_file() or len(state["rows"]) != state["epoch"]:
        return None
    for row in state["rows"]:
        row["epoch"] = int(row["epoch"])
    return state


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainResult:
    """A finished run: the networks, the per-epoch history and the progress frames."""

    vae: Vae
    history: list[dict[str, float]]
    progress: np.ndarray  # uint8 (epochs, 16, H, W, C)
    progress_latents: np.ndarray  # float32 (16, latent_dim)
    resumed_from_epoch: int = 0
    model: Any = field(default=None, repr=False)  # the compiled training keras.Model


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_vae(x_train: np.ndarray, x_test: np.ndarray, config: ArchConfig, train: TrainConfig,
              backup_dir: str | Path, dataset: str = "dataset", verbose: int | str | None = None,
              callbacks: Sequence[Any] = (), strategy: Any = None) -> TrainResult:
    """Train a VAE on uint8 images ``x_train`` (N, H, W, C), validating on ``x_test`` every epoch.

    Backs up the state after every epoch into ``backup_dir`` and resumes from a backup made
    with the same settings. ``verbose``: Keras' fit verbosity (default: progress bar on a
    terminal, one line per epoch otherwise). ``callbacks``: extra Keras callbacks (tests).
    ``strategy``: a ``tf.distribute`` strategy (default: :func:`distribution_strategy`).
    Raises VaelabError for unusable settings (before any work) and for a NaN/inf loss.
    """
    check_training_inputs(train, len(x_train), len(x_test), dataset)
    if tuple(x_train.shape[1:]) != config.image_shape:
        raise VaelabError(f"images of shape {x_train.shape[1:]} do not match the model's {config.image_shape}")
    import keras
    import tensorflow as tf

    backup_dir = Path(backup_dir)
    run_fingerprint = fingerprint(x_train, x_test, config, train)
    _check_backup_dir(backup_dir)
    state = read_backup(backup_dir, run_fingerprint)
    if state is None and backup_dir.exists():
        _log(f"train {dataset}: ignoring the backup in {backup_dir} (incomplete or made with other settings)")
        shutil.rmtree(backup_dir)
    start_epoch = state["epoch"] if state else 0
    if state:
        _log(f"train {dataset}: resuming after epoch {start_epoch} from the backup in {backup_dir}")

    keras.utils.set_random_seed(train.seed)
    tf.config.experimental.enable_op_determinism()
    latents = sample_prior(config.latent_dim, NUM_PROGRESS_IMAGES, train.seed)
    rows: list[dict[str, float]] = list(state["rows"]) if state else []
    frames: list[np.ndarray] = list(state["frames"]) if state else []

    if bfloat16_is_emulated(train):
        _log(f"train {dataset}: warning: mixed_precision on this CPU means bfloat16 without hardware support "
             f"(no AMX or AVX512-BF16), measured 2x (mlp) to 10x (conv) slower than float32; "
             f"set mixed_precision: false in params.yaml")
    strategy = strategy or distribution_strategy()
    with strategy.scope():
        model = build_vae(config, train)
    EpochRecorder, ResumableBackup = _callback_classes()
    recorder = EpochRecorder(dataset, latents, config.likelihood, rows, frames)
    backup = ResumableBackup(backup_dir, run_fingerprint, recorder)

    if start_epoch < train.epochs:
        if verbose is None:
            verbose = 1 if sys.stderr.isatty() else 2
        model.fit(
            train_dataset(x_train, train.batch_size, train.seed, start_epoch, train.epochs),
            steps_per_epoch=len(x_train) // train.batch_size,
            epochs=train.epochs,
            validation_data=eval_dataset(x_test, train.batch_size),
            callbacks=[recorder, backup, *callbacks],
            shuffle=False,  # the pipeline shuffles, per epoch, from the seed
            verbose=verbose,
        )
    else:  # a backup of a finished run whose outputs were not written: just restore it
        backup.set_model(model)
        backup.on_train_begin()
    if len(rows) != train.epochs:
        raise RuntimeError(f"expected {train.epochs} epochs of history, got {len(rows)}")
    return TrainResult(
        vae=Vae(encoder=model.encoder, decoder=model.decoder, config=config),
        history=rows, progress=np.stack(frames), progress_latents=latents,
        resumed_from_epoch=start_epoch, model=model,
    )


# --------------------------------------------------------------------------------------------
# Outputs


def write_history_csv(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """The per-epoch history as CSV (columns :data:`HISTORY_COLUMNS`, epoch 1-based), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HISTORY_COLUMNS)
            for row in rows:
                writer.writerow([int(row["epoch"])] + [repr(float(row[k])) for k in HISTORY_COLUMNS[1:]])


def write_outputs(result: TrainResult, out_dir: str | Path, history_csv: str | Path) -> None:
    """The model folder (encoder.keras, decoder.keras, config.json, progress.npy,
    progress_latents.npy) and the history CSV, each written atomically."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_vae(result.vae, tmp)
        np.save(tmp / PROGRESS_FILE, result.progress.astype(np.uint8))
        np.save(tmp / PROGRESS_LATENTS_FILE, result.progress_latents.astype(np.float32))
    write_history_csv(result.history, history_csv)


def run_training(x_train: np.ndarray, x_test: np.ndarray, config: ArchConfig, train: TrainConfig,
                 out_dir: str | Path, history_csv: str | Path, backup_dir: str | Path,
                 dataset: str = "dataset", verbose: int | str | None = None,
                 callbacks: Sequence[Any] = (), log: Callable[[str], None] = _log) -> TrainResult:
    """Train, write the outputs, then delete the backup (only once the outputs are in place)."""
    result = train_vae(x_train, x_test, config, train, backup_dir, dataset, verbose, callbacks)
    write_outputs(result, out_dir, history_csv)
    _check_backup_dir(Path(backup_dir))
    shutil.rmtree(backup_dir, ignore_errors=True)
    last = result.history[-1]
    log(f"train {dataset}: {train.epochs} epochs, val loss {last['val_loss']:.2f} nats/image "
        f"(reconstruction {last['val_reconstruction']:.2f}, KL {last['val_kl']:.2f}); wrote {out_dir} and {history_csv}")
    return result
