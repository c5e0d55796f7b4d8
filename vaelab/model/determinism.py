"""What makes a training run repeat bit for bit on one machine: the seeds, and the order of every
floating-point sum of gradient terms.

``tf.config.experimental.enable_op_determinism`` makes each kernel deterministic, but one sum is
not a kernel's choice. When a tensor feeds k > 2 ops, the gradient of the loss with respect to it
is the sum of k terms, and ``tf.GradientTape`` adds them with one ``AddN``. TensorFlow's CPU
``AddN`` accumulates into whichever input buffer it may reuse (the first whose reference count is
one when it runs) and moves that input to the front, so when another op still holds input 0 the
terms can be summed as (c + b) + a instead of (a + b) + c: a timing-dependent order, a few ulps
apart. ``infogan`` has such sums (its log-variance feeds three ops, each batch norm's input
three), and every run of it met such a switch at some step and drifted away from the others
from there. A sum of two terms is exact in either order, so :func:`gradients` sums k terms as a chain of two-term sums; Grappler's
arithmetic optimizer, which would fold that chain (and any a + b + c of the forward pass) back
into one ``AddN``, is switched off by :func:`make_reproducible` (docs/reproducibility.md).
"""

from __future__ import annotations

from typing import Any, Sequence


def make_reproducible(seed: int) -> None:
    """Seed Python, numpy and TensorFlow from ``seed``, make the kernels deterministic and keep
    Grappler from merging sums; call before the models are built. Process-wide."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})


def gradients(loss: Any, variables: Sequence[Any]) -> list[Any]:
    """d ``loss`` / d ``variables`` (None where unconnected), every sum of gradient terms added two
    at a time in the graph's order. Graph mode only: inside a ``train_step``, which Keras traces
    with ``tf.function``."""
    import tensorflow as tf

    return tf.gradients(loss, list(variables), aggregation_method=tf.AggregationMethod.EXPERIMENTAL_TREE)
