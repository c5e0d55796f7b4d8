"""Architectures for every image geometry, the ArchConfig contract, and the public model API."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.core.errors import VaelabError
from vaelab.model.networks import (ArchConfig, TrainedVae, arch_config, build_decoder, build_encoder, decode_uint8, decoder_mean, encode,
                           encode_mean, reconstruct_uint8, sample_prior, to_uint8)
from vaelab.model.outputs import load_vae, save_vae
from tests.conftest import tiny_params
from vaelab.params import parse_params

GEOMETRIES = [(28, 28, 1), (32, 32, 3), (64, 64, 3), (92, 92, 3), (128, 128, 3)]


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("shape", GEOMETRIES, ids=lambda s: "x".join(map(str, s)))
def test_shapes_for_every_geometry(shape, architecture):
    config = ArchConfig(shape, latent_dim=3, hidden_dim=8, architecture=architecture, filters=(4, 4, 4))
    encoder, decoder = build_encoder(config), build_decoder(config)
    images = np.zeros((2, *shape), np.float32)
    mean, log_var = encoder(images)
    assert tuple(mean.shape) == (2, 3) and tuple(log_var.shape) == (2, 3)
    assert tuple(decoder(np.zeros((2, 3), np.float32)).shape) == (2, *shape)


def test_odd_sizes_crop_back_and_hidden_dim_is_used_by_conv():
    config = ArchConfig((92, 92, 3), latent_dim=2, hidden_dim=7, architecture="conv", filters=(4, 8, 16))
    assert config.bottleneck_shape == (12, 12, 16)  # 92 -> 46 -> 23 -> 12
    decoder = build_decoder(config)
    assert decoder.get_layer("crop").output.shape[1:] == (92, 92, 3)
    assert build_encoder(config).get_layer("hidden").units == 7
    assert decoder.get_layer("hidden").units == 7


def test_config_json_round_trip_and_from_params():
    params = parse_params(tiny_params(
        latent_dim=4, datasets={"c": {"data": {"kind": "caltech101", "image_size": 92},
                                      "model": {"architecture": "conv", "likelihood": "gaussian"}}},
        conv={"dropout": 0.25}))
    config = arch_config(params.dataset("c").model, (92, 92, 3))
    assert config == ArchConfig((92, 92, 3), 4, 16, "conv", (8, 16), 0.25, "gaussian")
    assert ArchConfig.from_json(config.to_json()) == config


def test_an_image_shape_the_models_cannot_take_is_refused():
    # The settings themselves are checked once, with params.yaml (tests/test_params.py); the
    # shape comes from the prepared file.
    with pytest.raises(VaelabError, match="not \\(H, W, 1\\|3\\)"):
        ArchConfig(image_shape=(28, 28, 2), latent_dim=2, hidden_dim=8)


@pytest.mark.parametrize("architecture, likelihood, shape", [
    ("mlp", "bernoulli", (12, 12, 1)),
    ("conv", "gaussian", (10, 10, 3)),
])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, architecture, likelihood, shape):
    config = ArchConfig(shape, latent_dim=2, hidden_dim=8, architecture=architecture, filters=(4, 8),
                        dropout=0.2 if architecture == "conv" else 0.0, likelihood=likelihood)
    vae = TrainedVae(build_encoder(config), build_decoder(config), config)
    save_vae(vae, tmp_path)
    loaded = load_vae(tmp_path)
    assert loaded.config == config
    images = np.random.default_rng(0).integers(0, 256, (5, *shape), dtype=np.uint8)
    z = sample_prior(2, 5, seed=0)
    np.testing.assert_array_equal(encode_mean(loaded, images), encode_mean(vae, images))
    np.testing.assert_array_equal(np.asarray(loaded.decoder(z)), np.asarray(vae.decoder(z)))
    np.testing.assert_array_equal(decode_uint8(loaded, z), decode_uint8(vae, z))
    np.testing.assert_array_equal(reconstruct_uint8(loaded, images), reconstruct_uint8(vae, images))


@pytest.mark.parametrize("architecture", ["mlp", "conv", "infogan"])
def test_a_gaussian_decoder_outputs_the_sigmoid_of_what_a_bernoulli_one_outputs(architecture):
    """Dai & Wipf's Gaussian mean is a sigmoid: with the same weights, the Gaussian decoder's
    output is the sigmoid of the Bernoulli decoder's logits, so it never leaves [0, 1]."""
    import keras

    z = 30.0 * sample_prior(2, 16, seed=0)  # far out, where a linear head would leave [0, 1]
    outputs = {}
    for likelihood in ("bernoulli", "gaussian"):
        config = ArchConfig((12, 12, 1), latent_dim=2, hidden_dim=8, architecture=architecture, filters=(4, 8),
                            likelihood=likelihood)
        keras.utils.set_random_seed(0)
        outputs[likelihood] = np.asarray(build_decoder(config)(z, training=False), np.float64)
    logits = outputs["bernoulli"]
    assert logits.min() < -0.5 and logits.max() > 0.5  # outside [0, 1] on both sides: something to squash
    np.testing.assert_allclose(outputs["gaussian"], decoder_mean("bernoulli", logits), rtol=1e-5, atol=1e-6)
    assert 0.0 <= outputs["gaussian"].min() and outputs["gaussian"].max() <= 1.0


def test_public_api_shapes_and_dtypes():
    config = ArchConfig((8, 8, 3), latent_dim=3, hidden_dim=8)
    vae = TrainedVae(build_encoder(config), build_decoder(config), config)
    images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 3), dtype=np.uint8)
    means = encode_mean(vae, images, batch_size=3)
    assert means.shape == (7, 3) and means.dtype == np.float32
    np.testing.assert_allclose(means, encode_mean(vae, images, batch_size=7), rtol=1e-5, atol=1e-6)
    decoded = decode_uint8(vae, sample_prior(3, 4, seed=1), batch_size=3)
    assert decoded.shape == (4, 8, 8, 3) and decoded.dtype == np.uint8
    assert reconstruct_uint8(vae, images).shape == images.shape
    with pytest.raises(VaelabError, match="do not fit"):
        encode_mean(vae, np.zeros((2, 9, 9, 3), np.uint8))


def test_sample_prior_is_seeded():
    a = sample_prior(4, 16, seed=5)
    assert a.shape == (16, 4) and a.dtype == np.float32
    np.testing.assert_array_equal(a, sample_prior(4, 16, seed=5))
    assert not np.array_equal(a, sample_prior(4, 16, seed=6))


def test_load_vae_names_missing_files(tmp_path):
    with pytest.raises(VaelabError, match="lacks encoder.keras"):
        load_vae(tmp_path)


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (64, 64, 3), (92, 92, 1), (128, 128, 3)])
def test_infogan_fits_every_prepared_size(shape):
    config = ArchConfig(shape, latent_dim=3, hidden_dim=8, architecture="infogan")
    encoder, decoder = build_encoder(config), build_decoder(config)
    assert decoder.output.shape[1:] == shape
    assert [layer.filters for layer in encoder.layers if layer.name.startswith("conv_")] == [64, 128]
    assert encoder.get_layer("hidden").units == 1024 and decoder.get_layer("hidden").units == 1024
    h = -(-shape[0] // 4)
    assert decoder.get_layer("unflatten").output.shape[1:] == (h, -(-shape[1] // 4), 128)
    assert sum(isinstance(layer, keras_layers().BatchNormalization) for layer in decoder.layers) == 3
    assert sum(isinstance(layer, keras_layers().BatchNormalization) for layer in encoder.layers) == 2


def keras_layers():
    import keras

    return keras.layers


def test_batch_norm_inference_path_is_what_the_saved_model_gives(tmp_path):
    """After training steps the batch norms' moving averages differ from a batch's statistics; the
    saved networks, loaded back, give the inference outputs (moving averages), which is what
    evaluate and plot compute with."""
    import keras

    from vaelab.training.vae import build_vae
    from vaelab.training.loop import TrainConfig

    config = ArchConfig((28, 28, 1), latent_dim=2, hidden_dim=8, architecture="infogan")
    train = TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, seed=0)
    keras.utils.set_random_seed(0)
    vae = build_vae(config, train)
    images = np.random.default_rng(0).integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
    x = images.astype(np.float32) / 255
    vae.fit(x, batch_size=16, epochs=2, verbose=0, shuffle=False)
    trained = TrainedVae(vae.encoder, vae.decoder, config)
    save_vae(trained, tmp_path)
    loaded = load_vae(tmp_path)
    inference = np.asarray(vae.encoder(x, training=False)[0])
    np.testing.assert_array_equal(encode_mean(loaded, images), encode_mean(trained, images))
    np.testing.assert_allclose(encode_mean(loaded, images), inference, rtol=1e-5, atol=1e-6)
    z = sample_prior(2, 8, seed=1)
    decoded = decode_uint8(loaded, z)
    np.testing.assert_array_equal(decoded, decode_uint8(trained, z))
    np.testing.assert_array_equal(decoded, to_uint8(decoder_mean("bernoulli", vae.decoder(z, training=False))))
    # Training moved every batch norm's moving mean off its initial zeros, and the saved copy holds them.
    for trained_net, loaded_net in ((vae.encoder, loaded.encoder), (vae.decoder, loaded.decoder)):
        norms = [layer for layer in trained_net.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms
        for layer in norms:
            moving = np.asarray(layer.moving_mean)
            assert np.abs(moving).max() > 1e-4, layer.name
            np.testing.assert_array_equal(np.asarray(loaded_net.get_layer(layer.name).moving_mean), moving)
    # Last, as a training-mode call also moves the moving averages: the two paths really differ.
    assert not np.array_equal(decoded, to_uint8(decoder_mean("bernoulli", vae.decoder(z, training=True))))
    batch_stats = np.asarray(vae.encoder(x, training=True)[0])
    assert not np.allclose(inference, batch_stats, atol=1e-4)


def test_infogan_standard_deviation_head_is_dai_and_wipf_softplus():
    """log_var = 2 log(1e-6 + softplus(raw)): at raw 0 the standard deviation is ln 2; large raw
    grows the standard deviation linearly (not exponentially); it never falls below 1e-6."""
    from vaelab.model.layers import SoftplusLogVariance

    raw = np.array([[0.0, 30.0, -40.0]], np.float32)
    log_var = np.asarray(SoftplusLogVariance()(raw), dtype=np.float64)
    expected = 2 * np.log(np.log1p(np.exp(raw.astype(np.float64))) + 1e-6)
    np.testing.assert_allclose(log_var, expected, rtol=1e-6)
    assert log_var[0, 0] == pytest.approx(2 * np.log(np.log(2) + 1e-6), rel=1e-6)
    assert np.exp(log_var[0, 1] / 2) == pytest.approx(30.0, rel=1e-5)
    assert log_var[0, 2] == pytest.approx(2 * np.log(1e-6), rel=1e-4)
    encoder = build_encoder(ArchConfig((28, 28, 1), latent_dim=3, hidden_dim=8, architecture="infogan"))
    assert isinstance(encoder.get_layer("z_log_var"), SoftplusLogVariance)
    conv = build_encoder(ArchConfig((28, 28, 1), latent_dim=3, hidden_dim=8, architecture="conv"))
    assert type(conv.get_layer("z_log_var")).__name__ == "Dense"  # the measured conv rows keep theirs


def test_a_saved_infogan_loads_in_a_fresh_process(tmp_path):
    """load_vae alone (as evaluate and plot call it) finds the encoder's own layer: no earlier
    import of the builders is needed to register it."""
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    config = ArchConfig((28, 28, 1), latent_dim=3, hidden_dim=8, architecture="infogan")
    trained = TrainedVae(build_encoder(config), build_decoder(config), config)
    save_vae(trained, tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    code = ("import sys, numpy as np; from vaelab.model.outputs import load_vae; from vaelab.model.networks import "
            "encode; m, v = encode(load_vae(sys.argv[1]), np.load(sys.argv[1] + '/images.npy')); "
            "np.save(sys.argv[1] + '/log_var.npy', v)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "log_var.npy"), encode(trained, images)[1])
