"""Sums of gradient terms in a fixed order (vaelab.model.determinism): every training step's
graph adds its gradient terms two at a time, and Grappler may not merge them back.

Why the graph and not two runs: the order TensorFlow's ``AddN`` picks depends on thread timing,
and at the proxy's scale two runs of the old tape-based step parted after ~3 to ~100 steps of
``infogan``; no short test could make that happen on demand (README: Reproducibility). What does
not depend on timing is the structure: with two terms per ``AddN`` the order cannot matter.
"""

from __future__ import annotations

import pytest

from vaelab.model.networks import ArchConfig
from vaelab.training.loop import TrainConfig

SHAPE = (8, 8, 1)
TRAIN = TrainConfig(epochs=1, batch_size=4, learning_rate=1e-3, seed=0)


def addn_sizes(graph) -> list[int]:
    """The number of inputs of every AddN op of ``graph``."""
    return [len(op.inputs) for op in graph.get_operations() if op.type == "AddN"]


def traced_train_step(model, input_shape):
    import tensorflow as tf

    return tf.function(model.train_step).get_concrete_function(tf.TensorSpec(input_shape, tf.float32)).graph


@pytest.mark.parametrize("architecture", ["mlp", "conv", "infogan"])
@pytest.mark.parametrize("likelihood, gamma", [("bernoulli", 0.1), ("gaussian", 0.1), ("gaussian", "learned")])
def test_the_vae_training_step_adds_gradient_terms_two_at_a_time(architecture, likelihood, gamma):
    from vaelab.model.vae import build_vae

    config = ArchConfig(SHAPE, latent_dim=3, hidden_dim=8, architecture=architecture, filters=(4,),
                        likelihood=likelihood, gamma=gamma)
    sizes = addn_sizes(traced_train_step(build_vae(config, TRAIN), (4, *SHAPE)))
    # The log-variance feeds three ops (the noise's scale and two terms of the KL): at least one
    # sum of three terms, now a chain of two-term sums.
    assert len(sizes) >= 2 and set(sizes) == {2}, sizes


def test_a_gradient_tape_would_sum_three_terms_at_once():
    """The premise: the same loss through tf.GradientTape gives AddN ops of three inputs."""
    import tensorflow as tf

    from vaelab.model.vae import build_vae

    config = ArchConfig(SHAPE, latent_dim=3, hidden_dim=8, architecture="infogan", likelihood="gaussian",
                        gamma="learned")
    model = build_vae(config, TRAIN)

    @tf.function
    def tape_gradients(images):
        with tf.GradientTape() as tape:
            loss, _, _ = model._terms(images, training=True)
        return tape.gradient(loss, model.trainable_weights)

    graph = tape_gradients.get_concrete_function(tf.TensorSpec((4, *SHAPE), tf.float32)).graph
    assert max(addn_sizes(graph)) >= 3


def test_the_two_stage_training_step_adds_gradient_terms_two_at_a_time():
    import keras

    from vaelab.model.two_stage import _second_vae, build_networks

    model = _second_vae(*build_networks(latent_dim=3, width=8), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    sizes = addn_sizes(traced_train_step(model, (4, 2, 3)))
    assert len(sizes) >= 1 and set(sizes) == {2}, sizes


def test_make_reproducible_seeds_and_keeps_grappler_from_merging_sums():
    import numpy as np
    import tensorflow as tf

    from vaelab.model.determinism import make_reproducible

    make_reproducible(5)
    first = np.random.random(3), float(tf.random.uniform(()))
    make_reproducible(5)
    assert np.array_equal(first[0], np.random.random(3)) and first[1] == float(tf.random.uniform(()))
    assert tf.config.optimizer.get_experimental_options()["arithmetic_optimization"] is False
