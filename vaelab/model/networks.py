"""VAE networks (Keras 3): the architecture description, the encoder/decoder builders, and the
public API the later stages use to load a trained model and run it.

The model of Kingma & Welling (2014), "Auto-Encoding Variational Bayes": a Gaussian encoder
q(z|x) = N(mean(x), diag(exp(log_var(x)))), a standard normal prior p(z) = N(0, I) and a
decoder p(x|z) that is Bernoulli (the decoder outputs logits) or Gaussian with a fixed
variance (the decoder outputs the mean; see :data:`vaelab.model.losses.GAUSSIAN_SIGMA`).

Encoder and decoder are two plain functional Keras models made only of built-in layers, so
``keras.models.load_model`` reads them back without custom objects:

* encoder: float32 images in [0, 1], (N, H, W, C) -> [mean (N, L), log_var (N, L)];
* decoder: z (N, L) -> (N, H, W, C) logits (bernoulli) or means (gaussian).

The reparameterised sample z = mean + exp(log_var / 2) * eps lives in the training model
(:class:`vaelab.model.vae.VAE`), not in the saved encoder.

TensorFlow/Keras are imported inside the functions that need them, so importing this module
(e.g. for :class:`ArchConfig` or :func:`sample_prior`) is cheap.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vaelab.core.errors import VaelabError

if TYPE_CHECKING:  # the train stage's params; the other stages load a saved ArchConfig
    from vaelab.model.params import ModelParams


@dataclass(frozen=True)
class ArchConfig:
    """The architecture of one VAE, described once; saved beside the model as ``config.json``.

    image_shape: (H, W, C) of the images; latent_dim: L; hidden_dim: width of the dense
    hidden layer (mlp: the one hidden layer; conv: the dense layer between the convolutions
    and the latent space); filters: channels of the stride-2 convolutions (conv only, one per
    halving of the image); dropout: rate after the dense hidden layers (conv only, 0 = none).
    """

    image_shape: tuple[int, int, int]
    latent_dim: int
    hidden_dim: int
    architecture: str = "mlp"
    filters: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.0
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        # Tuples even when built from JSON lists, so configs compare and hash by value.
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        # The settings were checked with params.yaml (vaelab.model.params); the shape comes
        # from the prepared file.
        if len(self.image_shape) != 3 or self.image_shape[2] not in (1, 3) or min(self.image_shape) < 1:
            raise VaelabError(f"image shape {self.image_shape} is not (H, W, 1|3); re-run the preprocess stage")

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        """conv: (h, w, filters[-1]) after the strided convolutions; 'same' padding rounds up."""
        h, w, _ = self.image_shape
        for _ in self.filters:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return h, w, self.filters[-1]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ArchConfig":
        raw = json.loads(text)
        return cls(**raw)


def arch_config(model: "ModelParams", image_shape: tuple[int, ...]) -> ArchConfig:
    """The :class:`ArchConfig` of ``model`` (:func:`vaelab.model.params.model_params`) for the
    prepared images' (H, W, C)."""
    architecture = model.choice.architecture
    return ArchConfig(
        image_shape=tuple(image_shape),
        latent_dim=model.latent_dim,
        hidden_dim=model.hidden_dim,
        architecture=architecture,
        filters=tuple(model.conv.filters),
        dropout=model.conv.dropout if architecture == "conv" else 0.0,
        likelihood=model.choice.likelihood,
    )


def build_encoder(config: ArchConfig, dtype: str | None = None):
    """Encoder network: (N, H, W, C) float in [0, 1] -> [mean (N, L), log_var (N, L)].

    ``dtype`` is a Keras dtype policy for the hidden layers (e.g. "mixed_float16"); the two
    outputs are always float32 so the loss is computed in full precision.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=config.image_shape, name="image")
    x = inputs
    if config.architecture == "mlp":
        x = layers.Flatten(name="flatten")(x)
    else:
        for i, f in enumerate(config.filters):
            x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", dtype=dtype, name=f"conv_{i}")(x)
        x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.hidden_dim, activation="relu", dtype=dtype, name="hidden")(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    mean = layers.Dense(config.latent_dim, dtype="float32", name="z_mean")(x)
    log_var = layers.Dense(config.latent_dim, dtype="float32", name="z_log_var")(x)
    return keras.Model(inputs, [mean, log_var], name="encoder")


def build_decoder(config: ArchConfig, dtype: str | None = None):
    """Decoder network: z (N, L) -> (N, H, W, C) Bernoulli logits or Gaussian means (float32).

    conv: the mirror of the encoder; the transposed convolutions double the bottleneck up to
    a multiple of 2^len(filters) and a Cropping2D trims it back to the exact input size
    (e.g. 92 -> 46 -> 23 -> 12 down, 12 -> 96 up, cropped to 92).
    """
    import keras
    from keras import layers

    height, width, channels = config.image_shape
    inputs = keras.Input(shape=(config.latent_dim,), name="z")
    x = layers.Dense(config.hidden_dim, activation="relu", dtype=dtype, name="hidden")(inputs)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    if config.architecture == "mlp":
        x = layers.Dense(height * width * channels, dtype="float32", name="pixels")(x)
        outputs = layers.Reshape(config.image_shape, name="image")(x)
    else:
        h, w, f_last = config.bottleneck_shape
        x = layers.Dense(h * w * f_last, activation="relu", dtype=dtype, name="unflatten_dense")(x)
        x = layers.Reshape((h, w, f_last), name="unflatten")(x)
        for i, f in enumerate(reversed(config.filters)):
            x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", dtype=dtype,
                                       name=f"deconv_{i}")(x)
        x = layers.Conv2DTranspose(channels, 3, padding="same", dtype="float32", name="pixels")(x)
        up_h, up_w = h * 2 ** len(config.filters), w * 2 ** len(config.filters)
        if (up_h, up_w) != (height, width):
            dh, dw = up_h - height, up_w - width
            x = layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)), name="crop")(x)
        outputs = x
    return keras.Model(inputs, outputs, name="decoder")


@dataclass
class TrainedVae:
    """A trained VAE: its two networks and their config (saved and loaded by
    :mod:`vaelab.model.outputs`)."""

    encoder: Any
    decoder: Any
    config: ArchConfig


def batch_slices(n: int, batch_size: int):
    """Consecutive slices of ``range(n)``, ``batch_size`` long (the last one shorter)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def images_to_float(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 in [0, 1]."""
    return np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)


def _check_images(vae: TrainedVae, images: np.ndarray) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != vae.config.image_shape:
        raise VaelabError(
            f"images of shape {tuple(images.shape)} do not fit the model, which takes (N, {', '.join(map(str, vae.config.image_shape))})"
        )


def encode(vae: TrainedVae, images_uint8: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, H, W, C) -> (mean, log_var), each float32 (N, latent_dim)."""
    images_uint8 = np.asarray(images_uint8)
    _check_images(vae, images_uint8)
    means, log_vars = [], []
    for part in batch_slices(len(images_uint8), batch_size):
        mean, log_var = vae.encoder(images_to_float(images_uint8[part]), training=False)
        means.append(np.asarray(mean, dtype=np.float32))
        log_vars.append(np.asarray(log_var, dtype=np.float32))
    if not means:
        empty = np.zeros((0, vae.config.latent_dim), np.float32)
        return empty, empty.copy()
    return np.concatenate(means), np.concatenate(log_vars)


def encode_mean(vae: TrainedVae, images_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, latent_dim): the encoder mean of each image."""
    return encode(vae, images_uint8, batch_size)[0]


def decoder_mean(likelihood: str, outputs: np.ndarray) -> np.ndarray:
    """Decoder outputs -> the mean of p(x|z) in [0, 1]: sigmoid of the logits (bernoulli) or
    the Gaussian mean clipped to the pixel range (gaussian)."""
    outputs = np.asarray(outputs, dtype=np.float32)
    if likelihood == "bernoulli":
        # Stable sigmoid: exp of a non-positive number only.
        e = np.exp(-np.abs(outputs))
        return np.where(outputs >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)
    return np.clip(outputs, 0.0, 1.0)


def to_uint8(images01: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8 0..255, rounded to nearest."""
    return np.clip(np.rint(np.asarray(images01) * 255.0), 0, 255).astype(np.uint8)


def decode_uint8(vae: TrainedVae, z: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """float (N, latent_dim) -> uint8 (N, H, W, C): the decoder mean as an image."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != vae.config.latent_dim:
        raise VaelabError(f"latent points of shape {z.shape} do not fit the model, which takes (N, {vae.config.latent_dim})")
    parts = [to_uint8(decoder_mean(vae.config.likelihood, vae.decoder(z[part], training=False)))
             for part in batch_slices(len(z), batch_size)]
    if not parts:
        return np.zeros((0, *vae.config.image_shape), np.uint8)
    return np.concatenate(parts)


def reconstruct_uint8(vae: TrainedVae, images_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """uint8 (N, H, W, C) -> uint8 (N, H, W, C): decoder mean at the encoder mean."""
    return decode_uint8(vae, encode_mean(vae, images_uint8, batch_size), batch_size)


def sample_prior(latent_dim: int, n: int, seed: int) -> np.ndarray:
    """float32 (n, latent_dim) drawn from N(0, I) with numpy's PCG64 seeded by ``seed``."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
