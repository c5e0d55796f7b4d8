"""The feature networks (the Keras InceptionV3s and their weights) and the streamed feature
pipeline (:mod:`vaelab.metrics.feature_stats`); the 2015 graph has tests of its own."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.stand_in import build_stand_in_extractor
from vaelab.metrics import feature_stats
from vaelab.metrics import features
from vaelab.core.errors import VaelabError
from vaelab.metrics.feature_stats import compute_activations, compute_statistics
from vaelab.metrics.features import (FEATURE_DIMS, WEIGHTS_FILE, WEIGHTS_MD5, WEIGHTS_URL, build_feature_extractor, find_weights,
                             network_metadata, preprocess_keras)


def images(n: int, channels: int = 1, size: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def test_preprocess_tiles_grayscale_resizes_and_scales_to_inception_range():
    batch = images(3, channels=1, size=10)
    batch[0] = 0
    batch[1] = 255
    out = np.asarray(preprocess_keras(batch, 33))
    assert out.shape == (3, 33, 33, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[0], -1.0)
    np.testing.assert_allclose(out[1], 1.0)
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_preprocess_keeps_rgb_channels_and_is_bilinear():
    batch = np.zeros((1, 2, 2, 3), np.uint8)
    batch[0, :, :, 0] = 255  # red plane
    batch[0, 0, 0, 2] = 255  # one blue pixel
    out = np.asarray(preprocess_keras(batch, 4))
    np.testing.assert_allclose(out[0, :, :, 0], 1.0)
    np.testing.assert_allclose(out[0, :, :, 1], -1.0)
    blue = (out[0, :, :, 2] + 1) * 127.5
    # Half-pixel-centre bilinear upsampling of [[255, 0], [0, 0]] by 2: corner 255, then 0.75, 0.25 weights.
    np.testing.assert_allclose(blue[0], [255.0, 255 * 0.75, 255 * 0.25, 0.0], atol=1e-3)


def test_same_size_input_is_only_scaled():
    batch = images(2, channels=3, size=16)
    out = np.asarray(preprocess_keras(batch, 16))
    np.testing.assert_allclose(out, batch / 127.5 - 1.0, atol=1e-6)


def test_activations_stream_in_batches():
    extractor = build_stand_in_extractor(image_size=16, dims=8)
    batches = list(compute_activations(images(25), extractor, batch_size=10, progress=False))
    assert [b.shape for b in batches] == [(10, 8), (10, 8), (5, 8)]
    assert all(b.dtype == np.float32 for b in batches)


def test_generator_and_array_give_equal_statistics():
    extractor = build_stand_in_extractor(image_size=16, dims=8)
    x = images(70, seed=1)
    from_array = compute_statistics(x, extractor, batch_size=32, progress=False)
    from_generator = compute_statistics((x[i:i + 9] for i in range(0, 70, 9)), extractor, batch_size=20,
                                        progress=False)
    assert from_array.n == from_generator.n == 70
    np.testing.assert_allclose(from_generator.mu, from_array.mu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(from_generator.sigma, from_array.sigma, rtol=1e-5, atol=1e-7)
    assert from_array.mu.dtype == np.float64 and from_array.sigma.shape == (8, 8)
    direct = np.concatenate(list(compute_activations(x, extractor, 70, progress=False))).astype(np.float64)
    np.testing.assert_allclose(from_array.mu, direct.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(from_array.sigma, np.cov(direct, rowvar=False), rtol=1e-5, atol=1e-7)


def test_statistics_merged_in_chunks_equal_one_go(monkeypatch):
    extractor = build_stand_in_extractor(image_size=16, dims=8)
    x = images(50, seed=6)
    whole = compute_statistics(x, extractor, batch_size=50, progress=False)
    monkeypatch.setattr(feature_stats, "STATS_CHUNK", 7)  # chunk boundaries inside and across batches
    chunked = compute_statistics(x, extractor, batch_size=12, progress=False)
    assert chunked.n == 50
    np.testing.assert_allclose(chunked.mu, whole.mu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(chunked.sigma, whole.sigma, rtol=1e-5, atol=1e-7)


def test_statistics_keep_a_seeded_sample_of_feature_vectors():
    extractor = build_stand_in_extractor(image_size=16, dims=8)
    x = images(60, seed=2)
    all_features = np.concatenate(list(compute_activations(x, extractor, 60, progress=False)))
    first = compute_statistics(x, extractor, 16, progress=False, keep=10, seed=3)
    second = compute_statistics(x, extractor, 16, progress=False, keep=10, seed=3)
    assert first.sample.shape == (10, 8)
    np.testing.assert_array_equal(first.sample, second.sample)
    # Every kept row is one of the feature vectors, no row twice.
    matches = [np.flatnonzero(np.all(np.isclose(all_features, row, atol=1e-6), axis=1)) for row in first.sample]
    assert all(len(m) >= 1 for m in matches)
    assert len({int(m[0]) for m in matches}) == 10
    with pytest.warns(UserWarning, match="4 samples < 8 feature dimensions"):
        assert compute_statistics(x[:4], extractor, 16, progress=False, keep=10).sample.shape == (4, 8)


def test_progress_bar_shows_images_and_rate(capsys):
    extractor = build_stand_in_extractor(image_size=16, dims=4)
    compute_statistics(images(40), extractor, batch_size=20, progress=True, description="ref")
    err = capsys.readouterr().err
    assert "ref" in err and "40/40" in err and "img/s" in err


def test_bad_inputs_are_clear_errors():
    extractor = build_stand_in_extractor(image_size=16, dims=4)
    with pytest.raises(VaelabError, match="uint8"):
        compute_statistics(images(4).astype(np.float32), extractor, progress=False)
    with pytest.raises(VaelabError, match="empty"):
        compute_statistics(np.zeros((0, 8, 8, 1), np.uint8), extractor, progress=False)
    with pytest.raises(VaelabError, match="at least 2"):
        compute_statistics(images(1), extractor, progress=False)
    # A bad batch deep inside a generator (read by tf.data's thread) keeps its own message.
    mixed = iter([images(4, size=12), images(4, size=12), images(4, size=10)])
    with pytest.raises(VaelabError, match="differ in shape"):
        compute_statistics(mixed, extractor, batch_size=3, progress=False)


def test_missing_imagenet_weights_offline_name_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    import keras

    calls = []

    def offline(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    def must_not_build(*args, **kwargs):
        raise AssertionError("the network was built before the weights were found")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(keras.applications, "InceptionV3", must_not_build)
    with pytest.raises(VaelabError) as error:
        build_feature_extractor("keras_imagenet", 299)
    message = str(error.value)
    assert os.path.join(str(tmp_path), "models", WEIGHTS_FILE) in message
    assert WEIGHTS_URL in message and "name resolution" in message and "\n" not in message
    # Keras' own cache, file name and pinned hash.
    assert calls == [(WEIGHTS_FILE, WEIGHTS_URL, {"cache_subdir": "models", "file_hash": WEIGHTS_MD5,
                                                  "cache_dir": str(tmp_path)})]


def test_cached_imagenet_weights_path_comes_from_keras_cache(monkeypatch, tmp_path):
    import keras

    cached = tmp_path / "models" / WEIGHTS_FILE
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", lambda fname, origin, **kw: str(cached))
    assert features.fetch_imagenet_weights() == str(cached)


@pytest.mark.parametrize("network, size, precision, message", [
    ("imagenet", 299, "float32", "fid.network = 'imagenet' is invalid; allowed: inception2015 | keras_imagenet | random"),
    ("random", 64, "float32", "fid.image_size = 64 is invalid; allowed: an integer >= 75"),
    ("random", 75, "float16", "fid.precision = 'float16' is invalid; allowed: float32 | bfloat16"),
])
def test_bad_settings_are_one_exact_message(network, size, precision, message):
    with pytest.raises(VaelabError) as error:
        build_feature_extractor(network, size, precision=precision)
    assert str(error.value) == message


def test_metadata_names_network_weights_preprocessing_precision_and_size(monkeypatch, tmp_path):
    import keras

    assert network_metadata(find_weights("random", 42), 75, "bfloat16") == {
        "feature_network": "random", "feature_weights": "he-normal(seed=42)",
        "fid_preprocessing": "tf2-resize-bilinear-75 (half_pixel_centers=True), x/127.5-1",
        "fid_precision": "bfloat16", "fid_image_size": 75, "fid_feature_dims": 2048}
    monkeypatch.setattr(keras.utils, "get_file", lambda fname, origin, **kw: str(tmp_path / fname))
    assert network_metadata(find_weights("keras_imagenet", 42), 299, "float32")["feature_weights"] == (
        f"{WEIGHTS_FILE} md5:{WEIGHTS_MD5}")


@pytest.fixture(scope="module")
def inception_none_75():
    return build_feature_extractor("random", 75, seed=42)


def test_random_inception_at_75_px_end_to_end(inception_none_75):
    extractor = inception_none_75
    assert extractor.metadata == network_metadata(find_weights("random", 42), 75, "float32")
    x = images(12, channels=1, size=28, seed=4)
    feats = np.concatenate(list(compute_activations(x, extractor, batch_size=6, progress=False)))
    assert feats.shape == (12, FEATURE_DIMS) and np.all(np.isfinite(feats))
    # He-scaled random weights keep features of order 1 (not the ~1e-4 of Glorot through 94 layers).
    assert 0.01 < float(feats.mean()) < 10.0 and float(feats.std(axis=0).mean()) > 1e-3


def test_random_weights_are_deterministic_for_a_seed(inception_none_75):
    import keras

    x = images(4, channels=3, size=32, seed=5)
    first = np.concatenate(list(compute_activations(x, inception_none_75, 4, progress=False)))
    keras.utils.set_random_seed(123)  # the global RNG's state must not matter
    again = build_feature_extractor("random", 75, seed=42)
    other = build_feature_extractor("random", 75, seed=43)
    np.testing.assert_array_equal(np.concatenate(list(compute_activations(x, again, 4, progress=False))), first)
    # Another seed: other weights (compared directly; a forward pass costs a trace).
    first_conv = lambda e: next(np.asarray(l.kernel) for l in e.model.layers if isinstance(l, keras.layers.Conv2D))  # noqa: E731,E741
    assert not np.allclose(first_conv(again), first_conv(other))
    np.testing.assert_array_equal(first_conv(again), first_conv(inception_none_75))
