"""The Two-Stage VAE sampler (Dai & Wipf 2019, "Diagnosing and enhancing VAE models", section 4).

A second VAE learns the distribution of the first one's latent codes, which the prior N(0, I)
matches only roughly (the "holes" of the aggregate posterior). It trains after the first stage,
on codes z = mu(x) + sigma(x) * eps of the training images, eps drawn afresh in every batch
from the trained encoder's posteriors. Both of its networks are ``depth`` dense ReLU layers of
``width`` units with their input concatenated to the last one (their code's ``second_depth`` 3,
``second_dim`` 1024), the encoder ending in the mean and log-variance of u, the decoder in the
mean of z with a learned scalar gamma_z (log gamma_z from 0, as for the first stage's learned
gamma). To sample: u ~ N(0, I), z ~ N(decoder(u), gamma_z^2 I), then the first decoder's mean.

Saved as ``models/<dataset>.two_stage/``: ``decoder.keras`` (a plain Keras model) and
``gamma.json``; sampling is seeded (numpy draws u and the noise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.core.io import atomic_path
from vaelab.core.schema import knob, parse_section, section

DEPTH = 3
DECODER_FILE = "decoder.keras"
GAMMA_FILE = "gamma.json"


@dataclass(frozen=True)
class TwoStageParams:
    epochs: int = knob(10, "int", "passes of the second stage over the training images' codes", low=1)
    width: int = knob(1024, "int", "units of each of the second stage's dense layers", low=1)
    learning_rate: float = knob(1e-3, "float", "Adam's step size for the second stage", low=0.0, low_inclusive=False)


def two_stage_params(raw: Mapping[str, Any]) -> TwoStageParams:
    return parse_section(TwoStageParams, section(raw, "two_stage"), "two_stage.")


@dataclass
class TwoStage:
    """A fitted second stage: ``decoder`` u (N, L) -> z mean (N, L), and log gamma_z."""

    decoder: Any
    log_gamma: float

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.input_shape[-1])


def _dense_stack(inputs: Any, width: int, name: str) -> Any:
    from keras import layers

    x = inputs
    for i in range(DEPTH):
        x = layers.Dense(width, activation="relu", name=f"{name}_fc{i}")(x)
    return layers.Concatenate(name=f"{name}_skip")([inputs, x])


def build_networks(latent_dim: int, width: int) -> tuple[Any, Any]:
    """(encoder: z -> [u mean, u log_var], decoder: u -> z mean), each (N, latent_dim)."""
    import keras
    from keras import layers

    z = keras.Input((latent_dim,), name="z")
    h = _dense_stack(z, width, "encoder")
    encoder = keras.Model(z, [layers.Dense(latent_dim, name="u_mean")(h), layers.Dense(latent_dim, name="u_log_var")(h)],
                          name="second_encoder")
    u = keras.Input((latent_dim,), name="u")
    decoder = keras.Model(u, layers.Dense(latent_dim, name="z_mean")(_dense_stack(u, width, "decoder")),
                          name="second_decoder")
    return encoder, decoder


def _second_vae(encoder: Any, decoder: Any, seed: int) -> Any:
    """The training model: posterior (mean, log_var) pairs of the first stage in, its loss out."""
    import keras
    from keras import ops

    from vaelab.model.determinism import gradients as ordered_gradients
    from vaelab.model.losses import gaussian_nll_per_image, kl_per_image

    class SecondStageVAE(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="two_stage")
            self.encoder, self.decoder = encoder, decoder
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.log_gamma = self.add_weight(shape=(), initializer="zeros", name="log_gamma_z")
            self.loss_tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.loss_tracker]

        def _loss(self, posterior, training):
            mean, log_var = posterior[:, 0], posterior[:, 1]
            z = mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.seed_generator)
            u_mean, u_log_var = self.encoder(z, training=training)
            u = u_mean + ops.exp(0.5 * u_log_var) * keras.random.normal(ops.shape(u_mean), seed=self.seed_generator)
            z_hat = self.decoder(u, training=training)
            nll = gaussian_nll_per_image(z[:, :, None, None], z_hat[:, :, None, None], log_gamma=self.log_gamma)
            return ops.mean(nll + kl_per_image(u_mean, u_log_var))

        def train_step(self, posterior):
            loss = self._loss(posterior, training=True)
            gradients = ordered_gradients(loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    return SecondStageVAE()


def fit_two_stage(means: np.ndarray, log_vars: np.ndarray, params: TwoStageParams, *, seed: int, batch_size: int,
                  verbose: int | str = 0) -> TwoStage:
    """Train the second stage on the first stage's posteriors of the training images (``means``,
    ``log_vars``: float32 (N, L)); deterministic for a ``seed``."""
    import keras

    from vaelab.model.determinism import make_reproducible

    means = np.asarray(means, np.float32)
    if means.ndim != 2 or means.shape != np.shape(log_vars) or len(means) < 2:
        raise VaelabError(f"encoder posteriors of shape {means.shape} and {np.shape(log_vars)} cannot train the "
                          f"two-stage sampler: it needs (N >= 2, latent_dim) means and log-variances")
    log_vars = np.asarray(log_vars, np.float32)
    broken = int(np.sum(~(np.isfinite(means).all(axis=1) & np.isfinite(log_vars).all(axis=1))))
    if broken:
        raise VaelabError(f"{broken} of {len(means)} encoder posteriors hold non-finite values: the first stage "
                          f"diverged (see train's warning line); re-run train before fit_two_stage")
    make_reproducible(seed)
    encoder, decoder = build_networks(means.shape[1], params.width)
    model = _second_vae(encoder, decoder, seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate))
    posterior = np.stack([means, log_vars], axis=1)  # (N, 2, L)
    batch = min(batch_size, len(posterior))
    # fit shuffles every epoch from the seed set above; eps is drawn afresh in every batch.
    history = model.fit(posterior, batch_size=batch, epochs=params.epochs, shuffle=True, verbose=verbose)
    if not np.all(np.isfinite(history.history["loss"])):
        # A diverged first stage (docs/models.md) shows up here first as huge codes: name their size
        # so the message does not send the user to the wrong stage's params.
        from vaelab.model.losses import kl_per_image

        kl = np.asarray(kl_per_image(means, log_vars), dtype=np.float64)
        raise VaelabError(f"the two-stage sampler's loss became {history.history['loss'][-1]} on first-stage codes "
                          f"of mean KL {np.mean(kl):.3g} nats per image (posterior sd up to "
                          f"{np.exp(np.max(log_vars) / 2):.3g}): if that is more than the image holds (train's "
                          f"warning line), re-train the first stage; else lower two_stage's learning_rate or width "
                          f"in params.yaml")
    return TwoStage(decoder=decoder, log_gamma=float(np.asarray(model.log_gamma)))


def sample_two_stage(two_stage: TwoStage, n: int, seed: int, batch_size: int = 1024) -> np.ndarray:
    """float32 (n, L): u ~ N(0, I), then z ~ N(decoder(u), gamma_z^2 I), both drawn by numpy from ``seed``."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, two_stage.latent_dim)).astype(np.float32)
    noise = rng.standard_normal((n, two_stage.latent_dim)).astype(np.float32)
    means = [np.asarray(two_stage.decoder(u[s:s + batch_size], training=False), np.float32)
             for s in range(0, n, batch_size)]
    z_mean = np.concatenate(means) if means else np.zeros((0, two_stage.latent_dim), np.float32)
    return (z_mean + np.float32(np.exp(two_stage.log_gamma)) * noise).astype(np.float32)


def save_two_stage(two_stage: TwoStage, folder: str | Path) -> None:
    """The folder (decoder.keras, gamma.json), written atomically."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        two_stage.decoder.save(tmp / DECODER_FILE)
        (tmp / GAMMA_FILE).write_text(json.dumps({"log_gamma_z": two_stage.log_gamma}) + "\n")


def load_two_stage(folder: str | Path) -> TwoStage:
    import keras

    folder = Path(folder)
    try:
        decoder = keras.models.load_model(folder / DECODER_FILE, compile=False)
        log_gamma = float(json.loads((folder / GAMMA_FILE).read_text())["log_gamma_z"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise VaelabError(f"two-stage sampler {folder} is missing or damaged ({error}); re-run "
                          f"`dvc repro fit_two_stage@<dataset>`") from None
    return TwoStage(decoder=decoder, log_gamma=log_gamma)
