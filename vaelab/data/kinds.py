"""The dataset kinds: one registry of what each kind is and where its files come from.

Each :class:`DatasetKind` is declared once in :data:`KINDS`: the files the download stage
fetches (mirrors tried in order, pinned checksums), the files a mirror may hold instead, the
class names, whether images are resized (and split by ``test_fraction``) and the reader that
prepares them. Parameter validation, the download and preprocess stages, the tests' archive
factory and the offline-mirror script all derive from it. Checksums are the values the dataset
authors (or the loaders that pinned them first: torchvision, TFDS) published,
``algorithm:hexdigest``.

The reader is named, not imported (a function of :mod:`vaelab.data.preprocess`): every stage
imports this module through its params, and a stage's DVC deps are exactly the files it
imports, so the registry must not pull the readers (and their edits) into training's deps.

Tests feed generated archives through the same download code with an explicit table file
(``VAELAB_SOURCES``, :func:`load_source_table`); verification is never skipped, the table
just names other files and checksums, and a run that uses one says so loudly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from vaelab.core.errors import VaelabError

SOURCES_ENV = "VAELAB_SOURCES"
HASH_ALGORITHMS = ("md5", "sha256")

# File names of the canonical archives (readers, the archive factory and mirrors use these).
IDX_TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
IDX_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CALTECH101_ZIP = "caltech-101.zip"
CALTECH101_TAR = "101_ObjectCategories.tar.gz"
CALTECH101_ZIP_MEMBER = f"caltech-101/{CALTECH101_TAR}"  # where CaltechDATA's zip keeps the original


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"md5:<hex>"`` / ``"sha256:<hex>"`` (any case) into (algorithm, lowercase hex digest)."""
    algorithm, _, digest = str(checksum).partition(":")
    algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
    if algorithm not in HASH_ALGORITHMS or not digest or any(c not in "0123456789abcdef" for c in digest):
        raise VaelabError(f"checksum {checksum!r} is malformed; write it as 'md5:<hex>' or 'sha256:<hex>'")
    return algorithm, digest


@dataclass(frozen=True)
class SourceFile:
    """One file to fetch: its name on disk, mirrors to try in order, and its pinned checksum."""

    filename: str
    urls: tuple[str, ...]
    checksum: str  # "md5:<hex>" or "sha256:<hex>"


@dataclass(frozen=True)
class DatasetKind:
    """What one dataset kind is (see the module docstring).

    ``files``: what the download stage fetches, all of them; ``alternative``: files a local
    mirror may hold instead of ``files`` (each checked against its own published hash);
    ``class_names``: by label (empty: the class folders' sorted names); ``drop_classes``:
    folders that are not classes; ``resized``: images are centre-cropped and resized to
    ``data.image_size`` and split by ``data.test_fraction``; ``takes_path``: the kind reads a
    user's folder (``data.path``) instead of downloading; ``reader``: the function of
    :mod:`vaelab.data.preprocess` that prepares it.
    """

    name: str
    reader: str
    files: tuple[SourceFile, ...] = ()
    alternative: tuple[SourceFile, ...] = ()
    class_names: tuple[str, ...] = ()
    drop_classes: tuple[str, ...] = ()
    resized: bool = False
    takes_path: bool = False


def _idx_files(mirrors: tuple[str, ...], checksums: tuple[str, ...]) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(name, tuple(m + name for m in mirrors), digest)
                 for name, digest in zip((*IDX_TRAIN, *IDX_TEST), checksums))


KINDS: dict[str, DatasetKind] = {kind.name: kind for kind in (
    DatasetKind(
        "mnist", reader="prepare_idx",
        files=_idx_files(("https://storage.googleapis.com/cvdf-datasets/mnist/",
                          "https://ossci-datasets.s3.amazonaws.com/mnist/"),
                         ("md5:f68b3c2dcbeaaa9fbdd348bbdeb94873", "md5:d53e105ee54ea40749a09fcbcd1e9432",
                          "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                          "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")),
        class_names=tuple(str(d) for d in range(10)),
    ),
    DatasetKind(
        "fashion_mnist", reader="prepare_idx",
        # The authors' bucket is an S3 *website* endpoint, which answers plain HTTP only; the md5
        # still guards every byte.
        files=_idx_files(("https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
                          "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
                         ("md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d", "md5:25c81989df183df01b3e8a0aad5dffbe",
                          "md5:bef4ecab320f06d8554ea6380940ec79", "md5:bb300cfdad3c16e7a12a480ee83cd310")),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    DatasetKind(
        "cifar10", reader="prepare_cifar10",
        files=(SourceFile(CIFAR10_ARCHIVE, ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                          "md5:c32a1d4ab5d03f1284b67883e8d87530"),),
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    DatasetKind(
        "caltech101", reader="prepare_caltech101",
        # CaltechDATA's zip (its sha256 fixes every byte inside it, the original tarball too) ...
        files=(SourceFile(CALTECH101_ZIP, ("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip"
                                           "?download=1",),
                          "sha256:331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91"),),
        # ... or, in a mirror, the original tarball alone, by its own md5 (torchvision's pin).
        alternative=(SourceFile(CALTECH101_TAR, (), "md5:b224c7392d521a49829488ab0f1120d9"),),
        drop_classes=("BACKGROUND_Google",), resized=True,
    ),
    DatasetKind("image_folder", reader="prepare_image_folder", resized=True, takes_path=True),
)}


def load_source_table(env: Mapping[str, str] | None = None) -> dict[str, DatasetKind]:
    """The registry, with the files of some kinds replaced by the JSON table named by
    ``VAELAB_SOURCES`` (when set): kind -> list of ``{"filename", "urls", "checksum"}``. A
    replaced kind has no alternative files; kinds the table leaves out keep theirs."""
    env = os.environ if env is None else env
    table_path = env.get(SOURCES_ENV)
    if not table_path:
        return dict(KINDS)
    try:
        raw = json.loads(Path(table_path).read_text())
        override = {kind: tuple(SourceFile(f["filename"], tuple(f["urls"]), f["checksum"]) for f in files)
                    for kind, files in raw.items()}
        for files in override.values():
            for source in files:
                parse_checksum(source.checksum)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, VaelabError) as error:
        raise VaelabError(f"{SOURCES_ENV}={table_path!r} is not a readable source table ({error}); unset it to "
                          f"use the canonical sources") from None
    unknown = sorted(set(override) - set(KINDS))
    if unknown:
        raise VaelabError(f"{SOURCES_ENV}={table_path!r} names unknown dataset kinds {unknown}; known: {sorted(KINDS)}")
    return {name: (dataclasses.replace(kind, files=override[name], alternative=()) if name in override else kind)
            for name, kind in KINDS.items()}


def save_source_table(path: str | Path, files_by_kind: Mapping[str, tuple[SourceFile, ...]]) -> Path:
    """Write a ``VAELAB_SOURCES`` JSON file that :func:`load_source_table` reads back."""
    raw = {kind: [{"filename": f.filename, "urls": list(f.urls), "checksum": f.checksum} for f in files]
           for kind, files in files_by_kind.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw, indent=2))
    return path


def sources_override_warning(env: Mapping[str, str] | None = None) -> str | None:
    """The loud warning to print when ``VAELAB_SOURCES`` replaces the canonical table, else None."""
    env = os.environ if env is None else env
    table = env.get(SOURCES_ENV)
    if not table:
        return None
    return (f"{SOURCES_ENV}={table} is set: using a NON-CANONICAL source table; files and checksums come from "
            f"that file, not from vaelab/data/kinds.py. Unset it for the real datasets.")
