"""Safe archive reading: hostile member names and types are rejected, damage is a clear error."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from tests import archive_factory
from vaelab.data import archives
from vaelab.core.errors import VaelabError


def _tar_gz(path, members):
    """Write a tar.gz of TarInfo-describing tuples (name, type, data, linkname)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data, linkname in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = linkname
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


GOOD = ("root/ok.bin", tarfile.REGTYPE, b"fine", "")


@pytest.mark.parametrize("member, message", [
    (("../evil", tarfile.REGTYPE, b"x", ""), r"'\.\./evil' with '\.\.'"),
    (("root/../../evil", tarfile.REGTYPE, b"x", ""), r"'root/\.\./\.\./evil' with '\.\.'"),
    (("/etc/evil", tarfile.REGTYPE, b"x", ""), r"'/etc/evil' with an absolute path"),
    (("root/link", tarfile.SYMTYPE, b"", "/etc/passwd"), r"'root/link', a symlink to '/etc/passwd'"),
    (("root/hard", tarfile.LNKTYPE, b"", "root/ok.bin"), r"'root/hard', a hardlink"),
    (("root/dev", tarfile.CHRTYPE, b"", ""), r"'root/dev', a device"),
    (("root/fifo", tarfile.FIFOTYPE, b"", ""), r"'root/fifo', a device or FIFO"),
])
def test_tar_rejects_hostile_members(tmp_path, member, message):
    path = _tar_gz(tmp_path / "a.tar.gz", [GOOD, member])
    with pytest.raises(VaelabError, match=message) as error:
        list(archives.iter_tar(path))
    assert "refusing to read it" in str(error.value) and str(path) in str(error.value)
    # Nothing was extracted anywhere.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_tar_rejects_even_members_it_would_skip(tmp_path):
    path = _tar_gz(tmp_path / "a.tar.gz", [("x/../../evil", tarfile.REGTYPE, b"x", "")])
    with pytest.raises(VaelabError, match="'..'"):
        archives.list_tar(path)


def test_tar_streams_regular_files_only(tmp_path):
    path = _tar_gz(tmp_path / "a.tar.gz", [("root", tarfile.DIRTYPE, b"", ""), GOOD,
                                            ("root/b.bin", tarfile.REGTYPE, b"second", "")])
    got = [(entry.name, entry.size, data) for entry, data in archives.iter_tar(path, want=lambda n: n.endswith("b.bin"))]
    assert got == [("root/ok.bin", 4, None), ("root/b.bin", 6, b"second")]
    assert [e.name for e in archives.list_tar(path)] == ["root/ok.bin", "root/b.bin"]


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_tar_gz_is_a_clear_error(tmp_path, cut):
    good = archive_factory.write_cifar10(tmp_path / "good")[0]
    data = good.read_bytes()
    bad = tmp_path / "cifar-10-binary.tar.gz"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(VaelabError, match=r"truncated or corrupt.*delete it and re-run `dvc repro download@cifar10`"):
        list(archives.iter_tar(bad, dataset="cifar10"))


def test_garbage_and_missing_archives(tmp_path):
    garbage = tmp_path / "x.tar.gz"
    garbage.write_bytes(b"this is not an archive" * 10)
    with pytest.raises(VaelabError, match="truncated or corrupt"):
        archives.list_tar(garbage)
    with pytest.raises(VaelabError, match="not found"):
        archives.list_tar(tmp_path / "absent.tar.gz")
    with pytest.raises(VaelabError, match="truncated or corrupt"):
        archives.open_zip(garbage)


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, mode, data in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: external_attr carries the file type
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


@pytest.mark.parametrize("name, mode, message", [
    ("../evil", 0o100644, r"'\.\./evil' with '\.\.'"),
    ("..\\evil", 0o100644, r"with '\.\.'"),
    ("/abs/evil", 0o100644, "absolute path"),
    ("C:/evil", 0o100644, "absolute path"),
    ("dir/link", 0o120777, r"'dir/link', a symlink"),
    ("dir/dev", 0o020644, "device or special file"),
])
def test_zip_rejects_hostile_members(tmp_path, name, mode, message):
    path = _zip(tmp_path / "a.zip", [("dir/ok.txt", 0o100644, b"ok"), (name, mode, b"target")])
    with pytest.raises(VaelabError, match=message):
        archives.open_zip(path)


def test_zip_member_stream_and_corruption(tmp_path):
    path = archive_factory.write_caltech101(tmp_path, per_class=2)[0]
    inner_name = "caltech-101/101_ObjectCategories.tar.gz"
    with zipfile.ZipFile(path) as raw:
        inner = raw.read(inner_name)
    with archives.open_zip(path) as archive:
        with archives.zip_member_stream(archive, inner_name) as stream:
            assert stream.read() == inner
        with pytest.raises(VaelabError, match="has no member 'nope'"):
            archives.zip_member_stream(archive, "nope")

    # Flip bytes inside the stored member: the CRC check turns it into a corrupt-archive error.
    data = bytearray(path.read_bytes())
    start = bytes(data).index(inner[:64])
    data[start + len(inner) // 2: start + len(inner) // 2 + 16] = b"\xff" * 16
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    with archives.open_zip(damaged, "caltech101") as archive:
        with pytest.raises(VaelabError, match=r"truncated or corrupt.*download@caltech101"):
            with archives.zip_member_stream(archive, inner_name, "caltech101") as stream:
                archives.list_tar(stream, label=inner_name, dataset="caltech101")

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(path.read_bytes()[: len(data) // 2])
    with pytest.raises(VaelabError, match="truncated or corrupt"):
        archives.open_zip(truncated)
