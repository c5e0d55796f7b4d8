"""Write datasets in their canonical file formats: the inverse of :mod:`vaelab.data.preprocess`'s readers.

For offline mirrors (``scripts/mnist_t10k_mirror.py``), the tests' archive factory and the
full-size pipeline benchmark. File names and layouts come from the registry
(:mod:`vaelab.data.kinds`). Every writer is byte-for-byte deterministic for given arrays (gzip, tar
and zip timestamps are fixed), so the checksums of what it writes are stable.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vaelab.data.kinds import CALTECH101_TAR, CALTECH101_ZIP, CALTECH101_ZIP_MEMBER, CIFAR10_ARCHIVE, IDX_TEST, IDX_TRAIN
from vaelab.data.preprocess import CIFAR10_META, CIFAR10_TEST, CIFAR10_TRAIN, idx_bytes

CIFAR10_DIR = "cifar-10-batches-bin"
CALTECH101_ROOT = "101_ObjectCategories"


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzipped with a fixed timestamp."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(data)
    return buffer.getvalue()


def tar_gz_bytes(members: Iterable[tuple[str, bytes | None]]) -> bytes:
    """A tar.gz of ``(name, data)`` members (data None: a folder), fixed timestamps."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return gzip_bytes(buffer.getvalue())


def write_file(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_idx_dataset(folder: str | Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                      y_test: np.ndarray) -> list[Path]:
    """The four idx ``.gz`` files of MNIST / Fashion-MNIST: images uint8 (N, 28, 28), labels (N,)."""
    contents = (x_train, y_train, x_test, y_test)
    return [write_file(Path(folder) / name, gzip_bytes(idx_bytes(np.asarray(array, np.uint8))))
            for name, array in zip((*IDX_TRAIN, *IDX_TEST), contents)]


def cifar10_records(x: np.ndarray, y: np.ndarray) -> bytes:
    """CIFAR-10 binary records: per image 1 label byte, then the R, G, B planes (CHW)."""
    planes = np.asarray(x, np.uint8).transpose(0, 3, 1, 2).reshape(len(x), -1)
    return np.concatenate([np.asarray(y, np.uint8)[:, None], planes], axis=1).tobytes()


def write_cifar10_dataset(folder: str | Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                          y_test: np.ndarray, class_names: Sequence[str], readme: bytes = b"<html></html>") -> Path:
    """``cifar-10-binary.tar.gz`` in the real layout: ``cifar-10-batches-bin/`` with
    ``batches.meta.txt``, ``test_batch.bin``, ``data_batch_1..5.bin`` (the training images in
    five equal parts) and ``readme.html``. Images uint8 (N, 32, 32, 3) HWC, labels (N,)."""
    members: list[tuple[str, bytes | None]] = [(CIFAR10_DIR, None)]
    # The real archive lists the meta file and test_batch before the training batches.
    members.append((f"{CIFAR10_DIR}/{CIFAR10_META}", ("\n".join(class_names) + "\n\n").encode()))
    members.append((f"{CIFAR10_DIR}/{CIFAR10_TEST}", cifar10_records(x_test, y_test)))
    per_batch = len(x_train) // len(CIFAR10_TRAIN)
    for i, name in enumerate(CIFAR10_TRAIN):
        rows = slice(i * per_batch, (i + 1) * per_batch if i < len(CIFAR10_TRAIN) - 1 else len(x_train))
        members.append((f"{CIFAR10_DIR}/{name}", cifar10_records(x_train[rows], y_train[rows])))
    members.append((f"{CIFAR10_DIR}/readme.html", readme))
    return write_file(Path(folder) / CIFAR10_ARCHIVE, tar_gz_bytes(members))


def write_caltech101_archive(folder: str | Path, images: Iterable[tuple[str, str, bytes]],
                             wrap_zip: bool = True) -> Path:
    """Caltech101's archive from ``(class, file name, encoded image)`` triples: the original
    ``101_ObjectCategories.tar.gz`` (one folder per class), wrapped as CaltechDATA ships it in
    ``caltech-101.zip`` (beside ``Annotations.tar`` and ``show_annotation.m``) unless
    ``wrap_zip`` is False."""
    members: list[tuple[str, bytes | None]] = [(CALTECH101_ROOT, None)]
    seen: set[str] = set()
    for class_name, file_name, data in images:
        if class_name not in seen:
            seen.add(class_name)
            members.append((f"{CALTECH101_ROOT}/{class_name}", None))
        members.append((f"{CALTECH101_ROOT}/{class_name}/{file_name}", data))
    inner = tar_gz_bytes(members)
    folder = Path(folder)
    if not wrap_zip:
        return write_file(folder / CALTECH101_TAR, inner)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in (("caltech-101/", b""), (CALTECH101_ZIP_MEMBER, inner),
                           ("caltech-101/Annotations.tar", b"\0" * 1024),
                           ("caltech-101/show_annotation.m", b"% annotations viewer\n")):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = ((0o40755 if name.endswith("/") else 0o100644) << 16)
            archive.writestr(info, data)
    return write_file(folder / CALTECH101_ZIP, buffer.getvalue())
