"""FID's feature networks: which network, its weights, its input path, and what identifies it.

Three networks, chosen by ``fid.network`` (:data:`vaelab.metrics.params.FID_NETWORKS`), each with its own input path:

* ``inception2015`` (default): the 2015 TensorFlow Inception graph of FID papers and tools, read
  at ``pool_3`` (:mod:`vaelab.metrics.inception2015`): TF1 bilinear resize to 299, ``(x - 128) / 128``;
* ``keras_imagenet``: ``keras.applications.InceptionV3`` with Keras' ImageNet weights, global
  average pooled (Szegedy et al. 2016); TF2 bilinear resize to ``image_size``, ``x / 127.5 - 1``.
  A later training of a similar network: its FIDs compare only with themselves;
* ``random``: the same Keras architecture with seeded He-normal weights, for tests and smoke
  runs (comparable only with the same seed and size).

All give 2048-d features (Heusel et al. 2017); :mod:`vaelab.metrics.feature_stats` streams image sets
through them. ``fid.precision: bfloat16`` runs the network's layers in bfloat16 (float32
weights and features). Every feature set carries metadata naming the network, its weights (and
their hash), the preprocessing and the precision: features of different metadata are never
compared.

TensorFlow and Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.metrics.inception_weights import keras_cache_dir
from vaelab.metrics.params import FID_NETWORKS, check_fid_network

FEATURE_DIMS = 2048
WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + WEIGHTS_FILE
# The md5 Keras pins for this file in keras/src/applications/inception_v3.py.
WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
# The metadata keys that identify features: reference statistics and samples must agree on all.
METADATA_KEYS = ("feature_network", "feature_weights", "fid_preprocessing", "fid_precision", "fid_image_size",
                 "fid_feature_dims")


@dataclass(frozen=True)
class FeatureExtractor:
    """A feature network, its input path and what identifies it.

    ``preprocess``: uint8 (B, H, W, 1|3) tensor -> float32 (B, image_size, image_size, 3), the
    network's own input; ``forward``: that -> float32 (B, dims) features; ``metadata``: the
    :data:`METADATA_KEYS` (features of different metadata are not comparable).
    """

    forward: Callable[[Any], Any]
    preprocess: Callable[[Any], Any]
    image_size: int
    dims: int
    metadata: dict[str, Any]
    model: Any = None  # the Keras model behind ``forward``, when there is one

    @functools.cached_property
    def embed(self) -> Callable[[Any], Any]:
        """uint8 (B, H, W, 1|3) -> float32 (B, dims): ``preprocess`` (traced once per input shape)
        then ``forward``. Two traced functions, not one, so that no graph optimisation reaches
        across them: the features are those of preprocessing and network run apart."""
        import tensorflow as tf

        preprocess = tf.function(self.preprocess, reduce_retracing=True)
        return lambda images: self.forward(preprocess(images))


def feature_metadata(network: str, weights: str, preprocessing: str, precision: str, image_size: int,
                     dims: int) -> dict[str, Any]:
    return {"feature_network": network, "feature_weights": weights, "fid_preprocessing": preprocessing,
            "fid_precision": precision, "fid_image_size": int(image_size), "fid_feature_dims": int(dims)}


@dataclass(frozen=True)
class NetworkWeights:
    """A network's weights, found but not yet loaded: ``label`` (what metadata records) and
    ``source`` (a :class:`~vaelab.metrics.inception_weights.WeightsFile`, a Keras weights path, or the seed)."""

    network: str
    label: str
    source: Any


def find_weights(network: str, seed: int) -> NetworkWeights:
    """Locate (or download) ``network``'s weights without loading them, so a missing file fails in
    a second, before any slow work: the 2015 graph's TorchScript file
    (:func:`vaelab.metrics.inception_weights.locate_weights`), Keras' ImageNet file
    (:func:`fetch_imagenet_weights`), or nothing for ``random`` (seeded by ``seed``)."""
    if network == "inception2015":
        from vaelab.metrics.inception_weights import locate_weights

        located = locate_weights()
        return NetworkWeights(network, located.label, located)
    if network == "keras_imagenet":
        return NetworkWeights(network, f"{WEIGHTS_FILE} md5:{WEIGHTS_MD5}", fetch_imagenet_weights())
    if network == "random":
        return NetworkWeights(network, f"he-normal(seed={seed})", seed)
    raise VaelabError(f"fid.network = {network!r} is invalid; allowed: {' | '.join(FID_NETWORKS)}")


def network_metadata(weights: NetworkWeights, image_size: int, precision: str) -> dict[str, Any]:
    """The metadata :func:`build_feature_extractor` gives for these weights, without building the
    network (so a stage can refuse mismatched reference statistics before any slow work)."""
    from vaelab.metrics.inception2015 import PREPROCESSING

    check_fid_network(weights.network, image_size, precision)
    preprocessing = (PREPROCESSING if weights.network == "inception2015"
                     else f"tf2-resize-bilinear-{image_size} (half_pixel_centers=True), x/127.5-1")
    return feature_metadata(weights.network, weights.label, preprocessing, precision, image_size, FEATURE_DIMS)


def fetch_imagenet_weights() -> str:
    """Path of InceptionV3's no-top ImageNet weights, through Keras' cache (and its pinned md5).

    A cached file is used as is (Keras checks its hash); otherwise Keras downloads it. When
    that fails (offline), raises :class:`VaelabError` naming the file, the folder to put it in
    and the URL to fetch it from on another machine.
    """
    import keras

    cache_dir = keras_cache_dir()
    target = os.path.join(cache_dir, "models", WEIGHTS_FILE)
    try:
        return keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models",
                                    file_hash=WEIGHTS_MD5, cache_dir=cache_dir)
    except Exception as error:  # urllib, OSError, hash mismatch: all mean "the file is not usable"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise VaelabError(
            f"InceptionV3 ImageNet weights {WEIGHTS_FILE} are missing and could not be downloaded ({reason}); "
            f"download {WEIGHTS_URL} elsewhere and copy it to {target} (md5 {WEIGHTS_MD5}), "
            f"or set fid.network: random for a smoke run"
        ) from None


def he_normal_convolutions(model: Any, seed: int) -> None:
    """Give every convolution He-normal weights drawn by numpy from ``seed`` (He et al. 2015).

    Deterministic whatever else the process did with Keras' global RNG. Keras' default
    Glorot initialisation shrinks the activations through InceptionV3's ~94 ReLU convolutions to
    ~1e-4, which would give FIDs of ~1e-8; He scaling keeps the features of order 1. Batch
    norms keep their initial identity statistics.
    """
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            shape = tuple(layer.kernel.shape)
            fan_in = int(np.prod(shape[:-1]))
            layer.kernel.assign(rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))


@contextlib.contextmanager
def _global_dtype_policy(policy: str) -> Iterator[None]:
    """Build Keras layers that take no ``dtype`` argument (keras.applications) under ``policy``."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_feature_extractor(network: str = "inception2015", image_size: int = 299, seed: int = 0,
                            precision: str = "float32", weights: NetworkWeights | None = None) -> FeatureExtractor:
    """The feature network ``network`` (:data:`vaelab.metrics.params.FID_NETWORKS`): (B, S, S, 3) network input -> (B, 2048).

    ``weights``: from :func:`find_weights` (found here when None). ``image_size``: 299 for
    inception2015; >= 75 for the Keras networks (299 is Inception's native size). ``precision``:
    "float32" or "bfloat16" (layers compute in bfloat16, features come out float32).
    """
    check_fid_network(network, image_size, precision)
    # Find the weights before building, so a missing file fails in a second, not after the build.
    weights = weights if weights is not None else find_weights(network, seed)
    if weights.network != network:
        raise ValueError(f"weights of {weights.network} given for network {network}")
    policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"

    import keras
    import tensorflow as tf

    if network == "inception2015":
        from vaelab.metrics import inception2015
        from vaelab.metrics.inception_weights import load_weights

        model = inception2015.build_network(load_weights(weights.source), dtype=policy)
        preprocess_fn = inception2015.preprocess
    else:
        with _global_dtype_policy(policy):
            model = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                                   input_shape=(image_size, image_size, 3))
        if network == "keras_imagenet":
            model.load_weights(weights.source)
        else:
            he_normal_convolutions(model, weights.source)

        def preprocess_fn(batch: Any) -> Any:
            return preprocess_keras(batch, image_size)

    @tf.function(reduce_retracing=True)
    def forward(x):
        return tf.cast(model(x, training=False), tf.float32)

    return FeatureExtractor(forward=forward, preprocess=preprocess_fn, image_size=image_size, dims=FEATURE_DIMS,
                            metadata=network_metadata(weights, image_size, precision), model=model)


def preprocess_keras(batch: Any, image_size: int) -> Any:
    """uint8 (B, H, W, 1|3) tensor -> float32 (B, image_size, image_size, 3) in [-1, 1]: the Keras
    networks' input path.

    Grayscale is tiled to RGB, resized by TF2's bilinear ``tf.image.resize`` (half-pixel
    centres; not the 2015 graph's TF1 resize), then scaled by InceptionV3's ``preprocess_input``
    (x / 127.5 - 1).
    """
    import keras
    import tensorflow as tf

    x = tf.cast(batch, tf.float32)
    if x.shape[-1] == 1:
        x = tf.tile(x, (1, 1, 1, 3))
    if x.shape[1] != image_size or x.shape[2] != image_size:
        x = tf.image.resize(x, (image_size, image_size), method="bilinear")
    return keras.applications.inception_v3.preprocess_input(x)
