"""The download stage: checksums, reuse, mirrors, retries, image-folder snapshots, the CLI."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import logging
import os
import shutil
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests import archive_factory
from tests.conftest import PROJECT_ROOT
from vaelab.data import download
from vaelab.core.errors import VaelabError
from vaelab.data.kinds import CALTECH101_FOLDER, KINDS, KindSources, SourceFile, SourceFolder, canonical_sources, \
    load_sources, parse_checksum, save_source_table, sources_file, sources_override_warning
from vaelab.data.params import DataParams
from vaelab.data.preprocess import prepare_dataset

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture
def mnist_mirror(tmp_path):
    """(mirror folder, MNIST's sources) for tiny MNIST-like files."""
    mirror = tmp_path / "mirror"
    files = archive_factory.write_mnist_like(mirror, n_train=20, n_test=10)
    table_path = archive_factory.write_source_table(tmp_path / "sources.json", {"mnist": files})
    return mirror, load_sources("mnist", {"VAELAB_SOURCES": str(table_path)})


def _download(kind: str, sources: KindSources, out: Path, **kwargs) -> None:
    download.download_dataset(KINDS[kind], sources, out, **kwargs)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_local_source_and_saved_table_round_trip(tmp_path):
    file = tmp_path / "data.bin"
    file.write_bytes(b"vaelab")
    source = download.local_source(file)
    assert source == SourceFile("data.bin", (file.resolve().as_uri(),), archive_factory.file_checksum(file))
    served = download.local_source(file, "md5", base_url="http://localhost:8000/files/")
    assert served.urls == ("http://localhost:8000/files/data.bin",)
    assert served.checksum == "md5:" + hashlib.md5(b"vaelab").hexdigest()
    table_path = save_source_table(tmp_path / "t" / "sources.json", {"mnist": (source, served)})
    env = {"VAELAB_SOURCES": str(table_path)}
    assert load_sources("mnist", env) == KindSources((source, served))
    assert load_sources("cifar10", env) == canonical_sources("cifar10")  # kinds the table leaves out keep theirs
    # A content pin and whole sources (alternative files, a folder) survive the round trip too.
    pinned = dataclasses.replace(source, content="sha256:" + "ab" * 32)
    whole = KindSources((pinned,), (served,), SourceFolder("photos", "sha256:" + "cd" * 32))
    env = {"VAELAB_SOURCES": str(save_source_table(tmp_path / "t2.json", {"mnist": (pinned,), "caltech101": whole}))}
    assert load_sources("mnist", env) == KindSources((pinned,))
    assert load_sources("caltech101", env) == whole


def test_mirror_copy_verifies_and_removes_unlisted_files(tmp_path, mnist_mirror):
    mirror, sources = mnist_mirror
    out = tmp_path / "raw"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    (out / ".download-123-t10k-images-idx3-ubyte.gz").write_text("half a file")
    _download("mnist", sources, out, env={download.MIRROR_ENV: str(mirror)})
    assert _listing(out) == sorted(archive_factory.MNIST_FILES)
    for name in archive_factory.MNIST_FILES:
        assert (out / name).read_bytes() == (mirror / name).read_bytes()


def test_valid_file_is_reused_and_invalid_one_refetched(tmp_path, mnist_mirror):
    mirror, sources = mnist_mirror
    out = tmp_path / "raw"
    env = {download.MIRROR_ENV: str(mirror)}
    _download("mnist", sources, out, env=env)
    kept = out / "train-images-idx3-ubyte.gz"
    before = kept.stat().st_mtime_ns

    # An empty mirror proves nothing is fetched when every file present is valid.
    empty = tmp_path / "empty"
    empty.mkdir()
    _download("mnist", sources, out, env={download.MIRROR_ENV: str(empty)})
    assert kept.stat().st_mtime_ns == before

    damaged = out / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"damaged")
    _download("mnist", sources, out, env=env)
    assert damaged.read_bytes() == (mirror / damaged.name).read_bytes()
    assert kept.stat().st_mtime_ns == before


def test_checksum_mismatch_names_file_and_hashes_and_leaves_nothing(tmp_path, mnist_mirror):
    mirror, sources = mnist_mirror
    good = sources.files[0]
    wrong = "sha256:" + "0" * 64
    source = SourceFile(good.filename, good.urls, wrong)
    out = tmp_path / "raw"
    with pytest.raises(VaelabError) as error:
        download.fetch_file(source, out, kind="mnist", mirror=mirror)
    message = str(error.value)
    actual = archive_factory.file_checksum(mirror / good.filename)
    assert message.startswith(f"checksum mismatch for {good.filename} (from {mirror / good.filename}): checksum "
                              f"(the file) expected {wrong}, got {actual}; the temporary copy in {out} was discarded "
                              f"and the mirror's own copy left untouched. ")
    assert "\n" not in message and "content" not in message  # no content pinned: one identity tried
    assert _listing(out) == []


def test_mirror_missing_file_names_the_paths(tmp_path, mnist_mirror):
    mirror, sources = mnist_mirror
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    out = tmp_path / "raw"
    with pytest.raises(VaelabError, match=r"VAELAB_DATA_MIRROR=.*t10k-labels-idx1-ubyte.gz not found") as error:
        _download("mnist", sources, out, env={download.MIRROR_ENV: str(mirror)})
    assert str(mirror / "t10k-labels-idx1-ubyte.gz") in str(error.value)
    assert str(mirror / "mnist" / "t10k-labels-idx1-ubyte.gz") in str(error.value)
    assert not any(p.name.startswith(".download-") for p in out.iterdir())
    with pytest.raises(VaelabError, match="is not a folder"):
        _download("mnist", sources, out, env={download.MIRROR_ENV: str(tmp_path / "nope")})


def test_table_urls_work_without_a_mirror(tmp_path, mnist_mirror):
    # write_source_table's default URLs are file:// URIs, fetched by the same urllib code.
    _, sources = mnist_mirror
    assert all(s.urls[0].startswith("file://") for s in sources.files)
    out = tmp_path / "raw"
    _download("mnist", sources, out, env={}, backoff=0.0)
    assert _listing(out) == sorted(archive_factory.MNIST_FILES)
    assert all((out / name).stat().st_mode & 0o777 == 0o644 for name in archive_factory.MNIST_FILES)


def test_mirror_kind_subfolder_comes_first(tmp_path):
    # MNIST and Fashion-MNIST share file names; <mirror>/<kind>/ keeps them apart.
    mirror = tmp_path / "mirror"
    archive_factory.write_mnist_like(mirror, n_train=10, n_test=10, seed=1)
    files = archive_factory.write_mnist_like(mirror / "fashion_mnist", n_train=10, n_test=10, seed=2)
    sources = load_sources("fashion_mnist", {"VAELAB_SOURCES": str(
        archive_factory.write_source_table(tmp_path / "s.json", {"fashion_mnist": files}))})
    _download("fashion_mnist", sources, tmp_path / "raw", env={download.MIRROR_ENV: str(mirror)})
    assert (tmp_path / "raw" / files[0].name).read_bytes() == files[0].read_bytes()


def test_real_mnist_test_files_match_the_canonical_table(tmp_path, shared_mnist):
    entries = [s for s in canonical_sources("mnist").files if s.filename.startswith("t10k")]
    assert len(entries) == 2 and all(s.checksum.startswith("sha256:") for s in entries)
    # The pinned table against the shared folder's own SHA256SUMS (an independent record), and the
    # fetched copies hashed here rather than by the download's own check.
    lines = (shared_mnist / "SHA256SUMS").read_text().split("\n")
    sums = {name: digest for digest, name in (line.split() for line in lines if line.strip())}
    for source in entries:
        assert source.checksum == f"sha256:{sums[source.filename]}", source.filename
        path = download.fetch_file(source, tmp_path, kind="mnist", mirror=shared_mnist)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sums[source.filename]


def test_checksum_parsing_is_one_rule_everywhere(tmp_path):
    assert parse_checksum("MD5:ABC") == ("md5", "abc")
    for bad in ("abc", "sha1:abc", "md5:", "md5:xyz"):
        with pytest.raises(VaelabError) as error:
            parse_checksum(bad)
        assert str(error.value) == f"checksum {bad!r} is malformed; write it as 'md5:<hex>' or 'sha256:<hex>'"
    # A source table with a malformed checksum fails when it is read, naming it.
    table = save_source_table(tmp_path / "t.json", {"mnist": (SourceFile("a.gz", (), "sha1:00"),)})
    with pytest.raises(VaelabError, match=r"is not a readable source table \(a.gz: checksum 'sha1:00' is malformed"):
        load_sources("mnist", {"VAELAB_SOURCES": str(table)})


def test_every_kind_has_a_sources_file_naming_the_files_its_reader_reads():
    from vaelab.data import kinds

    idx = (*kinds.IDX_TRAIN, *kinds.IDX_TEST)
    expected = {"mnist": (idx, ()), "fashion_mnist": (idx, ()), "cifar10": ((kinds.CIFAR10_ARCHIVE,), ()),
                "caltech101": ((kinds.CALTECH101_ZIP,), (kinds.CALTECH101_TAR,)), "image_folder": ((), ())}
    assert sorted(expected) == sorted(KINDS)
    for kind, (files, alternative) in expected.items():
        sources = canonical_sources(kind)
        assert tuple(f.filename for f in sources.files) == files, kind
        assert tuple(f.filename for f in sources.alternative) == alternative, kind
        assert all(f.urls for f in sources.files), kind  # an alternative file may live in a mirror only
        assert sources_file(kind).parent == PROJECT_ROOT / "vaelab" / "data" / "sources"
    assert not canonical_sources("image_folder").files and KINDS["image_folder"].takes_path
    # Every idx file pins the sha256 of its gunzipped bytes; the archives pin no content.
    for kind in KINDS:
        sources = canonical_sources(kind)
        for f in (*sources.files, *sources.alternative):
            assert (f.content is not None) == (f.filename in idx), (kind, f.filename)
            assert f.content is None or parse_checksum(f.content)[0] == "sha256"
        assert (sources.folder is not None) == (kind == "caltech101"), kind
    assert canonical_sources("caltech101").folder.name == CALTECH101_FOLDER
    assert sorted(p.stem for p in sources_file("mnist").parent.iterdir()) == sorted(KINDS)  # no stray files


def test_a_broken_sources_file_is_one_line_naming_it(tmp_path, monkeypatch):
    from vaelab.data import kinds

    broken = tmp_path / "mnist.toml"
    monkeypatch.setattr(kinds, "sources_file", lambda kind: broken)
    cases = {'[[files]]\nfilename = "a.gz"\nurls = []\nchecksum = "md5:zz"\n': "a.gz: checksum 'md5:zz' is malformed",
             '[[files]]\nfilename = "a.gz"\n': "'urls'",
             'files = []\nmirrors = []\n': "unknown keys ['mirrors']",
             '[[files]]\nfilename = "a.gz"\nurls = []\nchecksum = "md5:00"\ncontent = "sha256:zz"\n':
                 "a.gz content: checksum 'sha256:zz' is malformed",
             '[[files]]\nfilename = "a.gz"\nurls = []\nchecksum = "md5:00"\ncontents = "sha256:00"\n':
                 "a.gz: unknown keys ['contents']; allowed: filename, urls, checksum, content",
             '[folder]\nname = "f"\n': "'manifest'",
             '[folder]\nname = "f"\nmanifest = "sha256:00"\nexclude = []\n': "folder: unknown keys ['exclude']",
             'files = [': "Invalid value"}
    for text, reason in cases.items():
        broken.write_text(text)
        with pytest.raises(VaelabError) as error:
            load_sources("mnist", {})
        message = str(error.value)
        assert message.startswith(f"{broken} is not a readable source table (") and reason in message, message
        assert "\n" not in message and f"git checkout -- {broken})" in message
    with pytest.raises(VaelabError, match=r"unknown dataset kind 'svhn'; known: \['caltech101'"):
        load_sources("svhn", {})


def test_sources_override_warning():
    assert sources_override_warning({}) is None
    line = sources_override_warning({"VAELAB_SOURCES": "/x.json"})
    assert "NON-CANONICAL" in line and "/x.json" in line


# --------------------------------------------------------------------------- identity by content


CONTENT_NOTE = "content verified (sha256 of the uncompressed bytes; the file itself is another gzip)"
UNCOMPRESSED_NOTE = "content verified (sha256 of the uncompressed bytes; the file itself is uncompressed, gzipped here)"


@pytest.fixture
def idx_files(tmp_path):
    """(the four canonical generated idx .gz files, their sources pinning checksum and content)."""
    files = archive_factory.write_mnist_like(tmp_path / "canonical", n_train=20, n_test=10)
    table = archive_factory.write_source_table(tmp_path / "sources.json", {"mnist": files}, content=True)
    return files, load_sources("mnist", {"VAELAB_SOURCES": str(table)})


def _info_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vaelab.data.download" and r.levelno == logging.INFO]


def _assert_idx_arrays(out: Path) -> None:
    """``out`` holds exactly the arrays :func:`idx_files` wrote, as the preprocess stage reads them."""
    data = prepare_dataset(KINDS["mnist"], DataParams(name="mnist", kind="mnist"), out, seed=0)
    expected = archive_factory.mnist_like_arrays(20, 10)
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(data, f"x_{split}")[..., 0], expected[f"x_{split}"])
        np.testing.assert_array_equal(getattr(data, f"y_{split}"), expected[f"y_{split}"])


def test_a_regzipped_idx_file_is_accepted_by_its_content_and_kept_as_it_is(tmp_path, idx_files, caplog):
    files, sources = idx_files
    mirror = tmp_path / "mirror"
    regzipped = [archive_factory.regzip(f, mirror) for f in files[:2]]
    for f in files[2:]:
        shutil.copy(f, mirror / f.name)
    archive_factory.gunzip(files[0], mirror)  # an uncompressed copy too: the .gz comes first
    assert regzipped[0].read_bytes() != files[0].read_bytes()  # another gzip, the same content
    out = tmp_path / "raw"
    with caplog.at_level(logging.INFO, logger="vaelab.data.download"):
        _download("mnist", sources, out, env={download.MIRROR_ENV: str(mirror)})
    assert _info_lines(caplog) == [
        f"{files[0].name}: from {mirror / files[0].name}, {CONTENT_NOTE}",
        f"{files[1].name}: from {mirror / files[1].name}, {CONTENT_NOTE}",
        f"{files[2].name}: from {mirror / files[2].name}, checksum verified (the canonical file)",
        f"{files[3].name}: from {mirror / files[3].name}, checksum verified (the canonical file)"]
    assert _listing(out) == sorted(archive_factory.MNIST_FILES)
    for name in archive_factory.MNIST_FILES:
        assert (out / name).read_bytes() == (mirror / name).read_bytes()  # copied as the mirror holds it
    _assert_idx_arrays(out)


def test_the_kind_s_own_folder_comes_before_the_mirror_top_level(tmp_path, idx_files, caplog):
    """MNIST and Fashion-MNIST share file names: another dataset's .gz at the mirror's top level
    must not stand in for this kind's uncompressed file in ``<mirror>/<kind>/``."""
    files, sources = idx_files
    mirror = tmp_path / "mirror"
    raw = [archive_factory.gunzip(f, mirror / "mnist") for f in files]
    for f in files:  # another dataset's files of the same names, at the top level
        (mirror / f.name).write_bytes(gzip.compress(b"another dataset", mtime=0))
    with caplog.at_level(logging.INFO, logger="vaelab.data.download"):
        _download("mnist", sources, tmp_path / "raw", env={download.MIRROR_ENV: str(mirror)})
    assert _info_lines(caplog)[:4] == [f"{f.name}: from {r}, {UNCOMPRESSED_NOTE}" for f, r in zip(files, raw)]
    _assert_idx_arrays(tmp_path / "raw")


def test_an_uncompressed_idx_file_is_gzipped_deterministically_and_accepted_by_its_content(tmp_path, idx_files,
                                                                                             caplog):
    files, sources = idx_files
    mirror = tmp_path / "mirror"
    raw = [archive_factory.gunzip(f, mirror / "mnist") for f in files]  # torchvision's names, in <kind>/
    outs = tmp_path / "raw", tmp_path / "raw2"
    with caplog.at_level(logging.INFO, logger="vaelab.data.download"):
        for out in outs:
            _download("mnist", sources, out, env={download.MIRROR_ENV: str(mirror)})
    assert _info_lines(caplog)[:4] == [f"{f.name}: from {r}, {UNCOMPRESSED_NOTE}" for f, r in zip(files, raw)]
    for f, r in zip(files, raw):
        written = (outs[0] / f.name).read_bytes()
        assert gzip.decompress(written) == r.read_bytes()
        # gzip's header: deflate, no flags (no file name), time stamp 0, level 6 (no flag), unknown OS.
        assert written[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)  # the raw deflate stream at level 6
        assert written[10:-8] == packer.compress(r.read_bytes()) + packer.flush()
        assert (outs[1] / f.name).read_bytes() == written  # the same bytes every time
    _assert_idx_arrays(outs[0])


@pytest.mark.parametrize("wrapping", ["regzip", "uncompressed"])
def test_one_changed_byte_fails_naming_every_hash_tried_and_leaves_nothing(tmp_path, idx_files, wrapping):
    files, sources = idx_files
    mirror = tmp_path / "mirror"
    content = bytearray(gzip.decompress(files[0].read_bytes()))
    content[-1] ^= 0x01  # one pixel of the last image
    if wrapping == "regzip":
        bad = archive_factory.write_file(mirror / files[0].name, gzip.compress(bytes(content), 1, mtime=7))
    else:
        bad = archive_factory.write_file(mirror / files[0].stem, bytes(content))
    for f in files[1:]:
        shutil.copy(f, mirror / f.name)
    before = bad.read_bytes()
    out = tmp_path / "raw"
    with pytest.raises(VaelabError) as error:
        _download("mnist", sources, out, env={download.MIRROR_ENV: str(mirror)})
    message = str(error.value)
    source = sources.files[0]
    got_content = f"content (sha256 of its uncompressed bytes) expected {source.content}, " \
                  f"got sha256:{hashlib.sha256(content).hexdigest()}"
    if wrapping == "regzip":
        head = f"checksum and content mismatch for {files[0].name} (from {bad}): checksum (the file) expected " \
               f"{source.checksum}, got {archive_factory.file_checksum(bad)}; {got_content}"
    else:  # gzipped here: its own checksum says nothing, only its content is tried
        head = f"content mismatch for {files[0].name} (from {bad}): {got_content}"
    assert message.startswith(f"{head}; the temporary copy in {out} was discarded and the mirror's own copy left "
                              f"untouched. A mirror may serve a different or damaged file"), message
    assert "\n" not in message
    assert _listing(out) == []  # neither the file nor a temporary one
    assert bad.read_bytes() == before


def test_a_present_file_is_reverified_by_its_content(tmp_path, idx_files, caplog):
    files, sources = idx_files
    mirror = tmp_path / "mirror"
    for f in files:
        archive_factory.regzip(f, mirror)
    out = tmp_path / "raw"
    env = {download.MIRROR_ENV: str(mirror)}
    _download("mnist", sources, out, env=env)
    before = {name: (out / name).stat().st_mtime_ns for name in archive_factory.MNIST_FILES}
    empty = tmp_path / "empty"
    empty.mkdir()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vaelab.data.download"):
        _download("mnist", sources, out, env={download.MIRROR_ENV: str(empty)})  # nothing to fetch from
    assert _info_lines(caplog) == [f"{f.name}: present, {CONTENT_NOTE}" for f in files]
    assert {name: (out / name).stat().st_mtime_ns for name in archive_factory.MNIST_FILES} == before

    # A present file whose content changed is fetched again, saying both hashes it failed.
    damaged = out / files[3].name
    damaged.write_bytes(gzip.compress(b"other content"))
    damaged_checksum = archive_factory.file_checksum(damaged)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vaelab.data.download"):
        _download("mnist", sources, out, env=env)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{damaged.name}: present but checksum (the file) expected {sources.files[3].checksum}, got "
        f"{damaged_checksum}; content (sha256 of its uncompressed bytes) expected "
        f"{sources.files[3].content}, got sha256:{hashlib.sha256(b'other content').hexdigest()}; fetching it again"]
    assert damaged.read_bytes() == (mirror / damaged.name).read_bytes()


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the checkout, or a skip saying why they are absent."""
    if not (SHARED_DATA / "fashion_mnist" / "train-images-idx3-ubyte.gz").is_file() \
            or not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST / Fashion-MNIST not found at {SHARED_DATA} (they live in ../shared beside the checkout)")
    return SHARED_DATA


def test_real_idx_files_decompress_to_the_pinned_content(shared_data):
    # The canonical .gz files (checksum as pinned) gunzip to the pinned content: the two pins of
    # each file agree. Hashed here, not by the download's own code. ../shared's MNIST train files
    # are another gzip (gzip -n -9) of the same content: content only.
    cases = [("fashion_mnist", f, True) for f in canonical_sources("fashion_mnist").files]
    cases += [("mnist", f, f.filename.startswith("t10k")) for f in canonical_sources("mnist").files]
    for kind, source, canonical in cases:
        path = shared_data / kind / source.filename
        algorithm, digest = parse_checksum(source.checksum)
        assert (hashlib.new(algorithm, path.read_bytes()).hexdigest() == digest) == canonical, path
        content = hashlib.sha256()
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                content.update(chunk)
        assert source.content == f"sha256:{content.hexdigest()}", path


# --------------------------------------------------------------------------- Caltech101's extracted folder


def _manifest(folder: Path) -> str:
    """The manifest pin, written out here from its definition: ``<sha256>  <path>\\n`` per file in the
    class folders but BACKGROUND_Google, hidden files left out, sorted by path; the sha256 of that."""
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/**/*") if p.is_file())
    lines = [f"{hashlib.sha256((folder / path).read_bytes()).hexdigest()}  {path}\n" for path in paths
             if path.split("/")[0] != archive_factory.BACKGROUND and not any(part.startswith(".") for part in
                                                                              path.split("/"))]
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


@pytest.fixture
def caltech_folder(tmp_path):
    """(a mirror holding Caltech101's extracted folder - BACKGROUND_Google, a hidden file and a loose
    file included - its folder, and the canonical sources with that folder's manifest pinned)."""
    mirror = tmp_path / "mirror"
    folder = archive_factory.write_caltech101_folder(mirror / "caltech101", per_class=3)
    (folder / "accordion" / ".DS_Store").write_bytes(b"finder")
    (folder / "README.txt").write_text("not in a class folder")
    pinned = _manifest(folder)
    assert download.folder_manifest(folder, KINDS["caltech101"].drop_classes) == (pinned.split(":")[1], 12)
    sources = dataclasses.replace(canonical_sources("caltech101"), folder=SourceFolder(CALTECH101_FOLDER, pinned))
    return mirror, folder, sources


def test_caltech101_extracted_folder_is_copied_by_its_manifest(tmp_path, caltech_folder, caplog):
    mirror, folder, sources = caltech_folder
    out = tmp_path / "raw"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with caplog.at_level(logging.INFO, logger="vaelab.data.download"):
        _download("caltech101", sources, out, env={download.MIRROR_ENV: str(mirror)})
    assert _info_lines(caplog)[0] == f"{CALTECH101_FOLDER}: from {folder}, manifest of 12 files verified"
    assert _listing(out) == [CALTECH101_FOLDER]
    copied = out / CALTECH101_FOLDER
    assert _listing(copied) == sorted(archive_factory.CALTECH_COLOURS)  # no BACKGROUND_Google, no loose file
    for class_name in archive_factory.CALTECH_COLOURS:
        assert _listing(copied / class_name) == [f"image_{i:04d}.jpg" for i in (1, 2, 3)]  # no .DS_Store
        for image in (copied / class_name).iterdir():
            assert image.read_bytes() == (folder / class_name / image.name).read_bytes()

    # A re-run re-verifies the present folder, with the mirror or without anything to fetch from.
    before = (copied / "accordion" / "image_0001.jpg").stat().st_mtime_ns
    empty = tmp_path / "empty"
    empty.mkdir()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vaelab.data.download"):
        _download("caltech101", sources, out, env={download.MIRROR_ENV: str(mirror)})
        _download("caltech101", sources, out, env={download.MIRROR_ENV: str(empty)})
    assert _info_lines(caplog) == [f"{CALTECH101_FOLDER}: present, manifest of 12 files verified"] * 2
    assert (copied / "accordion" / "image_0001.jpg").stat().st_mtime_ns == before


def test_caltech101_folder_with_a_changed_byte_fails_and_leaves_nothing(tmp_path, caltech_folder):
    mirror, folder, sources = caltech_folder
    image = folder / "airplanes" / "image_0002.jpg"
    data = bytearray(image.read_bytes())
    data[100] ^= 0x01
    image.write_bytes(bytes(data))
    out = tmp_path / "raw"
    with pytest.raises(VaelabError) as error:
        _download("caltech101", sources, out, env={download.MIRROR_ENV: str(mirror)})
    message = str(error.value)
    got = "sha256:" + download.folder_manifest(folder, KINDS["caltech101"].drop_classes)[0]
    assert message.startswith(
        f"manifest mismatch for {CALTECH101_FOLDER} (from {folder}): manifest (of its 12 files) expected "
        f"{sources.folder.manifest}, got {got}; the temporary copy in {out} was discarded and the mirror's own "
        f"copy left untouched. "), message
    assert "\n" not in message
    assert _listing(out) == []  # no folder, no temporary folder
    assert image.read_bytes() == bytes(data)


def test_caltech101_mirror_preference_zip_then_tarball_then_folder(tmp_path, caltech_folder):
    mirror, folder, sources = caltech_folder
    out = tmp_path / "raw"
    assert download.what_to_fetch("caltech101", sources, mirror, out) == sources.folder
    archive_factory.write_caltech101(mirror / "caltech101", per_class=3, wrap_zip=False)
    assert download.what_to_fetch("caltech101", sources, mirror, out) == sources.alternative
    archive_factory.write_caltech101(mirror, per_class=3)  # in <mirror>/, not <mirror>/caltech101/: found too
    assert download.what_to_fetch("caltech101", sources, mirror, out) == sources.files
    # A mirror holding none of them: what the out folder already holds, else the canonical files.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert download.what_to_fetch("caltech101", sources, empty, out) == sources.files
    (out / CALTECH101_FOLDER).mkdir(parents=True)
    assert download.what_to_fetch("caltech101", sources, empty, out) == sources.folder
    assert download.what_to_fetch("caltech101", sources, None, out) == sources.folder


# --------------------------------------------------------------------------- HTTP


class _Server:
    """A local HTTP server whose handler follows a per-path script of responses."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.script: dict[str, list] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                steps = server.script.get(self.path)
                step = steps.pop(0) if steps else 200
                body = server.files.get(self.path.lstrip("/").split("/")[-1])
                if step == "truncate":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                if body is None:
                    step = 404 if step == 200 else step
                self.send_response(step)
                payload = body if step == 200 else b"nope"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    files = archive_factory.write_mnist_like(tmp_path / "srv", n_train=10, n_test=10)
    with _Server({f.name: f.read_bytes() for f in files}) as server:
        yield server, files


def _one(server, file, *paths):
    return SourceFile(file.name, tuple(server.url + p for p in paths), archive_factory.file_checksum(file))


def test_http_retries_transient_errors(tmp_path, served):
    server, files = served
    source = _one(server, files[0], f"/a/{files[0].name}")
    server.script[f"/a/{files[0].name}"] = [503, 429, "truncate"]
    path = download.fetch_file(source, tmp_path / "raw", kind="mnist", backoff=0.0, timeout=5)
    assert path.read_bytes() == files[0].read_bytes()
    assert server.requests == [f"/a/{files[0].name}"] * 4


def test_http_moves_to_next_mirror_on_404_and_gives_up_cleanly(tmp_path, served):
    server, files = served
    source = _one(server, files[1], "/gone/missing.gz", f"/b/{files[1].name}")
    server.files["missing.gz"] = None
    path = download.fetch_file(source, tmp_path / "raw", kind="mnist", backoff=0.0, timeout=5)
    assert path.read_bytes() == files[1].read_bytes()
    assert server.requests == ["/gone/missing.gz", f"/b/{files[1].name}"]

    server.requests.clear()
    failing = _one(server, files[2], f"/c/{files[2].name}")
    server.script[f"/c/{files[2].name}"] = [503] * 5
    out = tmp_path / "raw2"
    with pytest.raises(VaelabError, match=r"cannot download t10k-images.*HTTP 503.*gave up after 3 attempts"):
        download.fetch_file(failing, out, kind="mnist", retries=2, backoff=0.0, timeout=5)
    assert len(server.requests) == 3 and _listing(out) == []


def test_connection_refused_is_retried_then_reported(tmp_path):
    source = SourceFile("x.gz", ("http://127.0.0.1:9/x.gz",), "md5:" + "0" * 32)
    with pytest.raises(VaelabError, match=r"cannot download x.gz.*cannot connect.*gave up after 3 attempts"):
        download.fetch_file(source, tmp_path / "raw", kind="mnist", retries=2, backoff=0.0, timeout=2)
    assert _listing(tmp_path / "raw") == []


def test_backoff_doubles(tmp_path):
    import urllib.error

    calls, sleeps = [], []

    def opener(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.URLError(ConnectionResetError(104, "Connection reset by peer"))

    with pytest.raises(download._PermanentError, match="gave up after 4 attempts"):
        download.fetch_url("https://example.invalid/x", tmp_path / "x", retries=3, backoff=1.5,
                           opener=opener, sleep=sleeps.append)
    assert calls == ["https://example.invalid/x"] * 4 and sleeps == [1.5, 3.0, 6.0]


def test_a_host_that_does_not_resolve_moves_to_the_next_mirror_at_once(tmp_path):
    import socket
    import urllib.error
    import urllib.request

    file = tmp_path / "x.gz"
    file.write_bytes(b"payload")
    source = SourceFile("x.gz", ("https://offline.invalid/x.gz", file.as_uri()), archive_factory.file_checksum(file))
    calls = []

    def opener(request, timeout):
        calls.append(request.full_url)
        if request.full_url.startswith("https://offline.invalid"):
            raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
        return urllib.request.urlopen(request, timeout=timeout)

    path = download.fetch_file(source, tmp_path / "raw", kind="mnist", retries=4, backoff=60.0, opener=opener)
    assert path.read_bytes() == b"payload"
    assert calls == list(source.urls)  # one try of the unresolvable host, no retries, no back-off wait


def test_registry_urls_are_https_except_s3_website_endpoints():
    from urllib.parse import urlparse

    urls = [url for kind in KINDS for sources in [canonical_sources(kind)]
            for source in (*sources.files, *sources.alternative) for url in source.urls]
    assert urls
    for url in urls:
        parsed = urlparse(url)
        # An S3 *website* endpoint answers plain HTTP only; the pinned checksum guards the bytes.
        expected = "http" if ".s3-website" in parsed.netloc else "https"
        assert parsed.scheme == expected, url
    assert any(url.startswith("http://fashion-mnist.s3-website.") for url in urls)


def test_caltech101_zip_or_the_original_tarball_each_by_its_own_hash(tmp_path):
    import dataclasses

    sources = canonical_sources("caltech101")
    zip_mirror, tar_mirror = tmp_path / "zip", tmp_path / "tar"
    archive_factory.write_caltech101(zip_mirror / "caltech101", per_class=2)
    tarball = archive_factory.write_caltech101(tar_mirror, per_class=2, wrap_zip=False)[0]

    # A mirror holding only the tarball: it is fetched and checked against the tarball's own
    # (canonical) md5, which this generated one does not have.
    with pytest.raises(VaelabError) as error:
        _download("caltech101", sources, tmp_path / "raw", env={download.MIRROR_ENV: str(tar_mirror)})
    message = str(error.value)
    assert "checksum mismatch for 101_ObjectCategories.tar.gz" in message
    assert "expected md5:b224c7392d521a49829488ab0f1120d9" in message
    assert not (tmp_path / "raw" / "101_ObjectCategories.tar.gz").exists()
    # With that tarball's md5 pinned instead, it is what the download stage keeps.
    pinned = dataclasses.replace(sources, alternative=(SourceFile(tarball.name, (), archive_factory.file_checksum(
        tarball, "md5")),))
    _download("caltech101", pinned, tmp_path / "raw", env={download.MIRROR_ENV: str(tar_mirror)})
    assert _listing(tmp_path / "raw") == ["101_ObjectCategories.tar.gz"]
    # A mirror holding the zip: the zip is fetched, by its own sha256 (the canonical one here).
    with pytest.raises(VaelabError, match="checksum mismatch for caltech-101.zip .*expected sha256:3312347"):
        _download("caltech101", sources, tmp_path / "raw2", env={download.MIRROR_ENV: str(zip_mirror)})


# --------------------------------------------------------------------------- image folders


def test_image_folder_snapshot(tmp_path):
    source = archive_factory.write_image_folder(tmp_path / "photos", per_class=2)
    (source / ".hidden").mkdir()
    (source / ".hidden" / "a.png").write_bytes(b"x")
    (source / "notes").mkdir()  # no images: not copied
    (source / "notes" / "readme.txt").write_text("hi")
    out = tmp_path / "raw"
    out.mkdir()
    (out / "old_class").mkdir()
    counts = download.snapshot_image_folder(source, out)
    assert counts == {"Faces_easy": 2, "accordion": 2, "airplanes": 2, "notes": 0, "yin_yang": 2}
    assert _listing(out) == ["Faces_easy", "accordion", "airplanes", "yin_yang"]
    assert _listing(out / "accordion") == _listing(source / "accordion")


def test_image_folder_errors(tmp_path):
    with pytest.raises(VaelabError, match="does not exist"):
        download.snapshot_image_folder(tmp_path / "nope", tmp_path / "raw")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "loose.jpg").write_bytes(b"x")
    with pytest.raises(VaelabError, match="no class sub-folders"):
        download.snapshot_image_folder(empty, tmp_path / "raw")
    (empty / "cats").mkdir()
    (empty / "cats" / "list.txt").write_text("x")
    with pytest.raises(VaelabError, match=r"class folders \['cats'\] without images"):
        download.snapshot_image_folder(empty, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


# --------------------------------------------------------------------------- the stage CLI


def _stage(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "stages.download", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def stage_env(tmp_path, mnist_mirror, write_params):
    mirror, _ = mnist_mirror
    params = write_params(datasets={"mnist": {"data": {"kind": "mnist"}},
                                    "photos": {"data": {"kind": "image_folder", "path": str(tmp_path / "missing")}}})
    env = {**os.environ, "VAELAB_DATA_MIRROR": str(mirror),
           "VAELAB_SOURCES": str(tmp_path / "sources.json")}
    return env, params


@pytest.mark.slow
def test_stage_cli_downloads_with_a_loud_warning(tmp_path, stage_env):
    result = _stage(["--dataset", "mnist", "--out", str(tmp_path / "data/raw/mnist"),
                     "--params", str(stage_env[1])], stage_env[0], PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    assert "warning: VAELAB_SOURCES=" in result.stderr and "NON-CANONICAL" in result.stderr
    assert _listing(tmp_path / "data/raw/mnist") == sorted(archive_factory.MNIST_FILES)
    mirror = Path(stage_env[0]["VAELAB_DATA_MIRROR"])
    assert [line for line in result.stderr.splitlines() if "verified" in line] == [
        f"info: {name}: from {mirror / name}, checksum verified (the canonical file)"
        for name in archive_factory.MNIST_FILES]


@pytest.mark.slow
def test_stage_cli_a_file_matching_no_identity_is_one_error_line(tmp_path, stage_env):
    env, params = stage_env
    mirror = Path(env["VAELAB_DATA_MIRROR"])
    files = [mirror / name for name in archive_factory.MNIST_FILES]
    env["VAELAB_SOURCES"] = str(archive_factory.write_source_table(tmp_path / "pinned.json", {"mnist": files},
                                                                   content=True))
    archive_factory.write_file(files[1], gzip.compress(gzip.decompress(files[1].read_bytes())[:-1] + b"\x07"))
    out = tmp_path / "data/raw/mnist"
    result = _stage(["--dataset", "mnist", "--out", str(out), "--params", str(params)], env, PROJECT_ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: checksum and content mismatch for {files[1].name} (from {files[1]}): checksum (the file) expected ")
    assert "; content (sha256 of its uncompressed bytes) expected sha256:" in errors[0]
    assert _listing(out) == [files[0].name]  # the file verified before it, nothing of the failed one


@pytest.mark.slow
@pytest.mark.parametrize("dataset, message", [
    ("nope", "error: unknown dataset 'nope': params.yaml defines ['mnist', 'photos']; add an entry under 'datasets:' "
             "or pick one of those"),
    ("photos", "error: image folder {tmp}/missing does not exist or is not a folder; set datasets.<name>.data.path "
               "to a folder holding one sub-folder of images per class"),
])
def test_stage_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, stage_env, dataset, message):
    out = tmp_path / "data/raw" / dataset
    result = _stage(["--dataset", dataset, "--out", str(out), "--params", str(stage_env[1])],
                    stage_env[0], PROJECT_ROOT)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [message.format(tmp=tmp_path)] and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
