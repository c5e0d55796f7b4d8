"""A tiny stand-in feature network for tests: instant, deterministic, no InceptionV3."""

from __future__ import annotations

import numpy as np

from vaelab.metrics.features import FeatureExtractor, feature_metadata, preprocess_keras


def build_stand_in_extractor(image_size: int = 16, dims: int = 32, grid: int = 4, seed: int = 0) -> FeatureExtractor:
    """A tiny deterministic feature network.

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
