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

A dataset's identity is its content, so a sources file may pin more than the canonical bytes of
its archives (:mod:`vaelab.data.download` says how each is checked):

* ``[[files]]``: the canonical files, each with ``checksum`` (the file's own hash) and, for a
  gzipped file, optionally ``content`` (the hash of its gunzipped bytes: the same data gzipped
  with another header or level, or not gzipped at all, is still the dataset);
* ``[[alternative]]``: files a local mirror may hold instead (Caltech101's original tarball);
* ``[folder]``: an extracted folder a local mirror may hold instead of both (Caltech101's
  ``101_ObjectCategories/``): its ``name`` and the ``manifest`` hash over every file in its class
  folders (:func:`vaelab.data.download.folder_manifest`).

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
CALTECH101_FOLDER = "101_ObjectCategories"  # the tarball's one top folder, as a mirror may hold it extracted
SOURCE_KEYS = ("files", "alternative", "folder")  # the tables of a sources file


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"md5:<hex>"`` / ``"sha256:<hex>"`` (any case) into (algorithm, lowercase hex digest)."""
    algorithm, _, digest = str(checksum).partition(":")
    algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
    if algorithm not in HASH_ALGORITHMS or not digest or any(c not in "0123456789abcdef" for c in digest):
        raise VaelabError(f"checksum {checksum!r} is malformed; write it as 'md5:<hex>' or 'sha256:<hex>'")
    return algorithm, digest


@dataclass(frozen=True)
class SourceFile:
    """One file to fetch: its name on disk, mirrors to try in order, its pinned checksum and,
    for a gzipped file, optionally the pinned hash of its gunzipped bytes (``content``): a copy
    whose own checksum differs (another gzip header or level) but whose content matches is the
    same dataset."""

    filename: str
    urls: tuple[str, ...]
    checksum: str  # "md5:<hex>" or "sha256:<hex>"
    content: str | None = None  # "sha256:<hex>" of the gunzipped bytes, or None


@dataclass(frozen=True)
class SourceFolder:
    """An extracted folder of class sub-folders a local mirror may hold instead of a kind's
    archives, identified by one hash over a manifest of its files (see
    :func:`vaelab.data.download.folder_manifest`)."""

    name: str  # the folder's name in the mirror and in the out folder
    manifest: str  # "sha256:<hex>" of the manifest


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
    own published hash); ``folder``: an extracted folder a local mirror may hold instead of either
    (checked against its pinned manifest hash)."""

    files: tuple[SourceFile, ...] = ()
    alternative: tuple[SourceFile, ...] = ()
    folder: SourceFolder | None = None


def sources_file(kind: str) -> Path:
    """``vaelab/data/sources/<kind>.toml``, the canonical sources of dataset kind ``kind``."""
    return Path(__file__).with_name("sources") / f"{kind}.toml"


def _pin(label: str, value) -> str:
    """``value`` as a checked ``algorithm:hex`` pin; a malformed one is an error naming ``label``."""
    try:
        parse_checksum(value)
    except VaelabError as error:
        raise VaelabError(f"{label}: {error}") from None
    return str(value)


def _source_files(entries) -> tuple[SourceFile, ...]:
    """``[{"filename", "urls", "checksum"[, "content"]}, ...]`` as checked :class:`SourceFile` s."""
    files = []
    for e in entries:
        unknown = sorted(set(e) - {"filename", "urls", "checksum", "content"})
        if unknown:
            raise ValueError(f"{e.get('filename')}: unknown keys {unknown}; allowed: filename, urls, checksum, content")
        name = str(e["filename"])
        content = _pin(f"{name} content", e["content"]) if "content" in e else None
        files.append(SourceFile(name, tuple(str(u) for u in e["urls"]), _pin(name, e["checksum"]), content))
    return tuple(files)


def _source_folder(entry) -> SourceFolder | None:
    """``{"name", "manifest"}`` as a checked :class:`SourceFolder`; None for None."""
    if entry is None:
        return None
    unknown = sorted(set(entry) - {"name", "manifest"})
    if unknown:
        raise ValueError(f"folder: unknown keys {unknown}; allowed: name, manifest")
    name = str(entry["name"])
    return SourceFolder(name, _pin(f"{name} manifest", entry["manifest"]))


def _kind_sources(raw: Mapping) -> KindSources:
    """A sources table (``files``, ``alternative``, ``folder``; see the module docstring) as checked
    :class:`KindSources`."""
    unknown = sorted(set(raw) - set(SOURCE_KEYS))
    if unknown:
        raise ValueError(f"unknown keys {unknown}; allowed: {', '.join(SOURCE_KEYS)}")
    return KindSources(_source_files(raw.get("files", [])), _source_files(raw.get("alternative", [])),
                       _source_folder(raw.get("folder")))


def canonical_sources(kind: str) -> KindSources:
    """The sources of ``kind`` as its ``sources/<kind>.toml`` writes them."""
    path = sources_file(kind)
    try:
        return _kind_sources(tomllib.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, VaelabError) as error:
        raise VaelabError(f"{path} is not a readable source table ({error}); restore it from git "
                          f"(git checkout -- {path})") from None


def load_sources(kind: str, env: Mapping[str, str] | None = None) -> KindSources:
    """The sources of ``kind``: from the JSON table named by ``VAELAB_SOURCES`` when that is set
    and lists ``kind``, else :func:`canonical_sources`. The table maps a kind to a list of
    ``{"filename", "urls", "checksum"[, "content"]}`` (its files; a kind replaced so has no
    alternative files and no folder) or to an object with the keys of a sources file."""
    if kind not in KINDS:
        raise VaelabError(f"unknown dataset kind {kind!r}; known: {sorted(KINDS)}")
    env = os.environ if env is None else env
    table_path = env.get(SOURCES_ENV)
    if not table_path:
        return canonical_sources(kind)
    try:
        raw = json.loads(Path(table_path).read_text())
        unknown = sorted(set(raw) - set(KINDS))
        entry = raw.get(kind)
        override = None if entry is None else \
            _kind_sources(entry) if isinstance(entry, dict) else KindSources(_source_files(entry))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, VaelabError) as error:
        raise VaelabError(f"{SOURCES_ENV}={table_path!r} is not a readable source table ({error}); unset it to "
                          f"use the canonical sources") from None
    if unknown:
        raise VaelabError(f"{SOURCES_ENV}={table_path!r} names unknown dataset kinds {unknown}; known: {sorted(KINDS)}")
    return canonical_sources(kind) if override is None else override


def _file_entry(source: SourceFile) -> dict:
    entry = {"filename": source.filename, "urls": list(source.urls), "checksum": source.checksum}
    return entry if source.content is None else {**entry, "content": source.content}


def _table_entry(sources: tuple[SourceFile, ...] | KindSources) -> list | dict:
    """One kind's entry of a ``VAELAB_SOURCES`` table: a list of files, or a whole sources table."""
    if not isinstance(sources, KindSources):
        return [_file_entry(f) for f in sources]
    entry: dict = {"files": [_file_entry(f) for f in sources.files],
                   "alternative": [_file_entry(f) for f in sources.alternative]}
    if sources.folder is not None:
        entry["folder"] = {"name": sources.folder.name, "manifest": sources.folder.manifest}
    return entry


def save_source_table(path: str | Path,
                      files_by_kind: Mapping[str, tuple[SourceFile, ...] | KindSources]) -> Path:
    """Write a ``VAELAB_SOURCES`` JSON file that :func:`load_sources` reads back: per kind, its
    files, or whole :class:`KindSources` (alternative files and folder too)."""
    raw = {kind: _table_entry(sources) for kind, sources in files_by_kind.items()}
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
