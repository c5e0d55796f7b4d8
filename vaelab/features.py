"""FID features: the feature networks, the tf.data input pipeline and streamed statistics.

Three networks, chosen by ``fid.network`` (:data:`NETWORKS`), each with its own input path:

* ``inception2015`` (default): the 2015 TensorFlow Inception graph of FID papers and tools, read
  at ``pool_3`` (:mod:`vaelab.inception2015`): TF1 bilinear resize to 299, ``(x - 128) / 128``;
* ``keras_imagenet``: ``keras.applications.InceptionV3`` with Keras' ImageNet weights, global
  average pooled (Szegedy et al. 2016); TF2 bilinear resize to ``image_size``, ``x / 127.5 - 1``.
  A later training of a similar network: its FIDs compare only with themselves;
* ``random``: the same Keras architecture with seeded He-normal weights, for tests and smoke
  runs (comparable only with the same seed and size).

All give 2048-d features (Heusel et al. 2017). Images go through a tf.data pipeline: uint8 NHWC
batches -> the network's preprocessing -> prefetch, so the preprocessing of the next batch
overlaps the forward pass of this one; only one batch of resized images exists at a time (plus
the prefetch buffer), whatever the number of images. ``fid.precision: bfloat16`` runs the
network's layers in bfloat16 (float32 weights and features).

TensorFlow and Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from vaelab.errors import VaelabError
from vaelab.fid import RunningStats

NETWORKS = ("inception2015", "keras_imagenet", "random")
PRECISIONS = ("float32", "bfloat16")
FEATURE_DIMS = 2048
MIN_IMAGE_SIZE = 75  # keras.applications.InceptionV3's smallest input
STATS_CHUNK = 1024  # feature rows per merge into the running statistics (8 MB of float32 at 2048-d)
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


def feature_metadata(network: str, weights: str, preprocessing: str, precision: str, image_size: int,
                     dims: int) -> dict[str, Any]:
    return {"feature_network": network, "feature_weights": weights, "fid_preprocessing": preprocessing,
            "fid_precision": precision, "fid_image_size": int(image_size), "fid_feature_dims": int(dims)}


@dataclass(frozen=True)
class NetworkWeights:
    """A network's weights, found but not yet loaded: ``label`` (what metadata records) and
    ``source`` (a :class:`~vaelab.inception2015.WeightsFile`, a Keras weights path, or the seed)."""

    network: str
    label: str
    source: Any


def check_network(network: str, image_size: int, precision: str = "float32") -> None:
    """Refuse a network, size or precision the feature networks cannot take (one clear error)."""
    if network not in NETWORKS:
        raise VaelabError(f"fid.network = {network!r} is invalid; allowed: {' | '.join(NETWORKS)}")
    if precision not in PRECISIONS:
        raise VaelabError(f"fid.precision = {precision!r} is invalid; allowed: {' | '.join(PRECISIONS)}")
    if network == "inception2015" and image_size != 299:
        raise VaelabError(f"fid.image_size = {image_size} is invalid with fid.network inception2015, whose "
                          f"graph takes 299 px only; set fid.image_size: 299")
    if image_size < MIN_IMAGE_SIZE:
        raise VaelabError(f"fid.image_size = {image_size} is too small; InceptionV3 needs at least {MIN_IMAGE_SIZE}")


def find_weights(network: str, seed: int) -> NetworkWeights:
    """Locate (or download) ``network``'s weights without loading them, so a missing file fails in
    a second, before any slow work: the 2015 graph's TorchScript file
    (:func:`vaelab.inception2015.locate_weights`), Keras' ImageNet file
    (:func:`fetch_imagenet_weights`), or nothing for ``random`` (seeded by ``seed``)."""
    if network == "inception2015":
        from vaelab.inception2015 import locate_weights

        located = locate_weights()
        return NetworkWeights(network, located.label, located)
    if network == "keras_imagenet":
        return NetworkWeights(network, f"{WEIGHTS_FILE} md5:{WEIGHTS_MD5}", fetch_imagenet_weights())
    if network == "random":
        return NetworkWeights(network, f"he-normal(seed={seed})", seed)
    raise VaelabError(f"fid.network = {network!r} is invalid; allowed: {' | '.join(NETWORKS)}")


def network_metadata(weights: NetworkWeights, image_size: int, precision: str) -> dict[str, Any]:
    """The metadata :func:`build_feature_extractor` gives for these weights, without building the
    network (so a stage can refuse mismatched reference statistics before any slow work)."""
    from vaelab.inception2015 import PREPROCESSING

    check_network(weights.network, image_size, precision)
    preprocessing = (PREPROCESSING if weights.network == "inception2015"
                     else f"tf2-resize-bilinear-{image_size} (half_pixel_centers=True), x/127.5-1")
    return feature_metadata(weights.network, weights.label, preprocessing, precision, image_size, FEATURE_DIMS)


def keras_cache_dir() -> str:
    """The folder Keras' ``get_file`` caches into: ``$KERAS_HOME`` or ``~/.keras`` (Keras' rule)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return home
    try:
        from keras.src.backend import config as keras_config  # private, but it is Keras' own answer

        return keras_config.keras_home()
    except (ImportError, AttributeError):
        return os.path.join(os.path.expanduser("~"), ".keras")


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


def _randomise_inception(model: Any, seed: int) -> None:
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
    """The feature network ``network`` (:data:`NETWORKS`): (B, S, S, 3) network input -> (B, 2048).

    ``weights``: from :func:`find_weights` (found here when None). ``image_size``: 299 for
    inception2015; >= 75 for the Keras networks (299 is Inception's native size). ``precision``:
    "float32" or "bfloat16" (layers compute in bfloat16, features come out float32).
    """
    check_network(network, image_size, precision)
    # Find the weights before building, so a missing file fails in a second, not after the build.
    weights = weights if weights is not None else find_weights(network, seed)
    if weights.network != network:
        raise ValueError(f"weights of {weights.network} given for network {network}")
    policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"

    import keras
    import tensorflow as tf

    if network == "inception2015":
        from vaelab import inception2015

        model = inception2015.build_network(inception2015.load_weights(weights.source), dtype=policy)
        preprocess_fn = inception2015.preprocess
    else:
        with _global_dtype_policy(policy):
            model = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                                   input_shape=(image_size, image_size, 3))
        if network == "keras_imagenet":
            model.load_weights(weights.source)
        else:
            _randomise_inception(model, weights.source)

        def preprocess_fn(batch: Any) -> Any:
            return preprocess_keras(batch, image_size)

    @tf.function(reduce_retracing=True)
    def forward(x):
        return tf.cast(model(x, training=False), tf.float32)

    return FeatureExtractor(forward=forward, preprocess=preprocess_fn, image_size=image_size, dims=FEATURE_DIMS,
                            metadata=network_metadata(weights, image_size, precision), model=model)


def build_stand_in_extractor(image_size: int = 16, dims: int = 32, grid: int = 4, seed: int = 0) -> FeatureExtractor:
    """A tiny deterministic feature network for tests (no InceptionV3, instant).

    (B, S, S, 3) -> average-pool to a ``grid`` x ``grid`` x 3 thumbnail -> fixed random
    projection (seeded) -> tanh: (B, dims) features that depend smoothly on the image.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    inputs = grid * grid * 3
    weights = tf.constant(rng.standard_normal((inputs, dims)) / np.sqrt(inputs), dtype=tf.float32)
    bias = tf.constant(rng.standard_normal(dims) * 0.1, dtype=tf.float32)

    @tf.function(reduce_retracing=True)
    def forward(x):
        thumbs = tf.image.resize(x, (grid, grid), method="area")
        return tf.tanh(tf.reshape(thumbs, (-1, inputs)) @ weights + bias)

    return FeatureExtractor(
        forward=forward, preprocess=lambda batch: preprocess_keras(batch, image_size), image_size=image_size,
        dims=dims, metadata=feature_metadata("stand-in (tests)", f"stand-in(seed={seed})", "tf2-resize-bilinear",
                                             "float32", image_size, dims))


def check_images(batch: np.ndarray) -> np.ndarray:
    """Validate one batch of images: uint8 (B, H, W, 1|3). Returns it as an ndarray."""
    batch = np.asarray(batch)
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] not in (1, 3):
        raise VaelabError(
            f"feature input must be uint8 images (N, H, W, 1|3), got {batch.dtype} of shape {batch.shape}; "
            f"convert images to uint8 NHWC first"
        )
    return batch


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


def _rebatch(source: Any, batch_size: int) -> Iterator[np.ndarray]:
    """uint8 array (N, H, W, C) or an iterable of uint8 batches -> batches of ``batch_size``
    (the last one shorter). Slices of an array are views: nothing is copied up front."""
    if isinstance(source, np.ndarray):
        check_images(source)
        for start in range(0, len(source), batch_size):
            yield source[start:start + batch_size]
        return
    pending: list[np.ndarray] = []
    count = 0
    shape = None
    for batch in source:
        batch = check_images(batch)
        if shape is None:
            shape = batch.shape[1:]
        elif batch.shape[1:] != shape:
            raise VaelabError(f"image batches differ in shape: {shape} then {batch.shape[1:]}; all images must match")
        pending.append(batch)
        count += len(batch)
        while count >= batch_size:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:batch_size]
            rest = joined[batch_size:]
            pending, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def _peek(source: Any, batch_size: int) -> tuple[tuple[int, int, int], Iterator[np.ndarray]]:
    """The image shape (H, W, C) and an iterator over all batches (first one included)."""
    batches = _rebatch(source, batch_size)
    try:
        first = next(batches)
    except StopIteration:
        raise VaelabError("no images to compute features of; the image set is empty") from None

    def chain() -> Iterator[np.ndarray]:
        yield first
        yield from batches

    return tuple(first.shape[1:]), chain()  # type: ignore[return-value]


def compute_activations(source: Any, extractor: FeatureExtractor, batch_size: int = 100, *,
                        progress: bool = True, total: int | None = None,
                        description: str = "features") -> Iterator[np.ndarray]:
    """Yield float32 (B, dims) features of the images in ``source``, batch by batch.

    ``source``: a uint8 array (N, H, W, 1|3) or an iterable of uint8 batches (any sizes; e.g.
    generated images, produced lazily). The batches flow through a tf.data pipeline
    (``from_generator`` -> preprocess -> prefetch), so memory does not grow with N. A tqdm bar
    shows images done and images per second (``total`` defaults to ``len(source)`` for arrays).
    """
    import tensorflow as tf

    if batch_size < 1:
        raise VaelabError(f"fid.batch_size = {batch_size} is invalid; allowed: an integer >= 1")
    if total is None and isinstance(source, np.ndarray):
        total = len(source)
    shape, batches = _peek(source, batch_size)
    # An exception inside from_generator's generator surfaces as an opaque TF error; keep the
    # original and re-raise it after the loop.
    failures: list[BaseException] = []

    def generate() -> Iterator[np.ndarray]:
        try:
            yield from batches
        except Exception as error:  # re-raised below, unchanged
            failures.append(error)

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((None, *shape), tf.uint8))
    dataset = dataset.map(extractor.preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    from tqdm.auto import tqdm

    with tqdm(total=total, unit="img", desc=description, disable=not progress, mininterval=1.0) as bar:
        for images in dataset:
            features = np.asarray(extractor.forward(images), dtype=np.float32)
            bar.update(len(features))
            yield features
    if failures:
        raise failures[0]


@dataclass(frozen=True)
class FeatureStats:
    """Statistics of the features of a set of images.

    ``mu`` float64 (D,), ``sigma`` float64 (D, D), ``n`` images, ``sample`` float32 (k, D): a
    uniform random subset of k <= ``keep`` feature vectors (for KID), ``seconds`` wall time.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    sample: np.ndarray
    seconds: float


def compute_statistics(source: Any, extractor: FeatureExtractor, batch_size: int = 100, *,
                       progress: bool = True, total: int | None = None, keep: int = 0, seed: int = 0,
                       description: str = "features") -> FeatureStats:
    """Mean and covariance (float64) of the features of ``source``, streamed through
    :class:`~vaelab.fid.RunningStats`; also keeps a seeded uniform sample of ``keep`` feature
    vectors (reservoir sampling, Vitter 1985's algorithm R). Warns when N < dims (biased FID)."""
    start = time.perf_counter()
    stats = RunningStats()
    reservoir = _Reservoir(keep, extractor.dims, seed)
    # Merge features into the float64 statistics in chunks of STATS_CHUNK rows: each merge costs
    # O(D^2) whatever its size, which at D = 2048 and batches of 50 took 15% of the time.
    chunk = np.empty((STATS_CHUNK, extractor.dims), np.float32)
    filled = 0
    for features in compute_activations(source, extractor, batch_size, progress=progress, total=total,
                                        description=description):
        reservoir.add(features)
        while len(features):
            take = min(len(features), STATS_CHUNK - filled)
            chunk[filled:filled + take] = features[:take]
            filled += take
            features = features[take:]
            if filled == STATS_CHUNK:
                stats.add(chunk)
                filled = 0
    stats.add(chunk[:filled])
    if stats.n < 2:
        raise VaelabError(f"{description}: FID needs at least 2 images, got {stats.n}")
    return FeatureStats(mu=stats.mean, sigma=stats.covariance(description), n=stats.n,
                        sample=reservoir.sample(), seconds=time.perf_counter() - start)


class _Reservoir:
    """A uniform random sample of at most ``size`` rows of a stream (algorithm R), seeded."""

    def __init__(self, size: int, dims: int, seed: int) -> None:
        self.size = size
        self.rows = np.zeros((size, dims), np.float32)
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def add(self, batch: np.ndarray) -> None:
        if self.size == 0:
            self.seen += len(batch)
            return
        for row in batch:
            if self.seen < self.size:
                self.rows[self.seen] = row
            else:
                slot = self.rng.integers(0, self.seen + 1)
                if slot < self.size:
                    self.rows[slot] = row
            self.seen += 1

    def sample(self) -> np.ndarray:
        return self.rows[:min(self.seen, self.size)].copy()
