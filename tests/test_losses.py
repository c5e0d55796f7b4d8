"""Exact values of the loss terms, and the ELBO estimate's bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaelab.model import losses
from vaelab.model.elbo import elbo_terms
from vaelab.model.losses import GAUSSIAN_SIGMA, bernoulli_nll_per_image, gaussian_nll_per_image, kl_per_image


def test_kl_of_the_prior_is_exactly_zero():
    kl = np.asarray(kl_per_image(np.zeros((3, 5), np.float32), np.zeros((3, 5), np.float32)))
    assert kl.shape == (3,)
    assert np.all(kl == 0.0)


def test_kl_known_values():
    # 0.5 * (exp(lv) + m^2 - 1 - lv) per dimension, summed.
    mean = np.array([[1.0, 0.0], [2.0, -1.0]], np.float32)
    log_var = np.array([[0.0, math.log(2.0)], [0.0, 0.0]], np.float32)
    expected = [0.5 + 0.5 * (2.0 - 1.0 - math.log(2.0)), 0.5 * 4.0 + 0.5 * 1.0]
    np.testing.assert_allclose(np.asarray(kl_per_image(mean, log_var)), expected, rtol=1e-6)


def test_bernoulli_nll_known_values():
    x = np.zeros((2, 4, 4, 1), np.float32)
    x[1] = 1.0
    # Logit 0 is p = 1/2: log 2 nats per pixel, whatever the pixel.
    np.testing.assert_allclose(np.asarray(bernoulli_nll_per_image(x, np.zeros_like(x))), [16 * math.log(2.0)] * 2,
                               rtol=1e-6)
    # Logit l for a white pixel costs log(1 + e^-l); for a black one log(1 + e^l).
    logits = np.full_like(x, 3.0)
    np.testing.assert_allclose(np.asarray(bernoulli_nll_per_image(x, logits)),
                               [16 * math.log1p(math.exp(3.0)), 16 * math.log1p(math.exp(-3.0))], rtol=1e-6)
    # Huge logits stay finite (the stable form never exponentiates a positive number).
    big = np.asarray(bernoulli_nll_per_image(x, np.full_like(x, 1e4)))
    assert np.isfinite(big).all() and big[1] == 0.0 and big[0] == pytest.approx(16e4)


def test_bernoulli_nll_matches_the_definition_for_grey_pixels():
    rng = np.random.default_rng(0)
    x = rng.random((3, 5, 5, 3)).astype(np.float32)
    logits = rng.normal(0, 3, x.shape).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = -(x * np.log(p) + (1 - x) * np.log1p(-p)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(bernoulli_nll_per_image(x, logits)), expected, rtol=1e-5)


def test_gaussian_nll_known_values():
    x = np.full((2, 3, 3, 3), 0.5, np.float32)
    constant = 27 * (math.log(GAUSSIAN_SIGMA) + 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(np.asarray(gaussian_nll_per_image(x, x)), [constant] * 2, rtol=1e-6)
    mean = x + np.float32(0.1)
    expected = constant + 27 * 0.01 / (2 * GAUSSIAN_SIGMA**2)
    np.testing.assert_allclose(np.asarray(gaussian_nll_per_image(x, mean)), [expected] * 2, rtol=1e-5)


def test_learned_gamma_nll_is_dai_and_wipfs_per_pixel_formula():
    """((x - mu) / gamma)^2 / 2 + log gamma + log(2 pi) / 2 per pixel, gamma = exp(log_gamma); at
    log_gamma = log(0.1) it equals the fixed gamma = 0.1 loss."""
    rng = np.random.default_rng(2)
    x = rng.random((2, 3, 3, 1)).astype(np.float32)
    mean = rng.random(x.shape).astype(np.float32)
    for log_gamma in (0.0, math.log(0.5), -2.0):
        gamma = math.exp(log_gamma)
        per_pixel = ((x.astype(np.float64) - mean) / gamma) ** 2 / 2 + log_gamma + 0.5 * math.log(2 * math.pi)
        got = gaussian_nll_per_image(x, mean, log_gamma=np.float32(log_gamma))
        np.testing.assert_allclose(np.asarray(got), per_pixel.sum(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gaussian_nll_per_image(x, mean, log_gamma=np.float32(math.log(0.1)))),
                               np.asarray(gaussian_nll_per_image(x, mean, 0.1)), rtol=1e-5)


def test_elbo_terms_exact_on_set_weights():
    """Encoder mean 0 and variance 4 for every image (KL 0.5 * 2 * (4 - 1 - ln 4) = 3 - ln 4 nats);
    a decoder whose every logit is z_0 (relu(z_0) - relu(-z_0)), so the reconstruction term,
    sum over pixels of softplus(z_0) - x z_0 at z = 2 eps, checks the noise's scale and seed."""
    from vaelab.model.networks import ArchConfig, TrainedVae, build_decoder, build_encoder

    config = ArchConfig((6, 6, 1), latent_dim=2, hidden_dim=8, architecture="mlp", likelihood="bernoulli")
    encoder, decoder = build_encoder(config), build_decoder(config)
    for layer in encoder.layers:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    kernel, bias = encoder.get_layer("z_log_var").get_weights()
    encoder.get_layer("z_log_var").set_weights([kernel, np.full_like(bias, math.log(4.0))])
    hidden = np.zeros((2, 8), np.float32)
    hidden[0, 0], hidden[0, 1] = 1.0, -1.0
    decoder.get_layer("hidden").set_weights([hidden, np.zeros(8, np.float32)])
    pixels = np.zeros((8, 36), np.float32)
    pixels[0], pixels[1] = 1.0, -1.0
    decoder.get_layer("pixels").set_weights([pixels, np.zeros(36, np.float32)])
    images = np.random.default_rng(1).integers(0, 256, (10, 6, 6, 1), dtype=np.uint8)
    terms = elbo_terms(TrainedVae(encoder, decoder, config), images, seed=3, beta=2.0, batch_size=4)
    z0 = 2.0 * np.random.default_rng(3).standard_normal((10, 2)).astype(np.float32)[:, :1]
    x = images.reshape(10, 36) / 255.0
    expected = np.mean(np.sum(np.logaddexp(0.0, z0) - x * z0, axis=1))
    assert terms["kl"] == pytest.approx(3.0 - math.log(4.0), rel=1e-6)
    assert terms["reconstruction"] == pytest.approx(expected, rel=1e-5)
    assert terms["elbo"] == pytest.approx(-(expected + 3.0 - math.log(4.0)), rel=1e-5)
    assert terms["loss"] == pytest.approx(expected + 2.0 * (3.0 - math.log(4.0)), rel=1e-5)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="likelihood"):
        losses.reconstruction_nll_per_image("poisson", np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_terms_bookkeeping(likelihood):
    from vaelab.model.networks import ArchConfig, TrainedVae, build_decoder, build_encoder

    config = ArchConfig((6, 6, 1), latent_dim=2, hidden_dim=8, architecture="mlp", likelihood=likelihood)
    vae = TrainedVae(build_encoder(config), build_decoder(config), config)
    images = np.random.default_rng(1).integers(0, 256, (10, 6, 6, 1), dtype=np.uint8)
    terms = elbo_terms(vae, images, seed=3, beta=2.0, batch_size=4)
    assert terms["elbo"] == pytest.approx(-(terms["reconstruction"] + terms["kl"]))
    assert terms["loss"] == pytest.approx(terms["reconstruction"] + 2.0 * terms["kl"])
    assert terms["kl"] >= 0
    # The noise is drawn once for all images, so the batch size changes nothing but round-off.
    again = elbo_terms(vae, images, seed=3, beta=2.0, batch_size=10)
    assert again == pytest.approx(terms, rel=1e-5)
    assert elbo_terms(vae, images, seed=4)["reconstruction"] != terms["reconstruction"]
