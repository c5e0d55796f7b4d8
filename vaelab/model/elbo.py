"""The test ELBO of a trained VAE: the loss of :mod:`vaelab.model.losses` estimated on images
through a :class:`vaelab.model.networks.TrainedVae`, batch by batch (the evaluate stage's
``test.elbo``; Kingma & Welling 2014)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.model.losses import kl_per_image, reconstruction_nll_per_image
from vaelab.model.networks import batch_slices, encode, images_to_float


def elbo_terms(vae: Any, images_uint8: np.ndarray, seed: int, beta: float = 1.0,
               batch_size: int = 256) -> dict[str, float]:
    """One-sample Monte-Carlo estimate of the ELBO of ``images_uint8`` (N, H, W, C) under ``vae``
    (a :class:`vaelab.model.networks.TrainedVae`), with eps ~ N(0, I) drawn by numpy from ``seed`` so the value
    does not depend on ``batch_size``.

    Returns means over images, in nats per image: ``reconstruction`` (-log p(x|z)), ``kl``,
    ``elbo`` = -(reconstruction + kl) and ``loss`` = reconstruction + beta * kl (the training
    objective).
    """
    images_uint8 = np.asarray(images_uint8)
    mean, log_var = encode(vae, images_uint8, batch_size)
    eps = np.random.default_rng(seed).standard_normal(mean.shape).astype(np.float32)
    z = mean + np.exp(0.5 * log_var) * eps
    kl = np.asarray(kl_per_image(mean, log_var), dtype=np.float64)
    rec = []
    for part in batch_slices(len(z), batch_size):
        outputs = vae.decoder(z[part], training=False)
        x = images_to_float(images_uint8[part])
        rec.append(np.asarray(reconstruction_nll_per_image(vae.config.likelihood, x, outputs, vae.config.gamma,
                                                           vae.learned_log_gamma), dtype=np.float64))
    reconstruction = float(np.mean(np.concatenate(rec))) if rec else float("nan")
    kl_mean = float(np.mean(kl)) if len(kl) else float("nan")
    return {
        "elbo": -(reconstruction + kl_mean),
        "reconstruction": reconstruction,
        "kl": kl_mean,
        "loss": reconstruction + beta * kl_mean,
    }
