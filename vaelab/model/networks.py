"""VAE networks (Keras 3): the architecture description, the encoder/decoder builders, and the
public API the later stages use to load a trained model and run it.

The model of Kingma & Welling (2014), "Auto-Encoding Variational Bayes": a Gaussian encoder
q(z|x) = N(mean(x), diag(exp(log_var(x)))), a standard normal prior p(z) = N(0, I) and a
decoder p(x|z) that is Bernoulli (the decoder outputs logits) or Gaussian with standard
deviation gamma, fixed or learned (the decoder outputs the mean; see
:mod:`vaelab.model.losses`).

Encoder and decoder are two plain functional Keras models made of built-in layers and, in the
infogan encoder, one layer of this package (:mod:`vaelab.model.layers`), which
:func:`vaelab.model.outputs.load_vae` names to ``keras.models.load_model``:

* encoder: float32 images in [0, 1], (N, H, W, C) -> [mean (N, L), log_var (N, L)];
* decoder: z (N, L) -> (N, H, W, C) logits (bernoulli) or means (gaussian).

Three architectures: ``mlp`` (one dense hidden layer), ``conv`` (stride-2 convolutions, a dense
layer) and ``infogan``, the network of every VAE row of Dai & Wipf (2019), "Diagnosing and
enhancing VAE models", Table 1 (the InfoGAN net of Lucic et al. 2018), with batch norm: the
training model calls it with ``training=True`` (batch statistics), every later stage with
``training=False`` (the moving averages saved with the weights).

The reparameterised sample z = mean + exp(log_var / 2) * eps lives in the training model
(:class:`vaelab.training.vae.VAE`), not in the saved encoder.

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
from vaelab.model.losses import GAUSSIAN_SIGMA

if TYPE_CHECKING:  # the train stage's params; the other stages load a saved ArchConfig
    from vaelab.model.params import ModelParams


@dataclass(frozen=True)
class ArchConfig:
    """The architecture of one VAE, described once; saved beside the model as ``config.json``.

    image_shape: (H, W, C) of the images; latent_dim: L; architecture: mlp, conv or infogan
    (Dai & Wipf 2019's network, fixed widths: :data:`INFOGAN_WIDTHS`); hidden_dim: width of the
    dense hidden layer (mlp: the one hidden layer; conv: the dense layer between the convolutions
    and the latent space; infogan: unused); filters: channels of the stride-2 convolutions (conv
    only, one per halving of the image); dropout: rate after the dense hidden layers (conv only,
    0 = none).
    """

    image_shape: tuple[int, int, int]
    latent_dim: int
    hidden_dim: int
    architecture: str = "mlp"
    filters: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.0
    likelihood: str = "bernoulli"
    gamma: float | str = GAUSSIAN_SIGMA  # gaussian only: the fixed standard deviation, or "learned"

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
        gamma=model.choice.gamma,
    )


def build_encoder(config: ArchConfig, dtype: str | None = None):
    """Encoder network: (N, H, W, C) float in [0, 1] -> [mean (N, L), log_var (N, L)].

    mlp and conv: log_var is a dense layer's output. infogan: a dense layer gives the standard
    deviation through softplus, as in Dai & Wipf's code (:class:`vaelab.model.layers.SoftplusLogVariance`:
    their log-variance-free head keeps the KL finite on colour images).

    ``dtype`` is a Keras dtype policy for the hidden layers (e.g. "mixed_float16"); the two
    outputs are always float32 so the loss is computed in full precision.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=config.image_shape, name="image")
    x = inputs
    if config.architecture == "infogan":
        x = _infogan_encoder_body(x, dtype)
    else:
        if config.architecture == "conv":
            for i, f in enumerate(config.filters):
                x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", dtype=dtype,
                                  name=f"conv_{i}")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(config.hidden_dim, activation="relu", dtype=dtype, name="hidden")(x)
        if config.dropout > 0:
            x = layers.Dropout(config.dropout, name="dropout")(x)
    mean = layers.Dense(config.latent_dim, dtype="float32", name="z_mean")(x)
    if config.architecture == "infogan":
        from vaelab.model.layers import SoftplusLogVariance

        raw = layers.Dense(config.latent_dim, dtype="float32", name="z_sd_raw")(x)
        log_var = SoftplusLogVariance(dtype="float32", name="z_log_var")(raw)
    else:
        log_var = layers.Dense(config.latent_dim, dtype="float32", name="z_log_var")(x)
    return keras.Model(inputs, [mean, log_var], name="encoder")


# The InfoGAN network of Dai & Wipf (2019, Table 1; their code's ``Infogan`` model, after Lucic et
# al. 2018): fixed widths, batch norm, leaky ReLU (slope 0.2) in the encoder, ReLU in the decoder.
INFOGAN_WIDTHS = (64, 128, 1024)
LEAKY_SLOPE = 0.2


def _infogan_encoder_body(x, dtype):
    """conv 64 4x4/2, lrelu -> conv 128 4x4/2, BN, lrelu -> dense 1024, BN, lrelu. Without the
    spectral norm of their code: batch norm follows each layer but the first, and the spectral
    norm's power-iteration state would be one more thing a resumed run must restore exactly."""
    from keras import layers

    conv1, conv2, dense = INFOGAN_WIDTHS
    x = layers.Conv2D(conv1, 4, strides=2, padding="same", dtype=dtype, name="conv_0")(x)
    x = layers.LeakyReLU(LEAKY_SLOPE, dtype=dtype, name="lrelu_0")(x)
    x = layers.Conv2D(conv2, 4, strides=2, padding="same", dtype=dtype, name="conv_1")(x)
    x = layers.BatchNormalization(dtype=dtype, name="bn_1")(x)
    x = layers.LeakyReLU(LEAKY_SLOPE, dtype=dtype, name="lrelu_1")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, dtype=dtype, name="hidden")(x)
    x = layers.BatchNormalization(dtype=dtype, name="bn_hidden")(x)
    return layers.LeakyReLU(LEAKY_SLOPE, dtype=dtype, name="lrelu_hidden")(x)


def build_decoder(config: ArchConfig, dtype: str | None = None):
    """Decoder network: z (N, L) -> (N, H, W, C) Bernoulli logits or Gaussian means (float32).

    A Gaussian mean is the sigmoid of the last layer, as in Dai & Wipf's code (2019, every
    network of ``daib13/TwoStageVAE``): the likelihood then scores the pixel values a sample
    can take. A linear mean clipped to [0, 1] afterwards left the background as likely to
    settle just above 0 (a grey haze that the Inception features see) as
    below it (black once clipped), and the seed decided which (docs/models.md).

    conv: the mirror of the encoder; the transposed convolutions double the bottleneck up to
    a multiple of 2^len(filters) and a Cropping2D trims it back to the exact input size
    (e.g. 92 -> 46 -> 23 -> 12 down, 12 -> 96 up, cropped to 92). infogan: dense 1024, BN, ReLU
    -> dense 128 (H/4) (W/4), BN, ReLU -> deconv 64 4x4/2, BN, ReLU -> deconv C 4x4/2 (H/4
    rounded up, then cropped the same way).
    """
    import keras
    from keras import layers

    height, width, channels = config.image_shape
    head = "sigmoid" if config.likelihood == "gaussian" else None
    inputs = keras.Input(shape=(config.latent_dim,), name="z")
    if config.architecture == "infogan":
        _, conv2, dense = INFOGAN_WIDTHS
        h, w = math.ceil(height / 4), math.ceil(width / 4)
        x = inputs
        for name, units in (("hidden", dense), ("unflatten_dense", conv2 * h * w)):
            x = layers.Dense(units, dtype=dtype, name=name)(x)
            x = layers.BatchNormalization(dtype=dtype, name=f"bn_{name}")(x)
            x = layers.ReLU(dtype=dtype, name=f"relu_{name}")(x)
        x = layers.Reshape((h, w, conv2), name="unflatten")(x)
        x = layers.Conv2DTranspose(INFOGAN_WIDTHS[0], 4, strides=2, padding="same", dtype=dtype, name="deconv_0")(x)
        x = layers.BatchNormalization(dtype=dtype, name="bn_deconv_0")(x)
        x = layers.ReLU(dtype=dtype, name="relu_deconv_0")(x)
        x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation=head, dtype="float32",
                                   name="pixels")(x)
        return keras.Model(inputs, _crop_to(x, (h * 4, w * 4), (height, width)), name="decoder")
    x = layers.Dense(config.hidden_dim, activation="relu", dtype=dtype, name="hidden")(inputs)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    if config.architecture == "mlp":
        x = layers.Dense(height * width * channels, activation=head, dtype="float32", name="pixels")(x)
        outputs = layers.Reshape(config.image_shape, name="image")(x)
    else:
        h, w, f_last = config.bottleneck_shape
        x = layers.Dense(h * w * f_last, activation="relu", dtype=dtype, name="unflatten_dense")(x)
        x = layers.Reshape((h, w, f_last), name="unflatten")(x)
        for i, f in enumerate(reversed(config.filters)):
            x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", dtype=dtype,
                                       name=f"deconv_{i}")(x)
        x = layers.Conv2DTranspose(channels, 3, padding="same", activation=head, dtype="float32", name="pixels")(x)
        scale = 2 ** len(config.filters)
        outputs = _crop_to(x, (h * scale, w * scale), (height, width))
    return keras.Model(inputs, outputs, name="decoder")


def _crop_to(x, size: tuple[int, int], target: tuple[int, int]):
    """Trim the (size) feature map ``x`` to ``target`` (H, W), centred: a Cropping2D named "crop"."""
    from keras import layers

    if size == target:
        return x
    dh, dw = size[0] - target[0], size[1] - target[1]
    return layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)), name="crop")(x)


@dataclass
class TrainedVae:
    """A trained VAE: its two networks and their config (saved and loaded by
    :mod:`vaelab.model.outputs`)."""

    encoder: Any
    decoder: Any
    config: ArchConfig
    # gaussian: log gamma as trained (config.gamma "learned"); None: the config's fixed gamma.
    learned_log_gamma: float | None = None



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
    the Gaussian mean (gaussian: already a sigmoid; the clip only guards the float range)."""
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
