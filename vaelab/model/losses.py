"""The VAE loss: negative ELBO = reconstruction NLL + beta * KL(q(z|x) || N(0, I)), in nats.

Per-image values are sums over pixels (reconstruction) and latent dimensions (KL); what is
reported is their mean over images ("nats per image"). beta weights the KL term in the
training loss (beta-VAE, Higgins et al. 2017); the ELBO itself always has beta = 1.

The ``*_per_image`` functions take backend tensors (or numpy arrays) and use ``keras.ops``,
so the same code runs inside the compiled train step and in
:func:`vaelab.model.elbo.elbo_terms`, the test ELBO of a trained model.

Likelihoods (pixels x in [0, 1]):

* bernoulli: the decoder outputs logits l; -log p(x|z) = sum max(l, 0) - l*x + log(1 + e^-|l|)
  (sigmoid cross-entropy; for non-binary x it is the usual "continuous Bernoulli without its
  normaliser" used by the classic MNIST VAEs);
* gaussian: the decoder outputs the mean mu (a sigmoid, as in Dai & Wipf's code:
  :func:`vaelab.model.networks.build_decoder`) and the standard deviation is gamma, per pixel
  -log p(x|z) = ((x - mu) / gamma)^2 / 2 + log gamma + log(2 pi) / 2, summed. gamma is fixed
  (default :data:`GAUSSIAN_SIGMA` = 0.1, about 26 grey levels, which weights reconstruction
  against KL like an MSE loss scaled by 50: with gamma = 1 the KL term dominates and the
  posterior collapses to the prior) or learned: Dai & Wipf (2019), "Diagnosing and enhancing
  VAE models", section 3, one scalar stored as log gamma and initialised to 0. A learned gamma
  shrinks as the reconstructions improve, which sharpens them, and its log enters the ELBO
  per pixel: a Gaussian test ELBO is a density on [0, 1]^D, not a probability of 8-bit pixels,
  and compares neither with the Bernoulli one nor across gammas as a sample-quality measure.
"""

from __future__ import annotations

import math

GAUSSIAN_SIGMA = 0.1
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def bernoulli_nll_per_image(x, logits):
    """Sigmoid cross-entropy summed over pixels: x, logits (N, H, W, C) -> (N,) nats."""
    from keras import ops

    logits = ops.cast(logits, "float32")
    x = ops.cast(x, "float32")
    per_pixel = ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(ops.reshape(per_pixel, (ops.shape(per_pixel)[0], -1)), axis=1)


def gaussian_nll_per_image(x, mean, gamma: float = GAUSSIAN_SIGMA, log_gamma=None):
    """Gaussian NLL summed over pixels: (N, H, W, C) -> (N,) nats, with the standard deviation
    ``gamma`` fixed, or ``exp(log_gamma)`` when ``log_gamma`` (a scalar tensor: learned) is given."""
    from keras import ops

    mean = ops.cast(mean, "float32")
    x = ops.cast(x, "float32")
    # Pixels per image from the static image shape: the batch dimension may be unknown while
    # tracing (a short last validation batch), and a reshape to (batch, -1) would then lose it.
    num_pixels = math.prod(int(d) for d in mean.shape[1:])
    if log_gamma is None:
        flat = ops.reshape(ops.square(x - mean), (-1, num_pixels))
        return ops.sum(flat, axis=1) / (2.0 * gamma * gamma) + num_pixels * (math.log(gamma) + _HALF_LOG_2PI)
    log_gamma = ops.cast(log_gamma, "float32")
    flat = ops.reshape(ops.square((x - mean) * ops.exp(-log_gamma)), (-1, num_pixels))
    return ops.sum(flat, axis=1) / 2.0 + num_pixels * (log_gamma + _HALF_LOG_2PI)


def reconstruction_nll_per_image(likelihood: str, x, outputs, gamma: float | str = GAUSSIAN_SIGMA, log_gamma=None):
    """-log p(x|z) per image (N,) for the decoder ``outputs`` under ``likelihood`` (gaussian:
    ``gamma`` fixed, or learned when it is "learned" and ``log_gamma`` is given)."""
    if likelihood == "bernoulli":
        return bernoulli_nll_per_image(x, outputs)
    if likelihood == "gaussian":
        if gamma == "learned":
            return gaussian_nll_per_image(x, outputs, log_gamma=log_gamma)
        return gaussian_nll_per_image(x, outputs, float(gamma))
    raise ValueError(f"unknown likelihood {likelihood!r}")


def kl_per_image(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) in closed form, summed over latent dims: (N, L) -> (N,).

    0.5 * sum(exp(log_var) + mean^2 - 1 - log_var) (Kingma & Welling 2014, appendix B); exactly 0
    at mean = 0, log_var = 0.
    """
    from keras import ops

    mean = ops.cast(mean, "float32")
    log_var = ops.cast(log_var, "float32")
    return 0.5 * ops.sum(ops.exp(log_var) + ops.square(mean) - 1.0 - log_var, axis=1)
