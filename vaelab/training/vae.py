"""The Keras side of training: the VAE model and the callback that records every epoch.

:class:`VAE` follows Keras' VAE guide: encoder + reparameterised sample + decoder as one
``keras.Model`` with its own ``train_step``/``test_step`` and ``Mean`` trackers, the noise drawn
from a ``SeedGenerator``; the gradients are :func:`vaelab.model.determinism.gradients`, whose sums
run in a fixed order. Training's, beside the loop that drives it (it imports Keras when
imported); the networks it trains are :mod:`vaelab.model.networks`'.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from vaelab.core.errors import VaelabError
from vaelab.model.determinism import gradients as ordered_gradients
from vaelab.model.losses import GAUSSIAN_SIGMA, kl_per_image, reconstruction_nll_per_image
from vaelab.model.networks import ArchConfig, build_decoder, build_encoder, decoder_mean, to_uint8
from vaelab.model.outputs import EPOCH_METRICS, HISTORY_COLUMNS
from vaelab.training.hardware import mixed_precision_policy


class VAE(keras.Model):
    """Encoder + reparameterised sample + decoder, trained on the negative ELBO (Kingma &
    Welling 2014) with a beta-weighted KL (Higgins et al. 2017). Input: float32 images in
    [0, 1] (N, H, W, C). Metrics: loss, reconstruction, kl in nats per image.

    Follows the Keras VAE guide: custom train_step/test_step and Mean trackers. The noise
    eps ~ N(0, I) comes from a SeedGenerator whose state is one of the model's variables (not
    of its weights), which the backup saves too, so a restored run continues the same noise stream.
    """

    def __init__(self, encoder, decoder, likelihood: str, beta: float, seed: int, gamma: float | str = GAUSSIAN_SIGMA,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.gamma = gamma
        self.beta = float(beta)
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Dai & Wipf's learned gamma: one scalar, log gamma, from 0 (gamma = 1), trained with the
        # networks and saved with them (it is a weight of this model, so backups keep it too).
        self.log_gamma = (self.add_weight(shape=(), initializer="zeros", name="log_gamma")
                          if likelihood == "gaussian" and gamma == "learned" else None)
        _, reconstruction, kl = EPOCH_METRICS
        self.reconstruction_tracker = keras.metrics.Mean(name=reconstruction)
        self.kl_tracker = keras.metrics.Mean(name=kl)

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
        reconstruction = ops.mean(reconstruction_nll_per_image(self.likelihood, images, outputs, self.gamma,
                                                               self.log_gamma))
        kl = ops.mean(kl_per_image(mean, log_var))
        return reconstruction + self.beta * kl, reconstruction, kl

    def _track(self, loss, reconstruction, kl):
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        # The epoch's loss is derived from the two means rather than tracked separately:
        # mean(r + b*k) = mean(r) + b*mean(k), where a third float32 accumulator can round
        # 1 ulp differently between a resumed and an uninterrupted run.
        reconstruction, kl = self.reconstruction_tracker.result(), self.kl_tracker.result()
        return dict(zip(EPOCH_METRICS, (reconstruction + self.beta * kl, reconstruction, kl)))

    def train_step(self, images):
        loss, reconstruction, kl = self._terms(images, training=True)
        # Gradients are summed over replicas (MirroredStrategy): divide the per-replica
        # mean so the update is that of the global batch mean; then loss scaling
        # (a no-op unless mixed precision wraps Adam in a LossScaleOptimizer).
        scaled = self.optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)
        # Not a GradientTape: its sums of gradient terms run in a timing-dependent order.
        gradients = ordered_gradients(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self._track(loss, reconstruction, kl)

    def test_step(self, images):
        return self._track(*self._terms(images, training=False))


def build_vae(config: ArchConfig, train):
    """Build and compile the training model for ``train`` (a :class:`vaelab.training.loop.TrainConfig`);
    call inside the distribution strategy's scope."""
    dtype = mixed_precision_policy(train.mixed_precision)
    vae = VAE(build_encoder(config, dtype), build_decoder(config, dtype),
              likelihood=config.likelihood, beta=train.beta, seed=train.seed, gamma=config.gamma, name="vae")
    optimizer = keras.optimizers.Adam(learning_rate=train.learning_rate)
    if dtype == "mixed_float16":  # float16 gradients underflow without it; bfloat16 has float32's range
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    vae.compile(optimizer=optimizer, jit_compile=train.jit_compile)
    # Build the weights now (BackupAndRestore needs a built model to restore into).
    vae(np.zeros((1, *config.image_shape), np.float32))
    return vae


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
        # bit-identical between identical runs; without it the last epoch's val_loss can differ
        # in its last bit (docs/reproducibility.md).
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
