"""The one Keras layer of this project that Keras does not ship: the infogan encoder's
standard-deviation head.

Imported by the encoder builder and by the model loader (inside their functions, so the
lighter modules never import Keras); saved models name it ``vaelab>SoftplusLogVariance``.
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
    several standard deviations in every unit at once. exp(log_var) then turned head outputs of
    30 to 60 into KL terms of 1e7 to 1e16 nats within a few steps (docs/models.md); softplus
    grows linearly, so an output of 30 costs sd^2 / 2 = 450 nats in its unit, a pull the KL
    gradient can answer.
    """

    def call(self, raw):
        return 2.0 * ops.log(ops.softplus(ops.cast(raw, "float32")) + SD_FLOOR)

    def compute_output_shape(self, input_shape):
        return input_shape
