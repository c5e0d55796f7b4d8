"""Sums of gradient terms in a fixed order (vaelab.model.determinism): every training step's
graph adds its gradient terms two at a time, and Grappler may not merge them back.

Why the graph and not two runs: the order TensorFlow's ``AddN`` picks depends on thread timing,
and two runs of the old tape-based step parted only after tens of steps of ``infogan`` on real
digits; no short test can make that happen on demand (docs/reproducibility.md). What does
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
    from vaelab.training.vae import build_vae

    config = ArchConfig(SHAPE, latent_dim=3, hidden_dim=8, architecture=architecture, filters=(4,),
                        likelihood=likelihood, gamma=gamma)
    sizes = addn_sizes(traced_train_step(build_vae(config, TRAIN), (4, *SHAPE)))
    # The log-variance feeds three ops (the noise's scale and two terms of the KL): at least one
    # sum of three terms, now a chain of two-term sums.
    assert len(sizes) >= 2 and set(sizes) == {2}, sizes


def test_a_gradient_tape_would_sum_three_terms_at_once():
    """The premise: the same loss through tf.GradientTape gives AddN ops of three inputs."""
    import tensorflow as tf

    from vaelab.training.vae import build_vae

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


def test_first_difference_names_the_step_and_the_variables():
    from scripts.repeat_training import first_difference

    one = {"names": ["w", "b"], "steps": [["1", "2"], ["3", "4"]]}
    other = {"names": ["w", "b"], "steps": [["1", "2"], ["3", "5"]]}
    assert first_difference([one, one]) is None
    assert first_difference([one, one, other]) == "runs 1 and 3 part at step 2: 1 variables differ (b)"


@pytest.mark.slow
def test_repeat_training_trains_infogan_twice_in_fresh_processes_to_the_same_bits(tmp_path, write_params):
    import subprocess
    import sys

    import numpy as np

    from tests.conftest import PROJECT_ROOT
    from vaelab.core.prepared import PreparedData, save_prepared

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (72, *SHAPE), dtype=np.uint8)
    save_prepared(PreparedData(images[:64], np.zeros(64, np.int64), images[64:], np.zeros(8, np.int64), ("a",)),
                  tmp_path / "toy.npz")
    params = write_params(batch_size=16, datasets={"toy": {"data": {"kind": "mnist"}, "model": {
        "architecture": "infogan", "likelihood": "gaussian", "gamma": "learned"}}})
    command = [sys.executable, "-m", "scripts.repeat_training", "--dataset", "toy", "--data", str(tmp_path / "toy.npz"),
               "--params", str(params), "--steps", "6"]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # 6 steps over two epochs of 4 batches. The model's 39 variables: 29 trainable (log gamma among
    # them) and the moving statistics of its 5 batch norms; Adam's 60: two slots per trainable
    # variable, its step count and its learning rate.
    assert result.stdout.splitlines()[0] == ("identical: 2 runs of 6 steps; 39 model and 60 optimizer variables after "
                                             "every step"), result.stdout
