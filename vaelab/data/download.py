"""Fetch a dataset's canonical files into ``data/raw/<name>/``, verified against pinned checksums.

The files of each dataset kind, their mirror URLs and their checksums come from the kind's
sources file, ``vaelab/data/sources/<kind>.toml`` (:func:`vaelab.data.kinds.load_sources`, with
any ``VAELAB_SOURCES`` replacement). For every file:

1. a file already in the out folder whose checksum matches is reused (the stage output is
   ``persist: true``, so a re-run re-verifies instead of fetching again); one that does not
   match is fetched again;
2. otherwise it is fetched into a temporary file in the out folder (HTTPS via ``urllib``, a
   tqdm progress bar, a timeout, retries with exponential backoff on transient errors -
   connection errors, timeouts, HTTP 5xx and 429 - then the next mirror URL; a host name that
   does not resolve moves on to the next mirror at once);
3. the checksum is verified and only then is the file renamed into place. A mismatch is a
   :class:`~vaelab.core.errors.VaelabError` naming the file, the expected and the actual hash, and
   nothing is left behind.

Files in the out folder that the table does not list are removed, so the folder holds
exactly the dataset.

Environment variables:

``VAELAB_DATA_MIRROR``
    A local folder holding the canonical files by file name (``$MIRROR/<kind>/<filename>``
    is looked up first, then ``$MIRROR/<filename>``; the per-kind sub-folder lets MNIST and
    Fashion-MNIST, which share file names, live in one mirror). When set, files are copied
    from there, still checksum-verified, and the network is never touched; a missing file is
    an error naming the paths looked up. Where a kind has alternative files (Caltech101's
    original ``101_ObjectCategories.tar.gz`` instead of CaltechDATA's zip), a mirror may hold
    those instead, each checked against its own published hash.
``VAELAB_SOURCES``
    A JSON source table replacing the canonical entries (tests use it to feed generated
    archives with their own real checksums); see :func:`vaelab.data.kinds.load_sources`. Verification is never
    skipped; the stage prints a loud warning when the variable is set.

Kinds that take a path (``image_folder``) have no files: their folder
(``datasets.<name>.data.path``) is copied (a snapshot) into the out folder instead.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Callable, Iterable, Mapping

from tqdm import tqdm

from vaelab.core.errors import VaelabError
from vaelab.data.images import image_suffixes
from vaelab.core.io import atomic_path
from vaelab.data.kinds import DatasetKind, KindSources, SourceFile, parse_checksum

MIRROR_ENV = "VAELAB_DATA_MIRROR"
# HTTP statuses worth retrying: the server is overloaded or rate-limiting, not refusing.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "vaelab-download/1.0 (Python urllib)"
_CHUNK = 1 << 20
_TEMP_PREFIX = ".download-"

log = logging.getLogger(__name__)


class _TransientError(Exception):
    """A failure that may go away when the same request is tried again."""


class _PermanentError(Exception):
    """A failure of one URL that retrying will not fix (404, bad URL); try the next mirror."""


def file_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest of the file at ``path`` (read in 1 MiB chunks)."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def checksum_matches(path: str | Path, checksum: str) -> tuple[bool, str]:
    """(whether ``path`` has ``checksum``, its actual ``algorithm:hex``)."""
    algorithm, expected = parse_checksum(checksum)
    actual = file_digest(path, algorithm)
    return actual == expected, f"{algorithm}:{actual}"


def local_source(path: str | Path, algorithm: str = "sha256", base_url: str | None = None) -> SourceFile:
    """A :class:`SourceFile` for a file on disk with its real checksum, served from
    ``base_url + name`` if given, else from its ``file://`` URI (offline mirrors, tests)."""
    path = Path(path)
    url = f"{base_url.rstrip('/')}/{path.name}" if base_url else path.resolve().as_uri()
    return SourceFile(path.name, (url,), f"{algorithm}:{file_digest(path, algorithm)}")


def _mismatch(filename: str, expected: str, actual: str, origin: str) -> VaelabError:
    return VaelabError(
        f"checksum mismatch for {filename} (from {origin}): expected {expected}, got {actual}; "
        f"the file was deleted. A mirror may serve a different or damaged file: retry, or check "
        f"the file and its kind's vaelab/data/sources/<kind>.toml"
    )


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


def mirror_candidates(mirror: str | Path, kind: str, filename: str) -> tuple[Path, Path]:
    """Where a mirror may hold ``filename``: ``<mirror>/<kind>/<filename>``, then ``<mirror>/<filename>``."""
    mirror = Path(mirror)
    return mirror / kind / filename, mirror / filename


def fetch_file(source: SourceFile, out_dir: str | Path, *, kind: str, mirror: str | Path | None = None,
               timeout: float = 60.0, retries: int = 4, backoff: float = 2.0,
               opener: Callable[..., object] | None = None) -> Path:
    """Make ``out_dir/source.filename`` a verified copy of ``source``; return its path.

    Reuses a present file whose checksum matches; otherwise copies it from ``mirror`` (if
    given: never the network) or downloads it from ``source.urls`` in turn, into a temporary
    file that is renamed into place only after its checksum matches.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / source.filename
    parse_checksum(source.checksum)  # a malformed table entry fails before any work
    if target.is_file():
        ok, actual = checksum_matches(target, source.checksum)
        if ok:
            log.info("%s: present, checksum verified", source.filename)
            return target
        log.warning("%s: present but its checksum is %s, not %s; fetching it again",
                    source.filename, actual, source.checksum)
        target.unlink()

    fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=f"-{source.filename}", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if mirror is not None:
            candidates = mirror_candidates(mirror, kind, source.filename)
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise VaelabError(
                    f"{MIRROR_ENV}={mirror}: {source.filename} not found (looked for "
                    f"{candidates[0]} and {candidates[1]}); put the file there or unset {MIRROR_ENV} "
                    f"to download it"
                )
            shutil.copyfile(found, tmp)
            origin = str(found)
        else:
            origin = _download_from_mirrors(source, tmp, timeout=timeout, retries=retries,
                                            backoff=backoff, opener=opener)
        ok, actual = checksum_matches(tmp, source.checksum)
        if not ok:
            raise _mismatch(source.filename, source.checksum, actual, origin)
        tmp.chmod(0o644)  # mkstemp makes it private; the dataset file is not
        os.replace(tmp, target)
        log.info("%s: fetched from %s, checksum verified", source.filename, origin)
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


def download_files(kind: str, files: Iterable[SourceFile], out_dir: str | Path, *,
                   mirror: str | Path | None = None, **fetch_kwargs) -> list[Path]:
    """Fetch every file of one dataset kind into ``out_dir`` and remove anything else there."""
    files = tuple(files)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise VaelabError(f"{out_dir} exists and is not a folder; delete it and re-run")
    paths = [fetch_file(f, out_dir, kind=kind, mirror=mirror, **fetch_kwargs) for f in files]
    remove_unlisted(out_dir, [f.filename for f in files])
    return paths


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


def _in_mirror(mirror: Path, kind: str, files: tuple[SourceFile, ...]) -> bool:
    return bool(files) and all(any(p.is_file() for p in mirror_candidates(mirror, kind, f.filename)) for f in files)


def files_to_fetch(kind: str, sources: KindSources, mirror: str | Path | None) -> tuple[SourceFile, ...]:
    """``sources.files``, or the alternative files when a mirror holds those and not the former."""
    if mirror is not None and sources.alternative and not _in_mirror(Path(mirror), kind, sources.files) \
            and _in_mirror(Path(mirror), kind, sources.alternative):
        return sources.alternative
    return sources.files


def download_dataset(kind: DatasetKind, sources: KindSources, out_dir: str | Path, *, path: str | None = None,
                     env: Mapping[str, str] | None = None, **fetch_kwargs) -> None:
    """The download stage: fetch dataset ``kind`` (a registry entry, :mod:`vaelab.data.kinds`) from
    ``sources`` into ``out_dir``; for a kind that takes a path, snapshot ``path``. ``env`` supplies
    ``VAELAB_DATA_MIRROR``."""
    env = os.environ if env is None else env
    if kind.takes_path:
        if not path:
            raise VaelabError(f"a {kind.name} dataset needs data.path: a folder with one sub-folder of images per class")
        snapshot_image_folder(path, out_dir)
        return
    mirror = env.get(MIRROR_ENV) or None
    if mirror is not None and not Path(mirror).is_dir():
        raise VaelabError(f"{MIRROR_ENV}={mirror} is not a folder; point it at the folder holding the dataset files or unset it")
    download_files(kind.name, files_to_fetch(kind.name, sources, mirror), out_dir, mirror=mirror, **fetch_kwargs)
