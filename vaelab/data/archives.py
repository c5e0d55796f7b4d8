"""Read tar.gz and zip archives safely: members are streamed into memory, never extracted.

Nothing is ever written to disk from an archive, so a hostile member cannot land outside the
stage's folder; still, a member whose name is absolute, contains ``..``, or that is a link
(symlink or hardlink) or a device is rejected with a :class:`~vaelab.core.errors.VaelabError`
naming it, because the canonical archives hold none and such a member means the file is
not what it claims to be. A corrupt or truncated archive is a ``VaelabError`` telling the
user to delete it and re-run the download stage, never a bare traceback.

Tar archives are read in streaming mode (``r|*``): one forward pass, one member in memory
at a time, works on non-seekable streams (a tar.gz inside a zip).
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator

from vaelab.core.errors import VaelabError

# Errors that a damaged compressed stream or archive raises from deep inside the stdlib.
CORRUPT_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


def corrupt_error(archive: str | Path, detail: object, dataset: str | None = None) -> VaelabError:
    """The error for a damaged archive, with the command that fetches it again."""
    target = f"download@{dataset}" if dataset else "download@<dataset>"
    return VaelabError(
        f"archive {archive} is truncated or corrupt ({detail}); delete it and re-run `dvc repro {target}`"
    )


def check_member_name(name: str, archive: str | Path) -> str:
    """Return ``name`` with '\\' as '/', or raise if it is absolute or climbs out with ``..``."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise VaelabError(f"archive {archive} holds member {name!r} with an absolute path; refusing to read it "
                          f"(the canonical archives hold none: delete the file and download it again)")
    if ".." in parts:
        raise VaelabError(f"archive {archive} holds member {name!r} with '..' in its path; refusing to read it "
                          f"(the canonical archives hold none: delete the file and download it again)")
    return posix


def _reject_type(name: str, what: str, archive: str | Path) -> VaelabError:
    return VaelabError(f"archive {archive} holds member {name!r}, a {what}; refusing to read it "
                       f"(the canonical archives hold only files and folders: delete it and download it again)")


@dataclass(frozen=True)
class TarEntry:
    """A regular file in a tar archive: its checked name and size in bytes."""

    name: str
    size: int


def _check_tar_member(member: tarfile.TarInfo, archive: str | Path) -> str | None:
    """The member's checked name if it is a regular file, None for a folder; raise otherwise."""
    name = check_member_name(member.name, archive)
    if member.issym():
        raise _reject_type(member.name, f"symlink to {member.linkname!r}", archive)
    if member.islnk():
        raise _reject_type(member.name, f"hardlink to {member.linkname!r}", archive)
    if member.isdev():
        raise _reject_type(member.name, "device or FIFO", archive)
    if member.isdir():
        return None
    if not member.isfile():
        raise _reject_type(member.name, "special file", archive)
    return name


def iter_tar(source: str | Path | BinaryIO, *, label: str | Path | None = None,
             want: Callable[[str], bool] | None = None,
             dataset: str | None = None) -> Iterator[tuple[TarEntry, bytes | None]]:
    """Stream the regular files of a (possibly compressed) tar archive, in archive order.

    ``source`` is a path or a readable binary stream; ``label`` names it in errors. Yields
    ``(entry, data)`` for every regular file: ``data`` is the member's bytes when ``want(name)``
    is true (default: always), else None (the member is skipped without being kept). Every
    member is checked (names, links, devices) whether wanted or not.
    """
    label = label if label is not None else source
    try:
        if isinstance(source, (str, Path)):
            tar = tarfile.open(source, mode="r|*")
        else:
            tar = tarfile.open(fileobj=source, mode="r|*")
    except FileNotFoundError:
        raise VaelabError(f"archive {label} not found; run `dvc repro download@{dataset or '<dataset>'}`") from None
    except CORRUPT_ERRORS as error:
        raise corrupt_error(label, error, dataset) from None
    with tar:
        members = iter(tar)
        while True:
            try:
                member = next(members)
            except StopIteration:
                return
            except CORRUPT_ERRORS as error:
                raise corrupt_error(label, error, dataset) from None
            name = _check_tar_member(member, label)
            if name is None:
                continue
            entry = TarEntry(name, member.size)
            if want is not None and not want(name):
                yield entry, None
                continue
            try:
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
            except CORRUPT_ERRORS as error:
                raise corrupt_error(label, error, dataset) from None
            if len(data) != member.size:
                raise corrupt_error(label, f"member {name!r} has {len(data)} of {member.size} bytes", dataset)
            yield entry, data


def list_tar(source: str | Path | BinaryIO, *, label: str | Path | None = None,
             dataset: str | None = None) -> list[TarEntry]:
    """Every regular file of a tar archive (checked as :func:`iter_tar` does), without keeping data."""
    return [entry for entry, _ in iter_tar(source, label=label, want=lambda _: False, dataset=dataset)]


def _zip_member_type(info: zipfile.ZipInfo) -> int:
    # Unix permission bits live in the high 16 bits of external_attr (when made on Unix).
    return stat.S_IFMT(info.external_attr >> 16)


def open_zip(path: str | Path, dataset: str | None = None) -> zipfile.ZipFile:
    """Open a zip archive and check every member's name and type before anything is read."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise VaelabError(f"archive {path} not found; run `dvc repro download@{dataset or '<dataset>'}`") from None
    except CORRUPT_ERRORS as error:
        raise corrupt_error(path, error, dataset) from None
    try:
        for info in archive.infolist():
            check_member_name(info.filename, path)
            kind = _zip_member_type(info)
            if kind == stat.S_IFLNK:
                raise _reject_type(info.filename, "symlink", path)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise _reject_type(info.filename, "device or special file", path)
    except BaseException:
        archive.close()
        raise
    return archive


def zip_member_stream(archive: zipfile.ZipFile, name: str, dataset: str | None = None) -> BinaryIO:
    """An open stream of member ``name`` of an archive from :func:`open_zip`."""
    try:
        return archive.open(name)  # type: ignore[return-value]
    except KeyError:
        raise VaelabError(
            f"archive {archive.filename} has no member {name!r}; it is not the expected file: delete it "
            f"and re-run `dvc repro download@{dataset or '<dataset>'}`"
        ) from None
    except CORRUPT_ERRORS as error:
        raise corrupt_error(archive.filename, error, dataset) from None
