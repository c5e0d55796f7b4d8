"""The stages' command-line plumbing (vaelab.core.cli): what reaches stderr."""

from __future__ import annotations

import os

from vaelab.core.cli import HARMLESS_TF_LINES, fd2_without


def test_fd2_without_drops_only_the_named_lines(capfd):
    """C++ code writes to fd 2 directly: the harmless TensorFlow line is dropped there, every other
    line passes through in order, and fd 2 is itself again afterwards."""
    harmless = f"E0000 00:00:1.0 1 node_def_util.cc:682] {HARMLESS_TF_LINES[0]}: Op<name=MapDataset>\n"
    with fd2_without():
        os.write(2, b"E0000 a real error line\n")
        os.write(2, harmless.encode())
        os.write(2, b"info: another line\n")
        os.write(2, b"no newline at the end")
    os.write(2, b"\nafter\n")
    assert capfd.readouterr().err == "E0000 a real error line\ninfo: another line\nno newline at the end\nafter\n"


def test_fd2_without_restores_fd2_when_the_work_raises(capfd):
    import pytest

    with pytest.raises(RuntimeError):
        with fd2_without():
            os.write(2, b"before the error\n")
            raise RuntimeError("inside")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before the error\nafter\n"
