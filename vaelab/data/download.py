"""Fetch a dataset's files into ``data/raw/<name>/``, verified against pinned hashes of their content.

The files of each dataset kind, their mirror URLs and their pinned hashes come from the kind's
sources file, ``vaelab/data/sources/<kind>.toml`` (:func:`vaelab.data.kinds.load_sources`, with
any ``VAELAB_SOURCES`` replacement). A dataset's identity is its content, so a file verifies by
the first of its pinned identities that matches:

* **checksum**: the file's own hash, as published - the canonical file, byte for byte;
* **content** (where pinned: MNIST's and Fashion-MNIST's idx files): the hash of its gunzipped
  bytes. The same data gzipped with another header or level (Debian's ``dataset-fashion-mnist``,
  a ``gzip -n -9`` copy) is the same dataset and is kept as it is: the readers gunzip any gzip.

For every file:

1. a file already in the out folder that verifies is reused (the stage output is
   ``persist: true``, so a re-run re-verifies instead of fetching again); one that does not is
   fetched again;
2. otherwise it is fetched into a temporary file in the out folder (HTTPS via ``urllib``, a
   tqdm progress bar, a timeout, retries with exponential backoff on transient errors -
   connection errors, timeouts, HTTP 5xx and 429 - then the next mirror URL; a host name that
   does not resolve moves on to the next mirror at once);
3. the temporary file is verified and only then renamed into place, with one info line saying
   which identity matched. A file that matches none is a :class:`~vaelab.core.errors.VaelabError`
   naming it and, for each identity tried, the expected and the actual hash; the temporary file
   is discarded (a mirror's own file is never touched), so nothing half-written is left.

Files in the out folder that the table does not list are removed, so the folder holds
exactly the dataset.

Environment variables:

``VAELAB_DATA_MIRROR``
    A local folder holding the dataset (``$MIRROR/<kind>/<name>`` is looked up first, then
    ``$MIRROR/<name>``; the per-kind sub-folder lets MNIST and Fashion-MNIST, which share file
    names, live in one mirror). When set, files are copied from there, still verified, and the
    network is never touched; a missing file is an error naming the paths looked up. A file
    with a pinned content may also be there uncompressed, under its name without ``.gz`` (as
    torchvision keeps ``MNIST/raw/``): it is gzipped here deterministically (no name, time
    stamp 0, level 6) and verified by content. Where a kind has alternatives, the mirror may
    hold those instead, in this order of preference: the files, the alternative files
    (Caltech101's original ``101_ObjectCategories.tar.gz`` instead of CaltechDATA's zip), each
    checked against its own published hash, then the extracted folder (Caltech101's
    ``101_ObjectCategories/``), copied without the kind's ``drop_classes`` and verified by the
    manifest hash (:func:`folder_manifest`) of the copy, then renamed into place as a whole.
``VAELAB_SOURCES``
    A JSON source table replacing the canonical entries (tests use it to feed generated
    archives with their own real checksums); see :func:`vaelab.data.kinds.load_sources`. Verification is never
    skipped; the stage prints a loud warning when the variable is set.

Kinds that take a path (``image_folder``) have no files: their folder
(``datasets.<name>.data.path``) is copied (a snapshot) into the out folder instead.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from tqdm import tqdm

from vaelab.core.errors import VaelabError
from vaelab.data.images import class_folder_walk, image_suffixes
from vaelab.core.io import atomic_path
from vaelab.data.kinds import DatasetKind, KindSources, SourceFile, SourceFolder, parse_checksum

MIRROR_ENV = "VAELAB_DATA_MIRROR"
# HTTP statuses worth retrying: the server is overloaded or rate-limiting, not refusing.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "vaelab-download/1.0 (Python urllib)"
_CHUNK = 1 << 20
_TEMP_PREFIX = ".download-"
GZIP_LEVEL = 6  # how a file that a mirror holds uncompressed is gzipped here: gzip's default (9 costs many times the time for a few percent)
_GZIP_MAGIC = b"\x1f\x8b"
ANOTHER_GZIP = "the file itself is another gzip"

log = logging.getLogger(__name__)


class _TransientError(Exception):
    """A failure that may go away when the same request is tried again."""


class _PermanentError(Exception):
    """A failure of one URL that retrying will not fix (404, bad URL); try the next mirror."""


def _stream_digest(handle, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    while chunk := handle.read(_CHUNK):
        hasher.update(chunk)
    return hasher.hexdigest()


def file_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest of the file at ``path`` (read in 1 MiB chunks)."""
    with open(path, "rb") as handle:
        return _stream_digest(handle, algorithm)


def gunzipped_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest of the gunzipped bytes of ``path``, decompressed and hashed in 1 MiB chunks (as
    the readers gunzip it: any gzip header or level, several members). Raises ``OSError``,
    ``EOFError`` or ``zlib.error`` when ``path`` is not one whole gzip stream."""
    with gzip.open(path, "rb") as handle:
        return _stream_digest(handle, algorithm)


@dataclass(frozen=True)
class Check:
    """One identity of a file or folder checked: ``identity`` ('checksum', 'content' or
    'manifest'), what was hashed (for messages), the pinned and the actual ``algorithm:hex``, and
    the info line's words when it matched."""

    identity: str
    what: str
    expected: str
    got: str
    verified: str

    @property
    def ok(self) -> bool:
        return self.got == self.expected


def _check(identity: str, what: str, pin: str, digest: Callable[[str], str], verified: str) -> Check:
    """Check ``pin`` (``algorithm:hex``) against ``digest(algorithm)``."""
    algorithm, expected = parse_checksum(pin)
    return Check(identity, what, f"{algorithm}:{expected}", f"{algorithm}:{digest(algorithm)}", verified)


def _content_check(path: Path, pin: str, note: str) -> Check:
    """The content identity: ``pin`` against the digest of the gunzipped bytes of ``path``."""
    algorithm, expected = parse_checksum(pin)
    what = f"{algorithm} of its uncompressed bytes"
    verified = f"content verified ({algorithm} of the uncompressed bytes; {note})"
    try:
        got = f"{algorithm}:{gunzipped_digest(path, algorithm)}"
    except (OSError, EOFError, zlib.error) as error:
        got = f"no whole gzip stream ({error})"
    return Check("content", what, f"{algorithm}:{expected}", got, verified)


def verify_file(path: str | Path, source: SourceFile, content_only: bool = False,
                note: str = ANOTHER_GZIP) -> list[Check]:
    """Check ``path`` against the identities ``source`` pins, in order - its checksum (unless
    ``content_only``), then its content (where pinned) - stopping at the first that matches.
    The file verified when the last check is ``ok``; ``note`` says, for a content match, what
    the file itself is."""
    path = Path(path)
    checks = []
    if not content_only:
        checks.append(_check("checksum", "the file", source.checksum, lambda algorithm: file_digest(path, algorithm),
                             "checksum verified (the canonical file)"))
    if source.content is not None and not _verified(checks):
        checks.append(_content_check(path, source.content, note))
    return checks


def _verified(checks: list[Check]) -> bool:
    return bool(checks) and checks[-1].ok


def checksum_matches(path: str | Path, checksum: str) -> tuple[bool, str]:
    """(whether ``path`` has ``checksum``, its actual ``algorithm:hex``)."""
    algorithm, expected = parse_checksum(checksum)
    actual = file_digest(path, algorithm)
    return actual == expected, f"{algorithm}:{actual}"


def local_source(path: str | Path, algorithm: str = "sha256", base_url: str | None = None,
                 content: bool = False) -> SourceFile:
    """A :class:`SourceFile` for a file on disk with its real checksum (and, with ``content``, the
    sha256 of its gunzipped bytes), served from ``base_url + name`` if given, else from its
    ``file://`` URI (offline mirrors, tests)."""
    path = Path(path)
    url = f"{base_url.rstrip('/')}/{path.name}" if base_url else path.resolve().as_uri()
    pinned = f"sha256:{gunzipped_digest(path, 'sha256')}" if content else None
    return SourceFile(path.name, (url,), f"{algorithm}:{file_digest(path, algorithm)}", pinned)


def _hashes(checks: list[Check]) -> str:
    """``checksum (the file) expected md5:..., got md5:...; content (...) expected ..., got ...``."""
    return "; ".join(f"{c.identity} ({c.what}) expected {c.expected}, got {c.got}" for c in checks)


def _mismatch(name: str, origin: str, checks: list[Check], discarded: str) -> VaelabError:
    identities = " and ".join(c.identity for c in checks)
    return VaelabError(
        f"{identities} mismatch for {name} (from {origin}): {_hashes(checks)}; {discarded}. A mirror may "
        f"serve a different or damaged file: retry, or check the file and its kind's "
        f"vaelab/data/sources/<kind>.toml"
    )


def _discarded(out_dir: Path, mirror: str | Path | None) -> str:
    """What a failed verification threw away: the temporary copy, never the mirror's own file."""
    if mirror is None:
        return f"the downloaded temporary file in {out_dir} was discarded"
    return f"the temporary copy in {out_dir} was discarded and the mirror's own copy left untouched"


def _read_to(response, handle, total: int | None, label: str) -> None:
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
              leave=False, disable=None) as bar:
        while chunk := response.read(_CHUNK):
            handle.write(chunk)
            bar.update(len(chunk))


def _fetch_once(url: str, dest: Path, timeout: float, label: str,
                opener: Callable[..., object]) -> None:
    """One attempt to GET ``url`` into ``dest``; classifies failures as transient or permanent."""
    try:
        # Some hosts refuse urllib's default User-Agent; name the client honestly instead.
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with opener(request, timeout=timeout) as response:  # type: ignore[attr-defined]
            length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            total = int(length) if length and length.isdigit() else None
            with open(dest, "wb") as handle:
                _read_to(response, handle, total, label)
            if total is not None and dest.stat().st_size != total:
                raise _TransientError(f"connection closed after {dest.stat().st_size} of {total} bytes")
    except urllib.error.HTTPError as error:
        message = f"HTTP {error.code} {error.reason}"
        if error.code in TRANSIENT_STATUSES:
            raise _TransientError(message) from None
        raise _PermanentError(message) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, FileNotFoundError):  # a file:// URL to a missing file
            raise _PermanentError(f"not found ({error.reason})") from None
        if isinstance(error.reason, socket.gaierror):
            # The host name does not resolve (offline, or no such host): waiting seconds will not
            # change that, so move on to the next mirror at once instead of retrying.
            raise _PermanentError(f"cannot resolve the host ({error.reason})") from None
        # Refused connections, resets, TLS errors: may be a network blip.
        raise _TransientError(f"cannot connect ({error.reason})") from None
    except (socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise _TransientError(f"{type(error).__name__}: {error}") from None
    except ValueError as error:  # unknown URL type
        raise _PermanentError(str(error)) from None


def fetch_url(url: str, dest: str | Path, *, timeout: float = 60.0, retries: int = 4,
              backoff: float = 2.0, label: str = "", opener: Callable[..., object] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> None:
    """Download ``url`` into ``dest``, retrying transient failures.

    Tries ``1 + retries`` times, sleeping ``backoff * 2**k`` seconds after the k-th transient
    failure. Raises ``_PermanentError`` (caught by :func:`fetch_file`, which moves on to the
    next mirror) when the URL fails permanently or the retries are used up.
    """
    opener = urllib.request.urlopen if opener is None else opener
    dest = Path(dest)
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, dest, timeout, label, opener)
            return
        except _TransientError as error:
            if attempt == retries:
                raise _PermanentError(f"{error} (gave up after {retries + 1} attempts)") from None
            delay = backoff * 2 ** attempt
            log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url, error, delay,
                        attempt + 2, retries + 1)
            sleep(delay)


def _name(source: SourceFile | SourceFolder) -> str:
    """The name ``source`` has in the out folder."""
    return source.name if isinstance(source, SourceFolder) else source.filename


def _names_in_mirror(source: SourceFile | SourceFolder) -> tuple[str, ...]:
    """The names ``source`` may have in a mirror: its own, and for a gzipped file with a pinned
    content its name without ``.gz`` (the file uncompressed)."""
    name = _name(source)
    if isinstance(source, SourceFile) and source.content is not None and name.endswith(".gz"):
        return name, name[:-len(".gz")]
    return (name,)


def mirror_candidates(mirror: str | Path, kind: str, source: SourceFile | SourceFolder) -> tuple[Path, ...]:
    """Where a mirror may hold ``source``, in order: each of its names (:func:`_names_in_mirror`)
    in ``<mirror>/<kind>/``, then each in ``<mirror>/``: the kind's own folder first, so MNIST's
    files at the top level never stand in for Fashion-MNIST's, which share their names."""
    mirror = Path(mirror)
    return tuple(folder / name for folder in (mirror / kind, mirror) for name in _names_in_mirror(source))


def _find_in_mirror(mirror: str | Path, kind: str, source: SourceFile | SourceFolder) -> Path:
    """The first of :func:`mirror_candidates` that the mirror holds (a file, or a folder for a
    :class:`SourceFolder`); an error naming every path looked up when none."""
    candidates = mirror_candidates(mirror, kind, source)
    folder = isinstance(source, SourceFolder)
    found = next((p for p in candidates if (p.is_dir() if folder else p.is_file())), None)
    if found is None:
        looked = ", ".join(map(str, candidates[:-1])) + f" and {candidates[-1]}"
        what = "folder there or unset it to download the archive" if folder else "file there or unset it to download it"
        raise VaelabError(f"{MIRROR_ENV}={mirror}: {_name(source)} not found (looked for {looked}); put the {what}")
    return found


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC


def gzip_file(source: str | Path, dest: str | Path) -> None:
    """Gzip ``source`` into ``dest``, streamed and deterministic (no file name, time stamp 0, level
    :data:`GZIP_LEVEL`): the same bytes always give the same file."""
    with open(source, "rb") as raw, open(dest, "wb") as out, \
            gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0) as packed:
        shutil.copyfileobj(raw, packed, _CHUNK)


def _copy_from_mirror(found: Path, tmp: Path, source: SourceFile) -> tuple[bool, str]:
    """Copy the mirror's ``found`` into ``tmp`` as the out folder keeps it: (whether only its content
    can verify, what the file itself is). A file with a pinned content that is not a gzip is
    gzipped here (:func:`gzip_file`), so the readers find the ``.gz`` they expect."""
    if source.content is not None and not _is_gzip(found):
        gzip_file(found, tmp)
        return True, "the file itself is uncompressed, gzipped here"
    shutil.copyfile(found, tmp)
    return False, ANOTHER_GZIP


def _reuse_present(target: Path, source: SourceFile) -> bool:
    """Whether ``target``, present in the out folder, verifies (then it is kept); one that does not
    is deleted, to be fetched again."""
    checks = verify_file(target, source)
    if _verified(checks):
        log.info("%s: present, %s", source.filename, checks[-1].verified)
        return True
    log.warning("%s: present but %s; fetching it again", source.filename, _hashes(checks))
    target.unlink()
    return False


def fetch_file(source: SourceFile, out_dir: str | Path, *, kind: str, mirror: str | Path | None = None,
               timeout: float = 60.0, retries: int = 4, backoff: float = 2.0,
               opener: Callable[..., object] | None = None) -> Path:
    """Make ``out_dir/source.filename`` a verified copy of ``source``; return its path.

    Reuses a present file that verifies (:func:`verify_file`); otherwise copies it from
    ``mirror`` (if given: never the network) or downloads it from ``source.urls`` in turn, into
    a temporary file that is renamed into place only after it verifies.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / source.filename
    parse_checksum(source.checksum)  # a malformed table entry fails before any work
    if target.is_file() and _reuse_present(target, source):
        return target

    fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=f"-{source.filename}", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        content_only, note = False, ANOTHER_GZIP
        if mirror is not None:
            found = _find_in_mirror(mirror, kind, source)
            content_only, note = _copy_from_mirror(found, tmp, source)
            origin = str(found)
        else:
            origin = _download_from_mirrors(source, tmp, timeout=timeout, retries=retries,
                                            backoff=backoff, opener=opener)
        checks = verify_file(tmp, source, content_only, note)
        if not _verified(checks):
            raise _mismatch(source.filename, origin, checks, _discarded(out_dir, mirror))
        tmp.chmod(0o644)  # mkstemp makes it private; the dataset file is not
        os.replace(tmp, target)
        log.info("%s: from %s, %s", source.filename, origin, checks[-1].verified)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _download_from_mirrors(source: SourceFile, tmp: Path, **kwargs) -> str:
    if not source.urls:
        raise VaelabError(f"{source.filename}: the source table lists no URL; set {MIRROR_ENV} to a folder holding it")
    failures = []
    for url in source.urls:
        try:
            fetch_url(url, tmp, label=source.filename, **kwargs)
            return url
        except _PermanentError as error:
            log.warning("%s: %s; trying the next mirror", url, error)
            failures.append(f"{url}: {error}")
    raise VaelabError(
        f"cannot download {source.filename}: every mirror failed ({'; '.join(failures)}); check the "
        f"network or proxy (https_proxy), or download it by hand and set {MIRROR_ENV} to its folder"
    )


def remove_unlisted(out_dir: str | Path, keep: Iterable[str]) -> list[str]:
    """Delete everything in ``out_dir`` not named in ``keep`` (stale files, leftover temp files)."""
    out_dir = Path(out_dir)
    keep = set(keep)
    removed = []
    for entry in sorted(out_dir.iterdir()):
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    if removed:
        log.info("removed files not in the source table: %s", ", ".join(removed))
    return removed


def _out_folder(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise VaelabError(f"{out_dir} exists and is not a folder; delete it and re-run")
    return out_dir


def download_files(kind: str, files: Iterable[SourceFile], out_dir: str | Path, *,
                   mirror: str | Path | None = None, **fetch_kwargs) -> list[Path]:
    """Fetch every file of one dataset kind into ``out_dir`` and remove anything else there."""
    files = tuple(files)
    out_dir = _out_folder(out_dir)
    paths = [fetch_file(f, out_dir, kind=kind, mirror=mirror, **fetch_kwargs) for f in files]
    remove_unlisted(out_dir, [f.filename for f in files])
    return paths


def class_folder_files(folder: str | Path, exclude: Iterable[str] = ()) -> list[str]:
    """The relative POSIX paths, sorted, of every file in the class folders of ``folder``: its
    sub-folders (and their nested folders) except hidden ones and those named in ``exclude``.
    Hidden files are skipped; so are loose files beside the class folders."""
    folder = Path(folder)
    return sorted(path.relative_to(folder).as_posix() for _, path in class_folder_walk(folder, exclude))


def folder_manifest(folder: str | Path, exclude: Iterable[str] = (), algorithm: str = "sha256") -> tuple[str, int]:
    """(the manifest hash of an extracted class folder, how many files it covers).

    The manifest is one line ``<hex digest>  <relative POSIX path>\\n`` per file of
    :func:`class_folder_files` (``sha256sum``'s format, sorted by path); its own digest is the
    pin. It fixes every byte, name and class of the images and nothing else (time stamps, hidden
    files, the class folders named in ``exclude``), so an extracted archive verifies wherever it was
    extracted. Files are read in 1 MiB chunks.
    """
    folder = Path(folder)
    hasher, count = hashlib.new(algorithm), 0
    for relative in class_folder_files(folder, exclude):
        line = f"{file_digest(folder / relative, algorithm)}  {relative}\n"
        hasher.update(line.encode("utf-8", "surrogateescape"))
        count += 1
    return hasher.hexdigest(), count


def _manifest_check(folder: Path, source: SourceFolder, exclude: Iterable[str]) -> Check:
    algorithm, _ = parse_checksum(source.manifest)
    digest, count = folder_manifest(folder, exclude, algorithm)
    return _check("manifest", f"of its {count:,} files", source.manifest, lambda _: digest,
                  f"manifest of {count:,} files verified")


def fetch_folder(source: SourceFolder, out_dir: str | Path, *, kind: str, mirror: str | Path | None = None,
                 exclude: Iterable[str] = ()) -> Path:
    """Make ``out_dir/source.name`` a verified copy of the extracted folder ``source``; return its path.

    Reuses a present folder whose manifest (:func:`folder_manifest`, without the class folders
    named in ``exclude``) matches; otherwise copies the files that manifest covers from ``mirror`` into
    a temporary folder beside the target, verifies the copy's manifest and only then renames it
    into place. An extracted folder comes from a local mirror only.
    """
    out_dir, exclude = Path(out_dir), tuple(exclude)
    target = out_dir / source.name
    parse_checksum(source.manifest)
    if target.is_dir():
        check = _manifest_check(target, source, exclude)
        if check.ok:
            log.info("%s: present, %s", source.name, check.verified)
            return target
        log.warning("%s: present but %s; copying it again", source.name, _hashes([check]))
        shutil.rmtree(target)
    if mirror is None:
        raise VaelabError(f"{source.name}: an extracted folder comes from a local mirror only; set {MIRROR_ENV} "
                          f"to the folder holding {kind}/{source.name}/")
    found = _find_in_mirror(mirror, kind, source)
    with atomic_path(target) as tmp:
        for relative in class_folder_files(found, exclude):
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found / relative, tmp / relative)
        check = _manifest_check(tmp, source, exclude)
        if not check.ok:
            raise _mismatch(source.name, str(found), [check], _discarded(out_dir, mirror))
    log.info("%s: from %s, %s", source.name, found, check.verified)
    return target


def snapshot_image_folder(source: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Copy the class folders of ``source`` into ``out_dir`` (replacing it atomically).

    ``source`` must hold one sub-folder per class with image files (any format Pillow reads,
    found by file name suffix; nested folders inside a class folder count for that class).
    Hidden files and folders are skipped; symlinks are followed (their targets are copied).
    Returns the number of image files per class.
    """
    source = Path(source)
    if not source.is_dir():
        raise VaelabError(
            f"image folder {source} does not exist or is not a folder; set datasets.<name>.data.path "
            f"to a folder holding one sub-folder of images per class"
        )
    suffixes = image_suffixes()
    counts: dict[str, int] = {}
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        counts[class_dir.name] = sum(
            1 for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in suffixes
            and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
        )
    if not any(counts.values()):
        found = f"class folders {sorted(counts)} without images" if counts else "no class sub-folders"
        raise VaelabError(
            f"image folder {source} has {found}; it must hold one sub-folder per class with image "
            f"files (.jpg, .png, .bmp, .gif, .webp, ...)"
        )
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for class_dir, n in counts.items():
            if n:
                shutil.copytree(source / class_dir, tmp / class_dir, symlinks=False,
                                ignore=shutil.ignore_patterns(".*"))
    log.info("snapshot of %s: %d classes, %d image files", source, sum(1 for n in counts.values() if n),
             sum(counts.values()))
    return counts


def _holds(place: Path, kind: str, route, in_mirror: bool) -> bool:
    """Whether the mirror (``in_mirror``) or the out folder ``place`` holds all of ``route``."""
    def paths(source):
        return mirror_candidates(place, kind, source) if in_mirror else (place / _name(source),)

    if isinstance(route, SourceFolder):
        return any(p.is_dir() for p in paths(route))
    return bool(route) and all(any(p.is_file() for p in paths(f)) for f in route)


def what_to_fetch(kind: str, sources: KindSources, mirror: str | Path | None,
                  out_dir: str | Path) -> tuple[SourceFile, ...] | SourceFolder:
    """What the download stage fetches of ``sources``: of its files, its alternative files and its
    extracted folder, in that order of preference, the first that the mirror holds, else the
    first that ``out_dir`` already holds (a re-run re-verifies it), else the files."""
    routes = [route for route in (sources.files, sources.alternative, sources.folder) if route]
    for place, in_mirror in ((mirror, True), (out_dir, False)):
        if place is not None and Path(place).is_dir():
            held = next((route for route in routes if _holds(Path(place), kind, route, in_mirror)), None)
            if held is not None:
                return held
    return sources.files


def download_dataset(kind: DatasetKind, sources: KindSources, out_dir: str | Path, *, path: str | None = None,
                     env: Mapping[str, str] | None = None, **fetch_kwargs) -> None:
    """The download stage: fetch dataset ``kind`` (a registry entry, :mod:`vaelab.data.kinds`) from
    ``sources`` into ``out_dir`` (:func:`what_to_fetch`); for a kind that takes a path, snapshot
    ``path``. ``env`` supplies ``VAELAB_DATA_MIRROR``."""
    env = os.environ if env is None else env
    if kind.takes_path:
        if not path:
            raise VaelabError(f"a {kind.name} dataset needs data.path: a folder with one sub-folder of images per class")
        snapshot_image_folder(path, out_dir)
        return
    mirror = env.get(MIRROR_ENV) or None
    if mirror is not None and not Path(mirror).is_dir():
        raise VaelabError(f"{MIRROR_ENV}={mirror} is not a folder; point it at the folder holding the dataset files or unset it")
    out_dir = _out_folder(out_dir)
    route = what_to_fetch(kind.name, sources, mirror, out_dir)
    if isinstance(route, SourceFolder):
        fetch_folder(route, out_dir, kind=kind.name, mirror=mirror, exclude=kind.drop_classes)
        remove_unlisted(out_dir, [route.name])
    else:
        download_files(kind.name, route, out_dir, mirror=mirror, **fetch_kwargs)
