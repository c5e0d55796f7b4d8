"""The dataset kinds: what each kind is, and where its files come from.

Each :class:`DatasetKind` is declared once in :data:`KINDS`: the class names, whether images
are resized (and split by ``test_fraction``), whether the kind reads a user's folder, and the
reader that prepares it. Parameter validation, the download and preprocess stages, the tests'
archive factory and the offline-mirror script all derive from it.

Where each kind's files come from - the files the download stage fetches, their mirror URLs in
order and their pinned checksums (``algorithm:hexdigest``: the values the dataset authors, or
the loaders that pinned them first, torchvision and TFDS, published) - is written in one file
per kind, ``vaelab/data/sources/<kind>.toml``, read by :func:`load_sources`. One file per kind
because a file is what DVC tracks: ``download@<dataset>`` depends on its own kind's file only,
so a new mirror for CIFAR-10 re-runs CIFAR-10's download and no other dataset's.

The reader is named, not imported (a function of :mod:`vaelab.data.preprocess`): every data
stage imports this module through its params, and a stage's DVC deps are exactly the files it
imports, so the registry must not pull the readers (and their edits) into download's deps.

Tests feed generated archives through the same download code with an explicit table file
(``VAELAB_SOURCES``, :func:`load_sources`); verification is never skipped, the table just
names other files and checksums, and a run that uses one says so loudly.
"""

from __future__ import annotations

import json
import os
import tomllib
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

    ``class_names``: by label (empty: the class folders' sorted names); ``drop_classes``:
    folders that are not classes; ``resized``: images are centre-cropped and resized to
    ``data.image_size`` and split by ``data.test_fraction``; ``takes_path``: the kind reads a
    user's folder (``data.path``) instead of downloading; ``reader``: the function of
    :mod:`vaelab.data.preprocess` that prepares it.
    """

    name: str
    reader: str
    class_names: tuple[str, ...] = ()
    drop_classes: tuple[str, ...] = ()
    resized: bool = False
    takes_path: bool = False


KINDS: dict[str, DatasetKind] = {kind.name: kind for kind in (
    DatasetKind("mnist", reader="prepare_idx", class_names=tuple(str(d) for d in range(10))),
    DatasetKind("fashion_mnist", reader="prepare_idx",
                class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    DatasetKind("cifar10", reader="prepare_cifar10",
                class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                             "truck")),
    DatasetKind("caltech101", reader="prepare_caltech101", drop_classes=("BACKGROUND_Google",), resized=True),
    DatasetKind("image_folder", reader="prepare_image_folder", resized=True, takes_path=True),
)}


@dataclass(frozen=True)
class KindSources:
    """Where one kind's files come from. ``files``: what the download stage fetches, all of them;
    ``alternative``: files a local mirror may hold instead of ``files`` (each checked against its
    own published hash)."""

    files: tuple[SourceFile, ...] = ()
    alternative: tuple[SourceFile, ...] = ()


def sources_file(kind: str) -> Path:
    """``vaelab/data/sources/<kind>.toml``, the canonical sources of dataset kind ``kind``."""
    return Path(__file__).with_name("sources") / f"{kind}.toml"


def _source_files(entries) -> tuple[SourceFile, ...]:
    """``[{"filename", "urls", "checksum"}, ...]`` as checked :class:`SourceFile` s."""
    files = tuple(SourceFile(str(e["filename"]), tuple(str(u) for u in e["urls"]), str(e["checksum"]))
                  for e in entries)
    for source in files:
        try:
            parse_checksum(source.checksum)
        except VaelabError as error:
            raise VaelabError(f"{source.filename}: {error}") from None
    return files


def canonical_sources(kind: str) -> KindSources:
    """The sources of ``kind`` as its ``sources/<kind>.toml`` writes them."""
    path = sources_file(kind)
    try:
        raw = tomllib.loads(path.read_text())
        unknown = sorted(set(raw) - {"files", "alternative"})
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: files, alternative")
        files = raw.get("files", [])
        alternative = raw.get("alternative", [])
        return KindSources(_source_files(files), _source_files(alternative))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, VaelabError) as error:
        raise VaelabError(f"{path} is not a readable source table ({error}); restore it from git "
                          f"(git checkout -- {path})") from None


def load_sources(kind: str, env: Mapping[str, str] | None = None) -> KindSources:
    """The sources of ``kind``: from the JSON table named by ``VAELAB_SOURCES`` when that is set
    and lists ``kind`` (kind -> list of ``{"filename", "urls", "checksum"}``; a replaced kind has
    no alternative files), else :func:`canonical_sources`."""
    if kind not in KINDS:
        raise VaelabError(f"unknown dataset kind {kind!r}; known: {sorted(KINDS)}")
    env = os.environ if env is None else env
    table_path = env.get(SOURCES_ENV)
    if not table_path:
        return canonical_sources(kind)
    try:
        raw = json.loads(Path(table_path).read_text())
        unknown = sorted(set(raw) - set(KINDS))
        override = _source_files(raw[kind]) if kind in raw else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, VaelabError) as error:
        raise VaelabError(f"{SOURCES_ENV}={table_path!r} is not a readable source table ({error}); unset it to "
                          f"use the canonical sources") from None
    if unknown:
        raise VaelabError(f"{SOURCES_ENV}={table_path!r} names unknown dataset kinds {unknown}; known: {sorted(KINDS)}")
    return canonical_sources(kind) if override is None else KindSources(override)


def save_source_table(path: str | Path, files_by_kind: Mapping[str, tuple[SourceFile, ...]]) -> Path:
    """Write a ``VAELAB_SOURCES`` JSON file that :func:`load_sources` reads back."""
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
            f"that file, not from vaelab/data/sources/. Unset it for the real datasets.")
