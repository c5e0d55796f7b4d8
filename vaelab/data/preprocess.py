"""Decode a downloaded dataset into one :class:`~vaelab.core.prepared.PreparedData` (uint8 NHWC, int labels).

Per dataset kind, reading ``data/raw/<name>/`` as the download stage left it:

* ``mnist``, ``fashion_mnist``: the four idx ``.gz`` files (LeCun et al. 1998's format:
  big-endian int32 magic 2051 for images, 2049 for labels, then the sizes, then raw bytes),
  parsed with numpy. 60,000 / 10,000 images of 28x28x1.
* ``cifar10``: ``cifar-10-binary.tar.gz`` (Krizhevsky 2009), the *binary* version: records of
  1 label byte + 3072 pixel bytes (R, G, B planes of 32x32), parsed with numpy into 32x32x3
  HWC. Nothing is unpickled. 50,000 / 10,000.
* ``caltech101``: ``caltech-101.zip`` (CaltechDATA), whose member
  ``caltech-101/101_ObjectCategories.tar.gz`` (Fei-Fei et al. 2004) is streamed; a plain
  ``101_ObjectCategories.tar.gz`` in the raw folder works too, and so does the extracted
  ``101_ObjectCategories/`` folder (read as ``image_folder`` reads its folder, so the same
  images give the same arrays). Each was checked against its own pinned hash when downloaded
  (the zip's sha256 fixes every byte of the tarball inside it; the folder's manifest hash every
  file). The ``BACKGROUND_Google`` clutter class is dropped; images are centre-cropped to a square and
  resized with antialiasing to ``image_size``, then split by class (``test_fraction``,
  ``seed``). ``data.channels``: ``auto`` keeps one channel when every image is greyscale
  (R = G = B), else three; ``1`` converts colour to grey (luma); ``3`` makes grey RGB.
* ``image_folder``: the same decode/resize/split over a snapshot of class folders; a single
  unreadable image is skipped with a logged warning (and counted), no readable image at all
  is an error.

Archives are read with :mod:`vaelab.data.archives` (streamed, never extracted). Images are
decoded straight into preallocated arrays, so peak memory is the final arrays plus one batch.
Which reader prepares which kind, its file names and class names come from the registry,
:mod:`vaelab.data.kinds`; every reader takes ``(raw_dir, kind, ds, seed, workers)``.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np

from vaelab.data import archives
from vaelab.core.prepared import PreparedData
from vaelab.core.errors import VaelabError
from vaelab.data.images import class_folder_walk, decode_into, grey_if_all_grey, image_suffixes, split_inplace
from vaelab.data.kinds import CALTECH101_FOLDER, CALTECH101_TAR, CALTECH101_ZIP, CALTECH101_ZIP_MEMBER, CIFAR10_ARCHIVE
from vaelab.data.kinds import IDX_TEST, IDX_TRAIN
from vaelab.data.kinds import DatasetKind
from vaelab.data.params import DataParams

log = logging.getLogger(__name__)

IDX_FILES = {"train": IDX_TRAIN, "test": IDX_TEST}
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_META = "batches.meta.txt"
CIFAR10_RECORD = 1 + 3 * 32 * 32



def _missing(path: Path, dataset: str) -> VaelabError:
    return VaelabError(f"{path} not found; run `dvc repro download@{dataset}` first")


# --------------------------------------------------------------------------- idx (MNIST-like)

def read_idx(path: str | Path, magic: int, dataset: str = "<dataset>") -> np.ndarray:
    """Parse a gzipped idx file: shape (N, rows, cols) for magic 2051, (N,) for 2049; uint8.

    Checks the magic number, the sizes and the length; a truncated or corrupt file is a
    :class:`VaelabError` naming it.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise _missing(path, dataset) from None
    except (OSError, EOFError, zlib.error) as error:
        raise VaelabError(f"{path} is truncated or corrupt ({error}); delete it and re-run "
                          f"`dvc repro download@{dataset}`") from None
    ndim = {IDX_IMAGES_MAGIC: 3, IDX_LABELS_MAGIC: 1}[magic]
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise VaelabError(f"{path} is truncated ({len(data)} bytes, shorter than its header); delete it and "
                          f"re-run `dvc repro download@{dataset}`")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise VaelabError(f"{path} is not an idx {'image' if ndim == 3 else 'label'} file: magic number {found}, "
                          f"expected {magic}; delete it and re-run `dvc repro download@{dataset}`")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise VaelabError(f"{path} holds {len(data) - header} data bytes but its header {shape} needs {expected}; "
                          f"it is truncated or corrupt: delete it and re-run `dvc repro download@{dataset}`")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed idx encoding of a uint8 array of 1 (labels) or 3 (images) dimensions;
    :func:`read_idx` of its gzip gives ``array`` back (mirrors and tests write with it)."""
    if array.ndim not in (1, 3):
        raise ValueError(f"idx arrays here have 1 or 3 dimensions, got shape {array.shape}")
    magic = IDX_LABELS_MAGIC if array.ndim == 1 else IDX_IMAGES_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def prepare_idx(raw_dir: str | Path, kind: DatasetKind, ds: DataParams, seed: int = 0,
                workers: int | None = None) -> PreparedData:
    """MNIST / Fashion-MNIST from the four idx .gz files in ``raw_dir``: (N, 28, 28, 1) uint8."""
    raw_dir = Path(raw_dir)
    class_names, dataset = kind.class_names, ds.name
    splits = {}
    for split, (images_name, labels_name) in IDX_FILES.items():
        images = read_idx(raw_dir / images_name, IDX_IMAGES_MAGIC, dataset)
        labels = read_idx(raw_dir / labels_name, IDX_LABELS_MAGIC, dataset)
        if len(images) != len(labels):
            raise VaelabError(f"{raw_dir / images_name} holds {len(images)} images but {raw_dir / labels_name} "
                              f"{len(labels)} labels; delete both and re-run `dvc repro download@{dataset}`")
        if len(labels) and labels.max() >= len(class_names):
            raise VaelabError(f"{raw_dir / labels_name} holds label {labels.max()}, but {kind.name} has "
                              f"{len(class_names)} classes; delete it and re-run `dvc repro download@{dataset}`")
        splits[split] = (images[..., np.newaxis], labels.astype(np.int64))
    return PreparedData(splits["train"][0], splits["train"][1], splits["test"][0], splits["test"][1], class_names)


# --------------------------------------------------------------------------- CIFAR-10

def prepare_cifar10(raw_dir: str | Path, kind: DatasetKind, ds: DataParams, seed: int = 0,
                    workers: int | None = None) -> PreparedData:
    """CIFAR-10 from the binary tar.gz: (N, 32, 32, 3) uint8, batches 1-5 train, test_batch test.

    Two streaming passes: the first checks every member and reads the batch sizes, so the
    second can write each batch straight into preallocated arrays (peak: arrays + one batch).
    """
    path, dataset = Path(raw_dir) / CIFAR10_ARCHIVE, ds.name
    if not path.is_file():
        raise _missing(path, dataset)
    by_base: dict[str, archives.TarEntry] = {}
    for entry in archives.list_tar(path, dataset=dataset):
        by_base.setdefault(PurePosixPath(entry.name).name, entry)
    wanted = (*CIFAR10_TRAIN, CIFAR10_TEST)
    missing = [name for name in wanted if name not in by_base]
    if missing:
        raise VaelabError(f"archive {path} lacks {', '.join(missing)}: it is not the CIFAR-10 binary version; "
                          f"delete it and re-run `dvc repro download@{dataset}`")
    for name in wanted:
        if by_base[name].size % CIFAR10_RECORD:
            raise VaelabError(f"archive {path}: {by_base[name].name} has {by_base[name].size} bytes, not a "
                              f"multiple of the {CIFAR10_RECORD}-byte record; delete it and re-run "
                              f"`dvc repro download@{dataset}`")
    counts = {name: by_base[name].size // CIFAR10_RECORD for name in wanted}
    n_train = sum(counts[name] for name in CIFAR10_TRAIN)
    x_train = np.empty((n_train, 32, 32, 3), np.uint8)
    y_train = np.empty(n_train, np.int64)
    x_test = np.empty((counts[CIFAR10_TEST], 32, 32, 3), np.uint8)
    y_test = np.empty(counts[CIFAR10_TEST], np.int64)
    offsets = {name: sum(counts[n] for n in CIFAR10_TRAIN[:i]) for i, name in enumerate(CIFAR10_TRAIN)}
    offsets[CIFAR10_TEST] = 0
    members = {by_base[name].name: name for name in wanted}
    meta_name = by_base[CIFAR10_META].name if CIFAR10_META in by_base else None
    class_names: tuple[str, ...] = kind.class_names

    def want(name: str) -> bool:
        return name in members or name == meta_name

    for entry, data in archives.iter_tar(path, want=want, dataset=dataset):
        if data is None:
            continue
        if entry.name == meta_name:
            names = tuple(line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip())
            if len(names) == 10:
                class_names = names
            else:
                log.warning("%s in %s lists %d class names, not 10; using the canonical names", CIFAR10_META,
                            path, len(names))
            continue
        base = members[entry.name]
        records = np.frombuffer(data, np.uint8).reshape(-1, CIFAR10_RECORD)
        x, y = (x_test, y_test) if base == CIFAR10_TEST else (x_train, y_train)
        start, n = offsets[base], len(records)
        # Each record: label, then the R, G and B planes (row-major 32x32); to HWC.
        x[start:start + n] = records[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
        y[start:start + n] = records[:, 0]
    for labels, name in ((y_train, "training batches"), (y_test, CIFAR10_TEST)):
        if len(labels) and labels.max() >= len(class_names):
            raise VaelabError(f"archive {path}: {name} hold label {labels.max()} >= {len(class_names)} classes; "
                              f"delete it and re-run `dvc repro download@{dataset}`")
    return PreparedData(x_train, y_train, x_test, y_test, class_names)


# --------------------------------------------------------------------------- resized image sets

def _finish(images: np.ndarray, labels: np.ndarray, readable: np.ndarray, class_names: list[str],
            names_total: int, ds: DataParams, seed: int, what: str) -> PreparedData:
    """Count skips, drop classes left empty, split in place by class."""
    skipped = names_total - int(readable.sum())
    if readable.sum() == 0:
        raise VaelabError(f"{what}: none of the {names_total} image files could be read (see the warnings "
                          f"above); check that they are images Pillow can open")
    if skipped:
        log.warning("%s: skipped %d unreadable image(s) of %d (see the warnings above)", what, skipped, names_total)
    present = np.unique(labels[readable])
    if len(present) != len(class_names):
        dropped = [class_names[i] for i in range(len(class_names)) if i not in set(present.tolist())]
        log.warning("%s: dropping class(es) without readable images: %s", what, ", ".join(dropped))
        remap = np.full(len(class_names), -1, np.int64)
        remap[present] = np.arange(len(present))
        labels = remap[labels]
        class_names = [class_names[i] for i in present]
    x_train, y_train, x_test, y_test = split_inplace(images, labels, readable, ds.test_fraction, seed, what)
    return PreparedData(x_train, y_train, x_test, y_test, tuple(class_names))


def _allocate(n: int, size: int, channels: int | str) -> np.ndarray:
    """The array decoded images go into: grey for ``data.channels: 1``, RGB otherwise (auto
    decides after decoding, :func:`_settle_channels`)."""
    return np.empty((n, size, size, 1 if channels == 1 else 3), np.uint8)


def _settle_channels(images: np.ndarray, readable: np.ndarray, ds: DataParams) -> np.ndarray:
    """``data.channels: auto``: one channel when every readable image is grey, else three."""
    if ds.channels != "auto":
        return images
    settled = grey_if_all_grey(images, readable)
    log.info("%s: %s, so the images keep %d channel%s (data.channels: auto)", ds.name,
             "every image is greyscale" if settled.shape[-1] == 1 else "some images are in colour",
             settled.shape[-1], "" if settled.shape[-1] == 1 else "s")
    return settled


def _classify(names: list[str], drop: tuple[str, ...] = ()) -> tuple[list[int], list[str], np.ndarray]:
    """Pick image files ``<...>/<class>/<file>`` from ``names``: (indices into names, class names, labels)."""
    suffixes = image_suffixes()
    picked, classes = [], []
    for i, name in enumerate(names):
        parts = PurePosixPath(name).parts
        if len(parts) < 2 or any(part.startswith(".") for part in parts):
            continue
        if PurePosixPath(name).suffix.lower() not in suffixes or parts[-2] in drop:
            continue
        picked.append(i)
        classes.append(parts[-2])
    class_names = sorted(set(classes))
    index = {c: k for k, c in enumerate(class_names)}
    return picked, class_names, np.array([index[c] for c in classes], dtype=np.int64)


def prepare_caltech101(raw_dir: str | Path, kind: DatasetKind, ds: DataParams, seed: int,
                       workers: int | None = None) -> PreparedData:
    """Caltech101 as (N, S, S, 3) uint8, S = ``ds.image_size``; ``kind.drop_classes`` dropped.

    Reads ``caltech-101.zip``, else a plain ``101_ObjectCategories.tar.gz``, else the extracted
    ``101_ObjectCategories/`` folder from ``raw_dir``. An archive is streamed twice: pass 1
    lists its members, pass 2 decodes the images into one preallocated array. The folder is read
    by :func:`_prepare_class_folders`, as ``image_folder`` reads its folder.
    """
    raw_dir = Path(raw_dir)
    zip_path, tar_path = raw_dir / CALTECH101_ZIP, raw_dir / CALTECH101_TAR
    if not zip_path.is_file() and not tar_path.is_file() and (raw_dir / CALTECH101_FOLDER).is_dir():
        return _prepare_class_folders(raw_dir / CALTECH101_FOLDER, ds, seed, workers, kind.drop_classes)

    if zip_path.is_file():
        zip_file = archives.open_zip(zip_path, ds.name)
        # The canonical member, else any member of that name (a re-packed zip).
        members = [n for n in zip_file.namelist() if PurePosixPath(n).name == CALTECH101_TAR]
        member = CALTECH101_ZIP_MEMBER if CALTECH101_ZIP_MEMBER in members or not members else members[0]
        label = f"{zip_path}:{member}"

        def open_stream():
            return archives.zip_member_stream(zip_file, member, ds.name)
    elif tar_path.is_file():
        zip_file, label = None, str(tar_path)

        def open_stream():
            return open(tar_path, "rb")
    else:
        raise VaelabError(f"{raw_dir} holds neither {CALTECH101_ZIP} nor {CALTECH101_TAR} nor the extracted "
                          f"{CALTECH101_FOLDER}/ folder; run `dvc repro download@{ds.name}` first")
    try:
        with open_stream() as stream:
            entries = archives.list_tar(stream, label=label, dataset=ds.name)
        names = [entry.name for entry in entries]
        picked, class_names, labels = _classify(names, kind.drop_classes)
        if not picked:
            raise VaelabError(f"{label} holds no images in class folders; delete it and re-run "
                              f"`dvc repro download@{ds.name}`")
        # Rows by path, part by part (class folder, then file), as the extracted folder is read: the
        # same images give the same arrays and split whatever order the archive stores them in.
        order = sorted(range(len(picked)), key=lambda k: PurePosixPath(names[picked[k]]).parts)
        picked, labels = [picked[k] for k in order], labels[order]
        size = ds.image_size
        images = _allocate(len(picked), size, ds.channels)
        row_of = {i: row for row, i in enumerate(picked)}

        wanted_names = {names[i] for i in picked}

        def items() -> Iterator[tuple[int, Callable[[], bytes], str]]:
            # Pass 2 meets the same regular-file members in the same order as pass 1 did.
            with open_stream() as stream:
                for position, (entry, data) in enumerate(archives.iter_tar(
                        stream, label=label, dataset=ds.name, want=wanted_names.__contains__)):
                    row = row_of.get(position)
                    if row is None or data is None:
                        continue
                    if entry.name != names[position]:
                        raise archives.corrupt_error(label, "members changed between two reads", ds.name)
                    yield row, (lambda d=data: d), entry.name

        readable = decode_into(images, items(), workers=workers, desc=ds.name)
        images = _settle_channels(images, readable, ds)
    finally:
        if zip_file is not None:
            zip_file.close()
    return _finish(images, labels, readable, class_names, len(picked), ds, seed, f"{ds.name} ({label})")


def prepare_image_folder(raw_dir: str | Path, kind: DatasetKind, ds: DataParams, seed: int,
                         workers: int | None = None) -> PreparedData:
    """A folder of class sub-folders as (N, S, S, 3) uint8, S = ``ds.image_size``; split by class
    (:func:`_prepare_class_folders`)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise VaelabError(f"{raw_dir} is not a folder; run `dvc repro download@{ds.name}` first")
    return _prepare_class_folders(raw_dir, ds, seed, workers)


def _prepare_class_folders(folder: Path, ds: DataParams, seed: int, workers: int | None,
                           drop: tuple[str, ...] = ()) -> PreparedData:
    """The class sub-folders of ``folder`` (but those named in ``drop``) as (N, S, S, 3) uint8, S =
    ``ds.image_size``; split by class.

    Image files are found by suffix (any format Pillow opens), also in nested folders of a
    class folder; hidden files are ignored. Rows follow the sorted class folders and, in each,
    the sorted files. Unreadable images are skipped and counted.
    """
    suffixes = image_suffixes()
    files: list[tuple[Path, str]] = []
    ignored = 0
    for class_name, path in class_folder_walk(folder, drop):
        if path.suffix.lower() in suffixes:
            files.append((path, class_name))
        else:
            ignored += 1
    if ignored:
        log.info("%s: ignored %d file(s) that are not images by their name", ds.name, ignored)
    if not files:
        raise VaelabError(f"{folder} holds no image files in class sub-folders; put one sub-folder of images "
                          f"per class in {ds.path or 'the image folder'} and re-run `dvc repro -f download@{ds.name}`")
    class_names = sorted({c for _, c in files})
    index = {c: k for k, c in enumerate(class_names)}
    labels = np.array([index[c] for _, c in files], dtype=np.int64)
    size = ds.image_size
    images = _allocate(len(files), size, ds.channels)
    items = ((row, path.read_bytes, str(path)) for row, (path, _) in enumerate(files))
    readable = decode_into(images, items, workers=workers, desc=ds.name)
    images = _settle_channels(images, readable, ds)
    return _finish(images, labels, readable, class_names, len(files), ds, seed, f"{ds.name} ({folder})")


# --------------------------------------------------------------------------- dispatch

def prepare_dataset(kind: DatasetKind, ds: DataParams, raw_dir: str | Path, seed: int,
                    workers: int | None = None) -> PreparedData:
    """The preprocess stage's work for dataset ``ds`` of registry kind ``kind``, reading ``raw_dir``."""
    reader = globals().get(kind.reader)
    if not callable(reader):
        raise ValueError(f"the registry names reader {kind.reader!r} for {kind.name}, which vaelab.data.preprocess lacks")
    return reader(raw_dir, kind, ds, seed, workers)
