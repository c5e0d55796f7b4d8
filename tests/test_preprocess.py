"""The preprocess stage: each canonical format to uint8 NHWC arrays, labels, class names, splits."""

from __future__ import annotations

import gzip
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import archive_factory
from tests.conftest import PROJECT_ROOT
from vaelab.data import images
from vaelab.data import preprocess
from vaelab.core.prepared import load_prepared
from vaelab.core.errors import VaelabError
from vaelab.data.params import DataParams
from vaelab.data.kinds import KINDS

MNIST_T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _resized(kind: str, image_size: int = 64, test_fraction: float = 0.2) -> DataParams:
    return DataParams(name=kind, kind=kind, image_size=image_size, test_fraction=test_fraction)


def prepare(kind: str, raw, ds: DataParams | None = None, seed: int = 0, workers: int | None = None):
    """The preprocess stage's work for registry kind ``kind`` (default settings unless ``ds``)."""
    return preprocess.prepare_dataset(KINDS[kind], ds or DataParams(name=kind, kind=kind), raw, seed, workers)


def _assert_colours_match_labels(data):
    """Every generated image is one flat colour per class: pixels must agree with labels."""
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        for image, label in zip(x, y):
            colour = archive_factory.CALTECH_COLOURS[data.class_names[label]]
            np.testing.assert_allclose(image.reshape(-1, 3).mean(axis=0), colour, atol=3)


# --------------------------------------------------------------------------- MNIST-like


@pytest.mark.parametrize("kind", ["mnist", "fashion_mnist"])
def test_idx_files_parse_exactly(tmp_path, kind):
    archive_factory.write_mnist_like(tmp_path, n_train=30, n_test=12, seed=3)
    expected = archive_factory.mnist_like_arrays(30, 12, seed=3)
    data = prepare(kind, tmp_path)
    assert data.x_train.shape == (30, 28, 28, 1) and data.x_test.shape == (12, 28, 28, 1)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.x_train[..., 0], expected["x_train"])
    np.testing.assert_array_equal(data.y_test, expected["y_test"])
    assert data.class_names == KINDS[kind].class_names


def test_real_mnist_test_set(shared_mnist):
    x = preprocess.read_idx(shared_mnist / "t10k-images-idx3-ubyte.gz", preprocess.IDX_IMAGES_MAGIC)
    y = preprocess.read_idx(shared_mnist / "t10k-labels-idx1-ubyte.gz", preprocess.IDX_LABELS_MAGIC)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == MNIST_T10K_COUNTS
    assert x.max() == 255 and x.min() == 0


def test_idx_bytes_reencodes_the_real_files_byte_for_byte(shared_mnist):
    for name, magic in (("t10k-images-idx3-ubyte.gz", preprocess.IDX_IMAGES_MAGIC),
                        ("t10k-labels-idx1-ubyte.gz", preprocess.IDX_LABELS_MAGIC)):
        raw = gzip.decompress((shared_mnist / name).read_bytes())
        assert preprocess.idx_bytes(preprocess.read_idx(shared_mnist / name, magic)) == raw


def test_idx_bytes_refuses_other_ranks():
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)"):
        preprocess.idx_bytes(np.zeros((2, 2), np.uint8))


def test_idx_damage_is_a_clear_error(tmp_path):
    files = archive_factory.write_mnist_like(tmp_path, n_train=10, n_test=10)
    images_gz, labels_gz = files[0], files[1]
    good = images_gz.read_bytes()

    images_gz.write_bytes(good[: len(good) // 2])
    with pytest.raises(VaelabError, match=rf"{images_gz.name} is truncated or corrupt.*download@mnist"):
        prepare("mnist", tmp_path)

    raw = gzip.decompress(good)
    images_gz.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(VaelabError, match=r"holds 7835 data bytes but its header \(10, 28, 28\) needs 7840"):
        prepare("mnist", tmp_path)

    images_gz.write_bytes(gzip.compress((2049).to_bytes(4, "big") + raw[4:]))
    with pytest.raises(VaelabError, match="magic number 2049, expected 2051"):
        prepare("mnist", tmp_path)

    images_gz.write_bytes(good)
    labels_gz.write_bytes(gzip.compress(preprocess.idx_bytes(np.zeros(9, np.uint8))))
    with pytest.raises(VaelabError, match="holds 10 images but .* 9 labels"):
        prepare("mnist", tmp_path)

    labels_gz.unlink()
    with pytest.raises(VaelabError, match=r"train-labels-idx1-ubyte.gz not found; run `dvc repro download@mnist`"):
        prepare("mnist", tmp_path)


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar10_binary_parses_exactly(tmp_path):
    names = tuple(f"class{i}" for i in range(10))
    archive_factory.write_cifar10(tmp_path, n_per_batch=3, n_test=5, seed=1, class_names=names)
    expected = archive_factory.cifar10_arrays(3, 5, seed=1)
    data = prepare("cifar10", tmp_path)
    assert data.x_train.shape == (15, 32, 32, 3) and data.x_test.shape == (5, 32, 32, 3)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(data, key), expected[key])
    assert data.class_names == names


def _rewrite_tar(src, dst, keep=lambda name: True, extra=()):
    with tarfile.open(src, "r:gz") as old, tarfile.open(dst, "w:gz") as new:
        for member in old.getmembers():
            if keep(member.name):
                new.addfile(member, old.extractfile(member) if member.isfile() else None)
        for info, data in extra:
            new.addfile(info, io.BytesIO(data) if data is not None else None)


def test_cifar10_meta_fallback_and_errors(tmp_path):
    good = archive_factory.write_cifar10(tmp_path / "good")[0]
    no_meta = tmp_path / "no_meta" / preprocess.CIFAR10_ARCHIVE
    no_meta.parent.mkdir()
    _rewrite_tar(good, no_meta, keep=lambda n: "meta" not in n)
    assert prepare("cifar10", no_meta.parent).class_names == KINDS["cifar10"].class_names

    missing = tmp_path / "missing" / preprocess.CIFAR10_ARCHIVE
    missing.parent.mkdir()
    _rewrite_tar(good, missing, keep=lambda n: "data_batch_3" not in n)
    with pytest.raises(VaelabError, match="lacks data_batch_3.bin"):
        prepare("cifar10", missing.parent)

    link = tarfile.TarInfo("cifar-10-batches-bin/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    evil = tmp_path / "evil" / preprocess.CIFAR10_ARCHIVE
    evil.parent.mkdir()
    _rewrite_tar(good, evil, extra=[(link, None)])
    with pytest.raises(VaelabError, match="'cifar-10-batches-bin/evil', a symlink"):
        prepare("cifar10", evil.parent)

    truncated = tmp_path / "truncated" / preprocess.CIFAR10_ARCHIVE
    truncated.parent.mkdir()
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(VaelabError, match=r"truncated or corrupt.*`dvc repro download@cifar10`"):
        prepare("cifar10", truncated.parent)
    with pytest.raises(VaelabError, match="not found"):
        prepare("cifar10", tmp_path)


# --------------------------------------------------------------------------- Caltech101


@pytest.fixture
def caltech_zip(tmp_path):
    raw = tmp_path / "raw"
    archive_factory.write_caltech101(raw, per_class=5, seed=0)
    return raw


def test_caltech101_zip(caltech_zip):
    # (The generated inner tarball is not the canonical one: the zip is trusted by its own hash,
    # checked at download, and the tarball inside it is not checked again.)
    data = prepare("caltech101", caltech_zip, _resized("caltech101"))
    assert data.class_names == ("Faces_easy", "accordion", "airplanes", "yin_yang")  # no BACKGROUND_Google
    assert data.x_train.shape == (16, 64, 64, 3) and data.x_test.shape == (4, 64, 64, 3)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    # Stratified: 5 per class, test_fraction 0.2 -> exactly one test image per class.
    assert np.bincount(data.y_test).tolist() == [1, 1, 1, 1]
    assert np.bincount(data.y_train).tolist() == [4, 4, 4, 4]
    _assert_colours_match_labels(data)  # grayscale JPEGs became 3 equal channels


def test_caltech101_split_is_fixed_by_seed(caltech_zip):
    ds = _resized("caltech101", image_size=16, test_fraction=0.4)
    a = prepare("caltech101", caltech_zip, ds, seed=1, workers=1)
    b = prepare("caltech101", caltech_zip, ds, seed=1, workers=3)
    c = prepare("caltech101", caltech_zip, ds, seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert np.bincount(a.y_test).tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize("size", [92, 128])
def test_caltech101_other_sizes(tmp_path, size):
    archive_factory.write_caltech101(tmp_path, per_class=2, wrap_zip=False)
    data = prepare("caltech101", tmp_path, _resized("caltech101", size, 0.5))
    assert data.x_train.shape == (4, size, size, 3) and data.x_test.shape == (4, size, size, 3)
    _assert_colours_match_labels(data)


def test_caltech101_hostile_zip_and_missing_archive(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "caltech-101.zip", "w") as archive:
        archive.writestr("caltech-101/../../evil.sh", b"rm -rf /")
    with pytest.raises(VaelabError, match=r"'caltech-101/\.\./\.\./evil.sh' with '\.\.'"):
        prepare("caltech101", raw, _resized("caltech101"))
    (raw / "caltech-101.zip").unlink()
    with pytest.raises(VaelabError, match="holds neither caltech-101.zip nor 101_ObjectCategories.tar.gz"):
        prepare("caltech101", raw, _resized("caltech101"))


def test_caltech101_extracted_folder_reads_as_its_archive_and_as_an_image_folder(tmp_path):
    # The download stage keeps 101_ObjectCategories/ (without BACKGROUND_Google) when a mirror holds
    # the extracted folder: the same images as the archives, the same arrays as image_folder's.
    ds = _resized("caltech101", image_size=24, test_fraction=0.4)
    folder = archive_factory.write_caltech101_folder(tmp_path / "raw", per_class=5, seed=3)
    from_folder = prepare("caltech101", tmp_path / "raw", ds, seed=5)  # BACKGROUND_Google dropped
    assert from_folder.class_names == tuple(sorted(archive_factory.CALTECH_COLOURS))
    shutil.rmtree(folder / archive_factory.BACKGROUND)
    as_images = prepare("image_folder", folder, ds, seed=5)
    archive_factory.write_caltech101(tmp_path / "zip", per_class=5, seed=3)
    from_zip = prepare("caltech101", tmp_path / "zip", ds, seed=5)
    for other in (as_images, from_zip):
        assert other.class_names == from_folder.class_names
        for field in ("x_train", "y_train", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(other, field), getattr(from_folder, field), err_msg=field)
    assert from_folder.x_train.shape == (12, 24, 24, 3) and np.bincount(from_folder.y_test).tolist() == [2] * 4
    _assert_colours_match_labels(from_folder)


def test_caltech101_rows_follow_the_paths_not_the_archive_s_order(tmp_path):
    """A dataset's identity is its content: an archive storing the images in another order gives
    the same arrays as the extracted folder (rows by class folder, then file, as folders are read)."""
    from vaelab.data.dataset_files import write_caltech101_archive, write_file

    rng = np.random.default_rng(0)
    images = [(name, f"image_{i:04d}.png", archive_factory.encode_image(
        np.full((20, 30, 3), rng.integers(0, 256, 3), np.uint8), "png"))  # a colour of its own each
        for name in ("b_class", "a_class", "a-b") for i in (3, 1, 2, 4)]
    write_caltech101_archive(tmp_path / "tar", images[::-1], wrap_zip=False)
    for name, file_name, data in images:
        write_file(tmp_path / "folder" / "101_ObjectCategories" / name / file_name, data)
    ds = _resized("caltech101", image_size=8, test_fraction=0.25)
    from_tar, from_folder = prepare("caltech101", tmp_path / "tar", ds, seed=1), prepare("caltech101", tmp_path / "folder", ds, seed=1)
    assert from_tar.class_names == from_folder.class_names == ("a-b", "a_class", "b_class")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(from_tar, field), getattr(from_folder, field), err_msg=field)
    assert len(np.unique(from_tar.x_train.reshape(9, -1), axis=0)) == 9  # the test can see an order


# --------------------------------------------------------------------------- image folders


def test_image_folder_all_formats(tmp_path):
    folder = archive_factory.write_image_folder(tmp_path / "photos", per_class=5)
    (folder / "accordion" / "notes.txt").write_text("not an image")
    (folder / "accordion" / ".DS_Store").write_bytes(b"\0\0")
    data = prepare("image_folder", folder, _resized("image_folder", 32, 0.2))
    assert data.x_train.shape == (16, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
    assert data.class_names == tuple(sorted(archive_factory.CALTECH_COLOURS))
    _assert_colours_match_labels(data)


def _channels(kind: str, size: int, channels) -> DataParams:
    return DataParams(name=kind, kind=kind, image_size=size, test_fraction=0.25, channels=channels)


def _grey_folder(folder: Path) -> Path:
    """Two classes of grey images stored three ways: 'L' PNG, 'L' JPEG and RGB PNG with R = G = B."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("scan_a", "scan_b"):
        (folder / name).mkdir(parents=True)
        for i in range(4):
            grey = rng.integers(0, 256, (24, 30), dtype=np.uint8)
            if i % 3 == 0:
                Image.fromarray(grey).save(folder / name / f"{i}.png")
            elif i % 3 == 1:
                Image.fromarray(grey).save(folder / name / f"{i}.jpg", quality=95)
            else:
                Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / name / f"{i}.png")
    return folder


def test_greyscale_stays_greyscale_with_channels_auto(tmp_path, caplog):
    folder = _grey_folder(tmp_path / "scans")
    with caplog.at_level(logging.INFO, logger="vaelab"):
        grey = prepare("image_folder", folder, _channels("image_folder", 16, "auto"))
    assert grey.x_train.shape == (6, 16, 16, 1) and grey.x_test.shape == (2, 16, 16, 1)
    assert "every image is greyscale, so the images keep 1 channel (data.channels: auto)" in caplog.text
    # The same images as 3 channels (data.channels: 3) are those grey values, tripled.
    rgb = prepare("image_folder", folder, _channels("image_folder", 16, 3))
    assert rgb.x_train.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(rgb.x_train, np.repeat(grey.x_train, 3, axis=-1))
    # One colour image makes the whole set colour.
    from PIL import Image

    Image.fromarray(np.full((20, 20, 3), (200, 40, 40), np.uint8)).save(folder / "scan_a" / "red.png")
    assert prepare("image_folder", folder, _channels("image_folder", 16, "auto")).x_train.shape[-1] == 3


def test_channels_1_turns_colour_into_luma(tmp_path):
    folder = archive_factory.write_image_folder(tmp_path / "photos", per_class=4)
    data = prepare("image_folder", folder, _channels("image_folder", 16, 1))
    assert data.x_train.shape[-1] == 1 and data.x_train.dtype == np.uint8
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        for image, label in zip(x, y):
            r, g, b = archive_factory.CALTECH_COLOURS[data.class_names[label]]
            # Pillow's ITU-R 601-2 luma: L = R * 299/1000 + G * 587/1000 + B * 114/1000
            assert abs(float(image.mean()) - (r * 0.299 + g * 0.587 + b * 0.114)) < 2


def test_real_digits_as_an_image_folder_are_the_idx_digits_in_one_channel(tmp_path, shared_mnist):
    from PIL import Image

    x = preprocess.read_idx(shared_mnist / "t10k-images-idx3-ubyte.gz", preprocess.IDX_IMAGES_MAGIC)[:60]
    y = preprocess.read_idx(shared_mnist / "t10k-labels-idx1-ubyte.gz", preprocess.IDX_LABELS_MAGIC)[:60]
    folder = tmp_path / "digits"
    for i, (image, label) in enumerate(zip(x, y)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i:03d}.png")
    data = prepare("image_folder", folder, _channels("image_folder", 28, "auto"), seed=0)
    assert data.x_train.shape[1:] == (28, 28, 1)
    # 28 px in, 28 px out: the exact digits (as a set: the split reorders them).
    prepared = {img.tobytes() for img in np.concatenate([data.x_train, data.x_test])[..., 0]}
    assert prepared == {img.tobytes() for img in x}


def test_image_folder_skips_unreadable_images_and_counts(tmp_path, caplog):
    folder = archive_factory.write_image_folder(tmp_path / "photos", per_class=3)
    (folder / "accordion" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    bmp = sorted(folder.rglob("*.bmp"))[0]
    (bmp.parent / "cut.bmp").write_bytes(bmp.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        data = prepare("image_folder", folder, _resized("image_folder", 16, 0.34))
    assert len(data.x_train) + len(data.x_test) == 12
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("broken.jpg" in w for w in warnings) and any("cut.bmp" in w for w in warnings)
    assert any("skipped 2 unreadable image(s) of 14" in w for w in warnings)
    _assert_colours_match_labels(data)


def test_image_folder_with_nothing_readable(tmp_path):
    folder = tmp_path / "photos"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "a.png").write_bytes(b"garbage")
    (folder / "cats" / "b.jpg").write_bytes(b"")
    with pytest.raises(VaelabError, match="none of the 2 image files could be read"):
        prepare("image_folder", folder, _resized("image_folder"))
    (folder / "cats" / "a.png").unlink()
    (folder / "cats" / "b.jpg").unlink()
    with pytest.raises(VaelabError, match="holds no image files"):
        prepare("image_folder", folder, _resized("image_folder"))


def test_image_folder_too_small_for_a_split(tmp_path):
    folder = archive_factory.write_image_folder(tmp_path / "photos", per_class=1)
    with pytest.raises(VaelabError, match="give 4 train and 0 test images with test_fraction=0.2"):
        prepare("image_folder", folder, _resized("image_folder"))


# --------------------------------------------------------------------------- images.py


def _encode(array, fmt="png"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("transpose", [False, True])
def test_decode_square_crops_the_centre(transpose):
    bands = np.zeros((30, 90, 3), np.uint8)
    bands[:, :30] = (255, 0, 0)
    bands[:, 30:60] = (0, 255, 0)
    bands[:, 60:] = (0, 0, 255)
    if transpose:
        bands = bands.transpose(1, 0, 2).copy()
    out = images.decode_square(_encode(bands), 12)
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.broadcast_to(np.array([0, 255, 0], np.uint8), (12, 12, 3)))


def test_decode_square_modes_and_failures():
    gray = np.full((20, 24), 77, np.uint8)
    np.testing.assert_array_equal(images.decode_square(_encode(gray), 8), np.full((8, 8, 3), 77, np.uint8))
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    assert images.decode_square(_encode(rgba), 4)[0, 0].tolist() == [200, 0, 0]
    # Antialiasing: a 1-px checkerboard averages to grey instead of aliasing to black or white.
    checker = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    small = images.decode_square(_encode(checker), 8)
    assert np.abs(small.astype(int) - 128).max() <= 3
    with pytest.raises(images.UnreadableImage):
        images.decode_square(b"definitely not an image", 8)


def test_permute_rows_inplace_matches_fancy_indexing():
    rng = np.random.default_rng(0)
    for n, k in ((1, 1), (7, 7), (50, 50), (50, 31), (50, 0)):
        array = rng.integers(0, 256, (n, 3, 2), dtype=np.uint8)
        order = rng.permutation(n)[:k]
        expected = array[order].copy()
        rest = set(np.setdiff1d(np.arange(n), order).tolist())
        original = array.copy()
        images.permute_rows_inplace(array, order)
        np.testing.assert_array_equal(array[:k], expected)
        assert {int(np.flatnonzero((original == row).all(axis=(1, 2)))[0]) for row in array[k:]} == rest
    with pytest.raises(ValueError):
        images.permute_rows_inplace(np.zeros((3, 1)), np.array([0, 0]))


def test_stratified_split():
    labels = np.repeat(np.arange(3), [10, 5, 1])
    train, test = images.stratified_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(16))
    assert np.bincount(labels[test], minlength=3).tolist() == [2, 1, 0]  # a singleton stays in train
    again = images.stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])


# --------------------------------------------------------------------------- the stage CLI


STAGE_DATASETS = {"mnist": {"data": {"kind": "mnist"}}, "cifar10": {"data": {"kind": "cifar10"}}}


def _stage(params, dataset, raw, out):
    env = {k: v for k, v in os.environ.items() if k != "VAELAB_SOURCES"}
    return subprocess.run([sys.executable, "-m", "stages.preprocess", "--dataset", dataset, "--raw", str(raw),
                           "--out", str(out), "--params", str(params)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_stage_cli_writes_prepared_file(tmp_path, write_params):
    raw = archive_factory.write_image_folder(tmp_path / "photos", per_class=5)
    out = tmp_path / "prepared" / "photos.npz"
    params = write_params(datasets={"photos": {"data": {"kind": "image_folder", "path": str(raw), "image_size": 16}}})
    result = _stage(params, "photos", raw, out)
    assert result.returncode == 0, result.stderr
    data = load_prepared(out)
    assert data.x_train.shape == (16, 16, 16, 3) and len(data.class_names) == 4
    assert [p.name for p in out.parent.iterdir()] == ["photos.npz"]


@pytest.mark.slow
@pytest.mark.parametrize("dataset, breakage, message", [
    ("nope", None, "error: unknown dataset 'nope': params.yaml defines ['cifar10', 'mnist']; add an entry under "
                   "'datasets:' or pick one of those"),
    ("mnist", "truncate", "error: {raw}/train-images-idx3-ubyte.gz is truncated or corrupt (Compressed file ended "
                          "before the end-of-stream marker was reached); delete it and re-run `dvc repro download@mnist`"),
    ("cifar10", None, "error: {raw}/cifar-10-binary.tar.gz not found; run `dvc repro download@cifar10` first"),
])
def test_stage_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, write_params, dataset, breakage, message):
    raw = tmp_path / "raw"
    files = archive_factory.write_mnist_like(raw, n_train=10, n_test=10)
    if breakage == "truncate":
        files[0].write_bytes(files[0].read_bytes()[:100])
    out = tmp_path / "prepared" / f"{dataset}.npz"
    result = _stage(write_params(datasets=STAGE_DATASETS), dataset, raw, out)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [message.format(raw=raw)] and "Traceback" not in result.stderr
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
