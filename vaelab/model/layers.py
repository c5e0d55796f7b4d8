"""The one Keras layer of this project that Keras does not ship: the infogan encoder's
standard-deviation head.

Imported (which registers it) by the encoder builder and by the model loader, never at import
time of the lighter modules. Keras' ``load_model`` finds it by its registered name
``vaelab>SoftplusLogVariance``.
"""

from __future__ import annotations

import keras
from keras import ops

# Dai & Wipf's floor on the posterior standard deviation (their code: sd = 1e-6 + softplus(.)).
SD_FLOOR = 1e-6


@keras.saving.register_keras_serializable(package="vaelab")
class SoftplusLogVariance(keras.layers.Layer):
    """raw (N, L) -> log_var (N, L) = 2 log(1e-6 + softplus(raw)): the posterior's standard
    deviation as Dai & Wipf (2019) parameterise it (``two_stage_vae_model.py``, ``Infogan``),
    expressed as the log-variance every later stage reads.

    Why not a plain log-variance head: in training mode batch norm rescales a batch by its own
    statistics, and on colour images with a few outlying pictures the head's input reaches
    several standard deviations in every unit at once. exp(log_var) then turned outputs of 30-60
    into KL terms of 1e7-1e16 nats within a few steps; softplus grows linearly, so the same
    outputs cost sd^2 / 2, a few thousand nats, which the KL gradient pulls back.
    """

    def call(self, raw):
        return 2.0 * ops.log(ops.softplus(ops.cast(raw, "float32")) + SD_FLOOR)

    def compute_output_shape(self, input_shape):
        return input_shape
