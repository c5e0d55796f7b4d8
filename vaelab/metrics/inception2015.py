"""The FID Inception network as papers compute it, rebuilt in Keras: the 2015 TensorFlow graph.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium") is defined on one network: the Inception graph of ``inception-2015-12-05.tgz``
(``classify_image_graph_def.pb``, an early Inception v3 of Szegedy et al. 2016), read at its
``pool_3`` layer: 2048 features. TTUR's ``fid.py``, pytorch-fid, clean-fid's
``legacy_tensorflow`` mode, StyleGAN's metrics and torch-fidelity all use it, so its FIDs are
the ones a paper table holds. (``keras.applications.InceptionV3`` is a later, different
training of a similar architecture: its FIDs are not comparable with them.)

* :data:`ARCHITECTURE` describes the graph once, layer by layer, under the graph's own names
  (``conv``, ..., ``mixed``, ..., ``mixed_10``). Each convolution has no bias and is followed by
  batch normalisation without scale (beta, moving mean and variance, epsilon 0.001) and a ReLU;
  average pools leave the padding out of the average; ``mixed_10``'s pool branch is a max pool;
  ``pool_3`` averages the final 8 x 8 map to 2048 features.
* :func:`preprocess` is the graph's own input path: uint8 pixels as float32 in [0, 255] (grey
  tiled to RGB), TF1 ``ResizeBilinear`` to 299 x 299 (``align_corners=False``,
  ``half_pixel_centers=False``; TF2's ``tf.image.resize`` differs from it by up to ~159 grey
  levels), then ``(x - 128) / 128``.
* The weights come as a TorchScript archive, one of two known files pinned by sha256, found and
  read by :mod:`vaelab.metrics.inception_weights` (which runs no pickled code); :func:`build_network`
  takes its per-conv tensors.

TensorFlow and Keras are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vaelab.core.errors import VaelabError

IMAGE_SIZE = 299
FEATURE_DIMS = 2048
BN_EPSILON = 0.001
PREPROCESSING = "tf1-resize-bilinear-299 (align_corners=False, half_pixel_centers=False), (x-128)/128"


# --- The architecture, described once ---------------------------------------------------------

@dataclass(frozen=True)
class Conv:
    """conv (no bias) -> batch norm (no scale) -> ReLU; ``name`` is the graph's, under ``layers.``."""

    name: str
    filters: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: str = "same"  # "same" (stride 1, (k-1)/2 on each side) or "valid" (none)
    source: str | None = None  # a layer of the same block; None: the block's input


@dataclass(frozen=True)
class Pool:
    """A 3 x 3 max or average pool; "same" average pools leave the padding out of the mean."""

    name: str
    kind: str  # "max" | "avg"
    stride: int = 1
    padding: str = "same"
    source: str | None = None


@dataclass(frozen=True)
class Block:
    """A stem layer (one op) or an Inception block: ops in order, and the ops whose outputs
    are concatenated along channels, in that order (the feature order of ``pool_3``)."""

    name: str
    ops: tuple[Conv | Pool, ...]
    outputs: tuple[str, ...]


def _conv(name: str, filters: int, kernel: int | tuple[int, int], source: str | None = None, *,
          stride: int = 1, padding: str = "same") -> Conv:
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    return Conv(name, filters, kernel, stride, padding, source)


def _block_a(name: str, pool_filters: int) -> Block:  # InceptionA: 35 x 35
    return Block(name, (
        _conv("conv", 64, 1),
        _conv("tower.conv", 48, 1), _conv("tower.conv_1", 64, 5, "tower.conv"),
        _conv("tower_1.conv", 64, 1), _conv("tower_1.conv_1", 96, 3, "tower_1.conv"),
        _conv("tower_1.conv_2", 96, 3, "tower_1.conv_1"),
        Pool("tower_2.pool", "avg"), _conv("tower_2.conv", pool_filters, 1, "tower_2.pool"),
    ), ("conv", "tower.conv_1", "tower_1.conv_2", "tower_2.conv"))


def _block_b(name: str) -> Block:  # InceptionB: 35 -> 17
    return Block(name, (
        _conv("conv", 384, 3, stride=2, padding="valid"),
        _conv("tower.conv", 64, 1), _conv("tower.conv_1", 96, 3, "tower.conv"),
        _conv("tower.conv_2", 96, 3, "tower.conv_1", stride=2, padding="valid"),
        Pool("pool", "max", stride=2, padding="valid"),
    ), ("conv", "tower.conv_2", "pool"))


def _block_c(name: str, width: int) -> Block:  # InceptionC: 17 x 17, factorised 7 x 7
    return Block(name, (
        _conv("conv", 192, 1),
        _conv("tower.conv", width, 1), _conv("tower.conv_1", width, (1, 7), "tower.conv"),
        _conv("tower.conv_2", 192, (7, 1), "tower.conv_1"),
        _conv("tower_1.conv", width, 1), _conv("tower_1.conv_1", width, (7, 1), "tower_1.conv"),
        _conv("tower_1.conv_2", width, (1, 7), "tower_1.conv_1"),
        _conv("tower_1.conv_3", width, (7, 1), "tower_1.conv_2"),
        _conv("tower_1.conv_4", 192, (1, 7), "tower_1.conv_3"),
        Pool("tower_2.pool", "avg"), _conv("tower_2.conv", 192, 1, "tower_2.pool"),
    ), ("conv", "tower.conv_2", "tower_1.conv_4", "tower_2.conv"))


def _block_d(name: str) -> Block:  # InceptionD: 17 -> 8
    return Block(name, (
        _conv("tower.conv", 192, 1), _conv("tower.conv_1", 320, 3, "tower.conv", stride=2, padding="valid"),
        _conv("tower_1.conv", 192, 1), _conv("tower_1.conv_1", 192, (1, 7), "tower_1.conv"),
        _conv("tower_1.conv_2", 192, (7, 1), "tower_1.conv_1"),
        _conv("tower_1.conv_3", 192, 3, "tower_1.conv_2", stride=2, padding="valid"),
        Pool("pool", "max", stride=2, padding="valid"),
    ), ("tower.conv_1", "tower_1.conv_3", "pool"))


def _block_e(name: str, pool: str) -> Block:  # InceptionE: 8 x 8, split 1x3 / 3x1 outputs
    return Block(name, (
        _conv("conv", 320, 1),
        _conv("tower_conv", 384, 1),
        _conv("tower_mixed_conv", 384, (1, 3), "tower_conv"), _conv("tower_mixed_conv_1", 384, (3, 1), "tower_conv"),
        _conv("tower_1_conv", 448, 1), _conv("tower_1_conv_1", 384, 3, "tower_1_conv"),
        _conv("tower_1_mixed_conv", 384, (1, 3), "tower_1_conv_1"),
        _conv("tower_1_mixed_conv_1", 384, (3, 1), "tower_1_conv_1"),
        Pool("tower_2_pool", pool), _conv("tower_2_conv", 192, 1, "tower_2_pool"),
    ), ("conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_mixed_conv", "tower_1_mixed_conv_1",
        "tower_2_conv"))


def _stem(op: Conv | Pool) -> Block:
    return Block("", (op,), (op.name,))


ARCHITECTURE: tuple[Block, ...] = (
    _stem(_conv("conv", 32, 3, stride=2, padding="valid")),  # 299 -> 149
    _stem(_conv("conv_1", 32, 3, padding="valid")),  # -> 147
    _stem(_conv("conv_2", 64, 3)),
    _stem(Pool("pool0", "max", stride=2, padding="valid")),  # -> 73
    _stem(_conv("conv_3", 80, 1, padding="valid")),
    _stem(_conv("conv_4", 192, 3, padding="valid")),  # -> 71
    _stem(Pool("pool1", "max", stride=2, padding="valid")),  # -> 35
    _block_a("mixed", 32), _block_a("mixed_1", 64), _block_a("mixed_2", 64),
    _block_b("mixed_3"),  # -> 17
    _block_c("mixed_4", 128), _block_c("mixed_5", 160), _block_c("mixed_6", 160), _block_c("mixed_7", 192),
    _block_d("mixed_8"),  # -> 8
    _block_e("mixed_9", "avg"), _block_e("mixed_10", "max"),
)


def conv_layers() -> dict[str, Conv]:
    """Every convolution of :data:`ARCHITECTURE` by its full graph name (``mixed_4.tower.conv_1``)."""
    return {_full_name(block, op): op for block in ARCHITECTURE for op in block.ops if isinstance(op, Conv)}


def _full_name(block: Block, op: Conv | Pool) -> str:
    return f"{block.name}.{op.name}" if block.name else op.name


# --- Preprocessing ----------------------------------------------------------------------------

def resize_bilinear_tf1(images: Any, size: int) -> Any:
    """float32 (B, H, W, C) -> (B, size, size, C) by TF1's ``ResizeBilinear`` (align_corners=False,
    half_pixel_centers=False): output pixel i samples input coordinate i * H / size, clamped at
    the last row/column. This is the resize inside the 2015 graph."""
    import tensorflow as tf

    return tf.raw_ops.ResizeBilinear(images=images, size=[size, size], align_corners=False,
                                     half_pixel_centers=False)


def preprocess(batch: Any) -> Any:
    """uint8 (B, H, W, 1|3) -> float32 (B, 299, 299, 3) in [-1, 1), exactly as the 2015 graph."""
    import tensorflow as tf

    x = tf.cast(batch, tf.float32)
    if x.shape[-1] == 1:
        x = tf.tile(x, (1, 1, 1, 3))
    x = resize_bilinear_tf1(x, IMAGE_SIZE)
    return (x - 128.0) / 128.0


# --- The Keras network ------------------------------------------------------------------------

def build_network(weights: dict[str, dict[str, np.ndarray]] | None, dtype: str = "float32"):
    """The 2015 graph as a functional Keras model: float32 (B, 299, 299, 3) in [-1, 1] -> (B, 2048).

    ``weights``: per-conv tensors (:func:`vaelab.metrics.inception_weights.weights_from_archive`), or None
    to keep Keras' initial values (tests of the wiring give it random kernels with
    :func:`vaelab.metrics.features.he_normal_convolutions`). ``dtype``: a Keras dtype policy for the
    layers ("float32", or "mixed_bfloat16": bfloat16 compute, float32 weights); the features
    are always float32. A kernel whose input channels do not fit the graph is a
    :class:`VaelabError` naming the layer.
    """
    import keras
    from keras import layers

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="input")
    x = inputs
    for block in ARCHITECTURE:
        outputs: dict[str, Any] = {}
        for op in block.ops:
            source = x if op.source is None else outputs[op.source]
            name = _full_name(block, op)
            if isinstance(op, Pool):
                pool = layers.MaxPooling2D if op.kind == "max" else layers.AveragePooling2D
                outputs[op.name] = pool(3, op.stride, op.padding, dtype=dtype, name=name)(source)
                continue
            conv = layers.Conv2D(op.filters, op.kernel, op.stride, op.padding, use_bias=False, dtype=dtype,
                                 name=name)
            norm = layers.BatchNormalization(epsilon=BN_EPSILON, scale=False, dtype=dtype, name=f"{name}.bn")
            outputs[op.name] = layers.ReLU(dtype=dtype, name=f"{name}.relu")(norm(conv(source)))
            if weights is not None:
                _set_conv_weights(conv, norm, weights[name], name)
        parts = [outputs[name] for name in block.outputs]
        x = parts[0] if len(parts) == 1 else layers.Concatenate(axis=-1, dtype=dtype, name=block.name)(parts)
    features = layers.GlobalAveragePooling2D(dtype="float32", name="pool_3")(x)
    return keras.Model(inputs, features, name="inception_2015")


def _set_conv_weights(conv: Any, norm: Any, tensors: dict[str, np.ndarray], name: str) -> None:
    c_in = int(conv.kernel.shape[2])
    kernel = tensors["weight"]
    if kernel.shape[1] != c_in:
        raise VaelabError(f"layers.{name}.weight takes {kernel.shape[1]} input channels, the graph gives it {c_in}")
    conv.kernel.assign(np.transpose(kernel, (2, 3, 1, 0)).astype(np.float32))  # OIHW -> HWIO
    norm.beta.assign(tensors["beta"].astype(np.float32))
    norm.moving_mean.assign(tensors["mean"].astype(np.float32))
    norm.moving_variance.assign(tensors["var"].astype(np.float32))
