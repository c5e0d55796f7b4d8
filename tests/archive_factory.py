"""Write tiny datasets in the exact canonical file formats, for tests (no network).

File names, archive layouts and class names come from the registry, :mod:`vaelab.data.kinds`.

Every ``write_*`` function writes into ``folder`` (created if needed) and returns the paths
it wrote, which :func:`write_source_table` turns into a ``VAELAB_SOURCES`` table holding
their real checksums. Outputs are byte-for-byte deterministic for given arguments (fixed
gzip/tar/zip timestamps), so checksums are stable.

    files = write_mnist_like(mirror, n_train=96, n_test=48, seed=0)  # 4 idx .gz files
    table = write_source_table(tmp / "sources.json", {"mnist": files})
    env = {"VAELAB_DATA_MIRROR": str(mirror), "VAELAB_SOURCES": str(table)}

The ``*_arrays`` functions return the arrays the matching writer encodes, for exact checks.
:func:`regzip` and :func:`gunzip` write the same idx content in the other wrappings a user's
mirror may hold; :func:`write_caltech101_folder` writes Caltech101 as its extracted folder.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from PIL import Image

from vaelab.data.dataset_files import write_caltech101_archive, write_cifar10_dataset, write_file, write_idx_dataset
from vaelab.data.download import file_digest, local_source
from vaelab.data.kinds import CALTECH101_FOLDER, IDX_TEST, IDX_TRAIN, KINDS, save_source_table

MNIST_FILES = (*IDX_TRAIN, *IDX_TEST)
# Caltech-like classes and the flat colour every image of the class has (the grayscale class
# is stored as single-channel JPEGs), so a test can check labels against pixels.
CALTECH_COLOURS: dict[str, tuple[int, int, int]] = {
    "Faces_easy": (200, 40, 40),
    "accordion": (40, 200, 40),
    "airplanes": (40, 40, 200),
    "yin_yang": (128, 128, 128),  # grayscale JPEGs
}
GRAYSCALE_CLASS = "yin_yang"
BACKGROUND = KINDS["caltech101"].drop_classes[0]
IMAGE_FOLDER_FORMATS = ("jpg", "png", "bmp", "gif", "webp")


def file_checksum(path: str | Path, algorithm: str = "sha256") -> str:
    """``algorithm:hexdigest`` of a file."""
    return f"{algorithm}:{file_digest(path, algorithm)}"


# --------------------------------------------------------------------------- MNIST-like

def mnist_like_arrays(n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Digit-like images: ``x_train`` (n_train, 28, 28) uint8 (mostly 0, a bright blob), ``y_train`` uint8 0-9."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.zeros((n, 28, 28), np.uint8)
        corners = rng.integers(4, 16, size=(n, 2))
        for i, (r, c) in enumerate(corners):
            x[i, r:r + 8, c:c + 8] = rng.integers(128, 256, size=(8, 8), dtype=np.uint8)
        out[f"x_{split}"] = x
        out[f"y_{split}"] = (np.arange(n) % 10).astype(np.uint8)[rng.permutation(n)]
    return out


def write_mnist_like(folder: str | Path, n_train: int = 96, n_test: int = 48, seed: int = 0) -> list[Path]:
    """The four MNIST idx ``.gz`` files (canonical names) of :func:`mnist_like_arrays`; returns their paths."""
    arrays = mnist_like_arrays(n_train, n_test, seed)
    return write_idx_dataset(folder, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def regzip(path: str | Path, folder: str | Path, level: int = 1, mtime: int = 1_234_567_890) -> Path:
    """``path``'s gunzipped bytes gzipped again into ``folder`` under the same name, as another tool
    would: another level and a header with a file name and a time stamp (other bytes, the same
    content)."""
    dest = Path(folder) / Path(path).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out, gzip.GzipFile(filename=Path(path).stem, mode="wb", compresslevel=level, fileobj=out,
                                            mtime=mtime) as packed:
        packed.write(gzip.decompress(Path(path).read_bytes()))
    return dest


def gunzip(path: str | Path, folder: str | Path) -> Path:
    """``path``'s gunzipped bytes in ``folder``, named without ``.gz`` (as torchvision keeps
    ``MNIST/raw/train-images-idx3-ubyte``)."""
    return write_file(Path(folder) / Path(path).stem, gzip.decompress(Path(path).read_bytes()))


# --------------------------------------------------------------------------- CIFAR-10

def cifar10_arrays(n_per_batch: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ``x_train`` (5 * n_per_batch, 32, 32, 3) HWC uint8, labels 0-9, and the test split."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (5 * n_per_batch, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 5 * n_per_batch).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_cifar10(folder: str | Path, n_per_batch: int = 4, n_test: int = 6, seed: int = 0,
                  class_names: tuple[str, ...] | None = None) -> list[Path]:
    """``cifar-10-binary.tar.gz`` with the real layout (:func:`vaelab.data.dataset_files.write_cifar10_dataset`)
    of :func:`cifar10_arrays`."""
    arrays = cifar10_arrays(n_per_batch, n_test, seed)
    return [write_cifar10_dataset(folder, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                                  class_names or KINDS["cifar10"].class_names,
                                  readme=b"<html>tiny CIFAR-10 for tests</html>")]


# --------------------------------------------------------------------------- Caltech101 / images

def encode_image(array: np.ndarray, fmt: str = "jpeg") -> bytes:
    """Encode an (H, W) or (H, W, 3) uint8 array in a Pillow format ('jpeg', 'png', ...)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "jpeg" else {}))
    return buffer.getvalue()


def _flat_image(rng: np.random.Generator, colour: tuple[int, int, int], grayscale: bool,
                sizes: tuple[int, int] = (40, 120)) -> np.ndarray:
    height, width = (int(v) for v in rng.integers(*sizes, size=2))
    if width == height:  # keep every test image non-square
        width += 7
    if grayscale:
        return np.full((height, width), colour[0], np.uint8)
    return np.broadcast_to(np.asarray(colour, np.uint8), (height, width, 3)).copy()


def caltech101_images(per_class: int = 5, seed: int = 0) -> list[tuple[str, str, bytes]]:
    """(class, file, JPEG) of a tiny Caltech101: :data:`CALTECH_COLOURS` classes of ``per_class``
    flat-colour, non-square JPEGs each (``yin_yang`` grayscale), plus a ``BACKGROUND_Google``
    folder of 3 noise images."""
    rng = np.random.default_rng(seed)
    images = []
    for name in (BACKGROUND, *sorted(CALTECH_COLOURS)):
        if name == BACKGROUND:
            arrays = [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8) for _ in range(3)]
        else:
            arrays = [_flat_image(rng, CALTECH_COLOURS[name], name == GRAYSCALE_CLASS) for _ in range(per_class)]
        images.extend((name, f"image_{i:04d}.jpg", encode_image(array)) for i, array in enumerate(arrays, start=1))
    return images


def write_caltech101(folder: str | Path, per_class: int = 5, seed: int = 0, wrap_zip: bool = True) -> list[Path]:
    """``caltech-101.zip`` wrapping ``caltech-101/101_ObjectCategories.tar.gz`` (as CaltechDATA ships
    it); with ``wrap_zip=False`` the plain ``101_ObjectCategories.tar.gz`` instead. See
    :func:`caltech101_images`."""
    return [write_caltech101_archive(folder, caltech101_images(per_class, seed), wrap_zip)]


def write_caltech101_folder(folder: str | Path, per_class: int = 5, seed: int = 0) -> Path:
    """The extracted ``101_ObjectCategories/`` of :func:`write_caltech101`'s archive (the same
    images, ``BACKGROUND_Google`` included) in ``folder``; returns its path."""
    root = Path(folder) / CALTECH101_FOLDER
    for class_name, file_name, data in caltech101_images(per_class, seed):
        write_file(root / class_name / file_name, data)
    return root


def write_image_folder(folder: str | Path, per_class: int = 4, seed: int = 0,
                       formats: tuple[str, ...] = IMAGE_FOLDER_FORMATS) -> Path:
    """A user image folder: one sub-folder per :data:`CALTECH_COLOURS` class, ``per_class``
    flat-colour images each, cycling through ``formats`` (jpg, png, bmp, gif, webp); the
    grayscale class is saved as single-channel images. Returns ``folder``."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    pillow_format = {"jpg": "jpeg", "png": "png", "bmp": "bmp", "gif": "gif", "webp": "webp"}
    k = 0
    for name, colour in sorted(CALTECH_COLOURS.items()):
        for i in range(per_class):
            fmt = formats[k % len(formats)]
            k += 1
            image = _flat_image(rng, colour, name == GRAYSCALE_CLASS)
            data = encode_image(image, pillow_format[fmt]) if fmt != "webp" else _webp_lossless(image)
            write_file(folder / name / f"img_{i:03d}.{fmt}", data)
    return folder


def _webp_lossless(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="webp", lossless=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------- source table

def write_source_table(path: str | Path, files_by_kind: Mapping[str, Iterable[str | Path]],
                       base_url: str | None = None, algorithm: str = "sha256", content: bool = False) -> Path:
    """Write a ``VAELAB_SOURCES`` JSON table for generated files; return its path.

    ``files_by_kind`` maps a dataset kind ('mnist', 'cifar10', 'caltech101', ...) to the paths a
    ``write_*`` function returned. Each entry gets the file's real checksum (with ``content``,
    also the sha256 of its gunzipped bytes, for gzipped files) and one URL: ``base_url +
    filename`` if given (e.g. a local http.server), else the file's ``file://`` URI.
    """
    table = {kind: tuple(local_source(Path(f), algorithm, base_url, content) for f in files)
             for kind, files in files_by_kind.items()}
    return save_source_table(path, table)
