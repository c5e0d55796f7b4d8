"""Decode, centre-crop and resize images into preallocated uint8 arrays; stratified splits.

The pipeline behind the Caltech101 and image-folder datasets:

* :func:`decode_square` turns one encoded image (any format Pillow reads) into a
  ``(size, size, C)`` uint8 array: first frame, EXIF orientation applied, grayscale/palette/
  CMYK/alpha converted to RGB (then to grey for C = 1, by Pillow's ITU-R 601 luma), the
  centred square of side ``min(H, W)`` cropped and resized with an antialiasing filter (Lanczos). JPEGs are decoded at a reduced scale first
  (``Image.draft``: libjpeg's DCT scaling to 1/2, 1/4, 1/8, never below ``size``), which is
  most of the speed.
* :func:`decode_into` decodes a stream of encoded images into rows of one preallocated
  array with a small thread pool (Pillow releases the GIL while decoding and resizing), with
  at most a few batches of encoded bytes in flight: peak memory is the final array plus one
  batch. Unreadable images are skipped with a logged warning and counted.
* :func:`grey_if_all_grey` keeps one channel of a decoded RGB array when every image in it
  is grey (R = G = B), so a folder of greyscale scans is not tripled into colour.
* :func:`stratified_split` and :func:`permute_rows_inplace` then split that array into
  train and test parts without copying it: rows are permuted in place so that the train rows
  come first, and the two splits are views.
"""

from __future__ import annotations

import io
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from vaelab.core.errors import VaelabError

log = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112


class UnreadableImage(Exception):
    """One image Pillow cannot decode (corrupt, truncated, not an image, a decompression bomb)."""


def image_suffixes() -> frozenset[str]:
    """Lower-case file suffixes of every format this Pillow can open ('.jpg', '.png', '.webp', ...)."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def class_folder_walk(folder: str | Path, exclude: Iterable[str] = ()) -> Iterator[tuple[str, Path]]:
    """(class name, path) of every file in the class folders of ``folder``: its sub-folders and
    their nested folders, but hidden ones and those named in ``exclude``; hidden files and loose
    files beside the class folders are skipped. In order: the sorted class folders, in each its
    sorted files. The one walk of a class folder, for the download's snapshot and manifest and
    the preprocess readers alike."""
    exclude = set(exclude)
    for class_dir in sorted(p for p in Path(folder).iterdir()
                            if p.is_dir() and not p.name.startswith(".") and p.name not in exclude):
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(class_dir).parts):
                yield class_dir.name, path


def decode_square(data: bytes, size: int, channels: int = 3) -> np.ndarray:
    """Decode ``data`` to a ``(size, size, channels)`` uint8 array (RGB, or grey for ``channels``
    1): centre square crop, antialiased resize.

    Raises :class:`UnreadableImage` when Pillow cannot read it.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as image:
            # DCT-domain downscaling for JPEG: decoding at 1/2..1/8 scale is several times
            # faster and, since the result is still >= size on both sides, loses nothing
            # that the antialiased resize below would keep.
            image.draft("RGB", (size, size))
            if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                # Palette images with transparency go through RGBA so their colours survive;
                # transparent pixels keep their stored colour.
                if image.mode == "P" and "transparency" in image.info:
                    image = image.convert("RGBA")
                image = image.convert("RGB")
            if channels == 1:
                image = image.convert("L")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            # Crop first: resize(box=...) would let the filter read pixels outside the square.
            square = image.crop((left, top, left + side, top + side))
            resized = square.resize((size, size), Image.Resampling.LANCZOS)
            array = np.asarray(resized, dtype=np.uint8).reshape(size, size, channels)
    except (OSError, SyntaxError, ValueError, TypeError, Image.DecompressionBombError) as error:
        # OSError covers UnidentifiedImageError and "image file is truncated".
        raise UnreadableImage(f"{type(error).__name__}: {error}") from None
    if array.shape != (size, size, channels):
        raise UnreadableImage(f"decoded to shape {array.shape}")
    return array


def default_workers() -> int:
    """Decoder threads: the usable cores, at most 4 (more only adds contention)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def decode_into(out: np.ndarray, items: Iterable[tuple[int, Callable[[], bytes], str]], *,
                workers: int | None = None, window: int = 64, desc: str = "decoding") -> np.ndarray:
    """Decode images into rows of ``out`` (uint8, shape (N, S, S, C), C = 1 or 3); return a bool mask of
    readable rows.

    ``items`` yields ``(row, load, name)``: ``load()`` returns the encoded bytes (called in a
    worker thread, so file reads overlap too; for an archive stream pass a function returning
    bytes already read), ``name`` labels warnings. At most ``window`` images are in flight.
    An unreadable image is logged as a warning and its row left marked False.
    """
    size, channels = out.shape[1], out.shape[3]
    ok = np.zeros(len(out), dtype=bool)
    workers = default_workers() if workers is None else workers

    def work(load: Callable[[], bytes]) -> np.ndarray:
        return decode_square(load(), size, channels)

    pending: deque[tuple[int, str, Future]] = deque()

    def finish_one(bar: tqdm) -> None:
        row, name, future = pending.popleft()
        try:
            out[row] = future.result()
            ok[row] = True
        except UnreadableImage as error:
            log.warning("skipping unreadable image %s (%s)", name, error)
        except OSError as error:  # the file vanished or cannot be read
            log.warning("skipping unreadable image %s (%s)", name, error)
        bar.update(1)

    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(out), unit="img", desc=desc, disable=None) as bar:
        for row, load, name in items:
            pending.append((row, name, pool.submit(work, load)))
            if len(pending) >= window:
                finish_one(bar)
        while pending:
            finish_one(bar)
    return ok


def grey_if_all_grey(images: np.ndarray, readable: np.ndarray, block: int = 1024) -> np.ndarray:
    """``images`` (N, S, S, 3) uint8 as (N, S, S, 1) when every readable image has R = G = B
    (checked a block of rows at a time), else ``images`` itself."""
    if images.shape[-1] != 3:
        return images
    rows = np.flatnonzero(readable)
    for start in range(0, len(rows), block):
        part = images[rows[start:start + block]]
        if not (np.array_equal(part[..., 0], part[..., 1]) and np.array_equal(part[..., 0], part[..., 2])):
            return images
    return np.ascontiguousarray(images[..., :1])


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) into ``labels``: each class split by ``test_fraction``, fixed by ``seed``.

    Per class of ``n`` items, ``round(n * test_fraction)`` go to test, but at least one stays
    in train. Within each split the order is shuffled (by the same seeded generator), so the
    first rows are a random sample of all classes. Deterministic for given labels and seed.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(int(np.floor(len(members) * test_fraction + 0.5)), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    train_idx = rng.permutation(np.concatenate(train)) if train else np.zeros(0, np.int64)
    test_idx = rng.permutation(np.concatenate(test)) if test else np.zeros(0, np.int64)
    return train_idx.astype(np.int64), test_idx.astype(np.int64)


def permute_rows_inplace(array: np.ndarray, order: np.ndarray) -> None:
    """Rearrange rows so that ``array[k]`` becomes the old ``array[order[k]]``, with one row of scratch.

    ``order`` may be shorter than ``array`` (a selection): the rows it leaves out end up,
    in some order, after ``len(order)``. Peak memory: ``array`` plus one row (fancy indexing
    would copy the whole array).
    """
    n = len(array)
    order = np.asarray(order, dtype=np.int64)
    if len(np.unique(order)) != len(order) or (len(order) and (order.min() < 0 or order.max() >= n)):
        raise ValueError("order must hold distinct row indices")
    rest = np.setdiff1d(np.arange(n), order, assume_unique=True)
    full = np.concatenate([order, rest])
    done = np.zeros(n, dtype=bool)
    for start in range(n):
        if done[start] or full[start] == start:
            done[start] = True
            continue
        scratch = array[start].copy()
        dst = start
        while True:
            src = full[dst]
            done[dst] = True
            if src == start:
                array[dst] = scratch
                break
            array[dst] = array[src]
            dst = src


def split_inplace(images: np.ndarray, labels: np.ndarray, readable: np.ndarray, test_fraction: float,
                  seed: int, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split of the readable rows of ``images`` into views (x_train, y_train, x_test, y_test).

    ``images`` is permuted in place (train rows first, then test, then unreadable ones).
    Raises when a split would be empty.
    """
    rows = np.flatnonzero(readable)
    train_rel, test_rel = stratified_split(labels[rows], test_fraction, seed)
    if len(train_rel) == 0 or len(test_rel) == 0:
        raise VaelabError(
            f"{what}: {len(rows)} readable images give {len(train_rel)} train and {len(test_rel)} test "
            f"images with test_fraction={test_fraction}; add images or change test_fraction"
        )
    order = np.concatenate([rows[train_rel], rows[test_rel]])
    y = labels[order]
    permute_rows_inplace(images, order)
    n_train = len(train_rel)
    return images[:n_train], y[:n_train], images[n_train:len(order)], y[n_train:]
