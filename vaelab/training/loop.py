"""Training a VAE: the settings, the tf.data input pipeline and the training run, which backs up
every epoch, resumes, stops on a NaN loss and writes the train stage's outputs.

The Keras model and the per-epoch recorder are in :mod:`vaelab.training.vae`, the backup in
:mod:`vaelab.training.backup`, the compute policy in :mod:`vaelab.training.hardware`, the outputs' format in
:mod:`vaelab.model.outputs`. This module imports none of Keras until a run starts.

Reproducibility contract: the same data, :class:`~vaelab.model.networks.ArchConfig`,
:class:`TrainConfig` and seed give the same history and weights on the same machine
(:func:`vaelab.model.determinism.make_reproducible`: the seeds, deterministic kernels, and sums of
gradient terms in a fixed order), and a
run interrupted after epoch k and resumed from its backup finishes with exactly the weights
and history of an uninterrupted run. That holds because everything random is either restored
from the backup (weights, Adam moments, the reparameterisation noise generator's state) or a
pure function of (seed, epoch): the order of the training images in epoch e is
``stateless_shuffle(range(N), seed=(seed, e))``.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.core.params import SharedParams
from vaelab.model.networks import ArchConfig, TrainedVae, sample_prior
from vaelab.model.outputs import write_history_csv, write_model_folder
from vaelab.training.params import TrainParams

NUM_PROGRESS_IMAGES = 16

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (Adam, one seed for everything random).

    jit_compile: compile the train/test steps with XLA. Off: on CPUs it ran slower than
    TensorFlow's oneDNN kernels (benchmarks/bench_train.py), and Keras' default ("auto") turns
    XLA off under op determinism, which reproducibility needs. mixed_precision: 16-bit compute with float32
    weights and outputs, see :func:`vaelab.training.hardware.mixed_precision_policy`.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    beta: float = 1.0
    jit_compile: bool = False
    mixed_precision: bool = False


def train_config(shared: SharedParams, train: TrainParams) -> TrainConfig:
    """The :class:`TrainConfig` of the checked params (:mod:`vaelab.core.params`, :mod:`vaelab.training.params`)."""
    return TrainConfig(
        epochs=train.epochs, batch_size=shared.batch_size, learning_rate=train.learning_rate,
        seed=shared.seed, beta=train.beta, mixed_precision=train.mixed_precision,
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
# Training


@dataclass
class TrainResult:
    """A finished run: the networks, the per-epoch history and the progress frames."""

    vae: TrainedVae
    history: list[dict[str, float]]
    progress: np.ndarray  # uint8 (epochs, 16, H, W, C)
    progress_latents: np.ndarray  # float32 (16, latent_dim)
    resumed_from_epoch: int = 0
    model: Any = field(default=None, repr=False)  # the compiled training keras.Model


def train_vae(x_train: np.ndarray, x_test: np.ndarray, config: ArchConfig, train: TrainConfig,
              backup_dir: str | Path, dataset: str = "dataset", verbose: int | str | None = None,
              callbacks: Sequence[Any] = (), strategy: Any = None) -> TrainResult:
    """Train a VAE on uint8 images ``x_train`` (N, H, W, C), validating on ``x_test`` every epoch.

    Backs up the state after every epoch into ``backup_dir`` and resumes from a backup made
    with the same settings. ``verbose``: Keras' fit verbosity (default: progress bar on a
    terminal, one line per epoch otherwise). ``callbacks``: extra Keras callbacks (tests).
    ``strategy``: a ``tf.distribute`` strategy (default: :func:`vaelab.training.hardware.distribution_strategy`).
    Raises VaelabError for unusable settings (before any work) and for a NaN/inf loss.
    """
    check_training_inputs(train, len(x_train), len(x_test), dataset)
    if tuple(x_train.shape[1:]) != config.image_shape:
        raise VaelabError(f"images of shape {x_train.shape[1:]} do not match the model's {config.image_shape}")
    from vaelab.model.determinism import make_reproducible
    from vaelab.training.backup import ResumableBackup, check_backup_dir, fingerprint, read_backup, restore_backup
    from vaelab.training.hardware import bfloat16_is_emulated, distribution_strategy
    from vaelab.training.vae import EpochRecorder, build_vae

    backup_dir = Path(backup_dir)
    run_fingerprint = fingerprint(x_train, x_test, config, train)
    check_backup_dir(backup_dir)
    state = read_backup(backup_dir, run_fingerprint)
    if state is None and backup_dir.exists():
        log.info("train %s: ignoring the backup in %s (incomplete or made with other settings)", dataset, backup_dir)
        shutil.rmtree(backup_dir)
    start_epoch = state["epoch"] if state else 0
    if state:
        log.info("train %s: resuming after epoch %d from the backup in %s", dataset, start_epoch, backup_dir)

    make_reproducible(train.seed)
    latents = sample_prior(config.latent_dim, NUM_PROGRESS_IMAGES, train.seed)
    rows: list[dict[str, float]] = list(state["rows"]) if state else []
    frames: list[np.ndarray] = list(state["frames"]) if state else []

    if bfloat16_is_emulated(train.mixed_precision):
        log.warning("train %s: mixed_precision on this CPU means bfloat16 without hardware support (no AMX or "
                    "AVX512-BF16), which runs slower than float32 (docs/gpu.md); set mixed_precision: false "
                    "in params.yaml", dataset)
    strategy = strategy or distribution_strategy()
    with strategy.scope():
        model = build_vae(config, train)
    recorder = EpochRecorder(dataset, latents, config.likelihood, rows, frames)
    backup = ResumableBackup(backup_dir, run_fingerprint, recorder)
    if state:
        restore_backup(model, backup_dir, state)

    if start_epoch < train.epochs:
        if verbose is None:
            verbose = 1 if sys.stderr.isatty() else 2
        model.fit(
            train_dataset(x_train, train.batch_size, train.seed, start_epoch, train.epochs),
            steps_per_epoch=len(x_train) // train.batch_size,
            epochs=train.epochs,
            initial_epoch=start_epoch,
            validation_data=eval_dataset(x_test, train.batch_size),
            callbacks=[recorder, backup, *callbacks],
            shuffle=False,  # the pipeline shuffles, per epoch, from the seed
            verbose=verbose,
        )
    if len(rows) != train.epochs:
        raise RuntimeError(f"expected {train.epochs} epochs of history, got {len(rows)}")
    return TrainResult(
        vae=TrainedVae(encoder=model.encoder, decoder=model.decoder, config=config,
                       learned_log_gamma=None if model.log_gamma is None else float(np.asarray(model.log_gamma))),
        history=rows, progress=np.stack(frames), progress_latents=latents,
        resumed_from_epoch=start_epoch, model=model,
    )


def run_training(x_train: np.ndarray, x_test: np.ndarray, config: ArchConfig, train: TrainConfig,
                 out_dir: str | Path, history_csv: str | Path, backup_dir: str | Path,
                 dataset: str = "dataset", verbose: int | str | None = None,
                 callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train, write the outputs, then delete the backup (only once the outputs are in place)."""
    from vaelab.training.backup import check_backup_dir

    result = train_vae(x_train, x_test, config, train, backup_dir, dataset, verbose, callbacks)
    write_model_folder(result.vae, result.progress, result.progress_latents, out_dir)
    write_history_csv(result.history, history_csv)
    check_backup_dir(Path(backup_dir))
    shutil.rmtree(backup_dir, ignore_errors=True)
    last = result.history[-1]
    log.info("train %s: %d epochs, val loss %.2f nats/image (reconstruction %.2f, KL %.2f); wrote %s and %s",
             dataset, train.epochs, last["val_loss"], last["val_reconstruction"], last["val_kl"], out_dir, history_csv)
    problem = diverged_kl(last["val_kl"], config.image_shape, config.architecture)
    if problem:
        log.warning("train %s: %s", dataset, problem)
    return result


def diverged_kl(val_kl: float, image_shape: Sequence[int], architecture: str) -> str | None:
    """Why a validation KL (nats per image) means training diverged, or None.

    The KL averaged over images is the mutual information I(x; z) plus a non-negative term, and
    I(x; z) <= H(x) <= prod(image_shape) * ln 256 nats for 8-bit images: a KL above that is a cost
    no code can repay, the mark of blown-up encoder variances (docs/models.md, infogan on colour
    images), as is a KL that is not finite.
    """
    bound = float(np.prod(image_shape)) * math.log(256)
    if math.isfinite(val_kl) and val_kl <= bound:
        return None
    return (f"the validation KL is {val_kl:.4g} nats per image, more than the {bound:.0f} nats an 8-bit "
            f"{'x'.join(map(str, image_shape))} image holds: training diverged (architecture {architecture}); "
            f"try architecture conv or a lower learning_rate in params.yaml")
