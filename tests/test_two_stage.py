"""The Two-Stage VAE sampler (Dai & Wipf 2019, section 4): shapes, determinism, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.core.errors import VaelabError
from vaelab.model.two_stage import (TwoStageParams, build_networks, fit_two_stage, load_two_stage, sample_two_stage,
                                    save_two_stage)


def posteriors(n: int = 256, latent_dim: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Codes far from N(0, I): two clusters, small posterior variances."""
    rng = np.random.default_rng(seed)
    means = (rng.standard_normal((n, latent_dim)) * 0.3 + np.where(rng.random((n, 1)) < 0.5, -2.0, 2.0))
    return means.astype(np.float32), np.full((n, latent_dim), -4.0, np.float32)


def test_networks_have_the_papers_shape():
    encoder, decoder = build_networks(latent_dim=5, width=32)
    dense = [layer for layer in decoder.layers if layer.name.startswith("decoder_fc")]
    assert [layer.units for layer in dense] == [32, 32, 32]
    assert decoder.get_layer("decoder_skip").output.shape[-1] == 32 + 5  # the input concatenated
    assert [tuple(o.shape[1:]) for o in encoder.outputs] == [(5,), (5,)] and decoder.output.shape[1:] == (5,)


def test_same_seed_same_sampler_and_samples(tmp_path):
    means, log_vars = posteriors()
    params = TwoStageParams(epochs=2, width=16)
    first = fit_two_stage(means, log_vars, params, seed=3, batch_size=64)
    second = fit_two_stage(means, log_vars, params, seed=3, batch_size=64)
    z = sample_two_stage(first, 100, seed=5)
    assert z.shape == (100, 3) and z.dtype == np.float32 and np.all(np.isfinite(z))
    np.testing.assert_array_equal(z, sample_two_stage(second, 100, seed=5))
    assert not np.array_equal(z, sample_two_stage(first, 100, seed=6))
    other = fit_two_stage(means, log_vars, params, seed=4, batch_size=64)  # the fit's seed is used
    assert not np.array_equal(z, sample_two_stage(other, 100, seed=5))
    assert np.isfinite(first.log_gamma) and first.log_gamma != 0.0  # learned, from log gamma_z = 0
    # z = decoder(u) + gamma_z * noise, u and noise drawn in that order by numpy from the seed;
    # the result does not depend on the decoding batch.
    rng = np.random.default_rng(5)
    u, noise = (rng.standard_normal((100, 3)).astype(np.float32) for _ in range(2))
    expected = np.asarray(first.decoder(u, training=False)) + np.float32(np.exp(first.log_gamma)) * noise
    np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sample_two_stage(first, 100, seed=5, batch_size=7), z)
    assert sample_two_stage(first, 0, seed=5).shape == (0, 3)
    save_two_stage(first, tmp_path / "mnist.two_stage")
    loaded = load_two_stage(tmp_path / "mnist.two_stage")
    assert loaded.log_gamma == first.log_gamma
    np.testing.assert_array_equal(sample_two_stage(loaded, 100, seed=5), z)


def test_bad_inputs_are_one_clear_error(tmp_path):
    with pytest.raises(VaelabError, match="cannot train the two-stage sampler"):
        fit_two_stage(np.zeros((1, 2)), np.zeros((1, 2)), TwoStageParams(epochs=1, width=4), seed=0, batch_size=4)
    with pytest.raises(VaelabError, match="missing or damaged"):
        load_two_stage(tmp_path / "absent")
    nan_codes = np.zeros((8, 2), np.float32)
    nan_codes[3, 1] = np.nan
    with pytest.raises(VaelabError, match="^1 of 8 encoder posteriors hold non-finite values: the first stage diverged"):
        fit_two_stage(nan_codes, np.zeros((8, 2)), TwoStageParams(epochs=1, width=4), seed=0, batch_size=4)


def test_codes_of_a_diverged_first_stage_are_named_when_stage_two_fails():
    """The diverged Caltech101 run's failure: log-variances of 40 (sd e^20) overflow stage two's
    loss; the message gives the codes' KL, 0.5 * 4 * (e^40 - 41) = 4.71e17 nats, and their sd."""
    means, log_vars = np.zeros((64, 4), np.float32), np.full((64, 4), 40.0, np.float32)
    with pytest.raises(VaelabError) as error:
        fit_two_stage(means, log_vars, TwoStageParams(epochs=1, width=8), seed=0, batch_size=32)
    assert str(error.value) == (
        "the two-stage sampler's loss became nan on first-stage codes of mean KL 4.71e+17 nats per image "
        "(posterior sd up to 4.85e+08): if that is more than the image holds (train's warning line), re-train "
        "the first stage; else lower two_stage's learning_rate or width in params.yaml")
