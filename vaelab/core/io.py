"""Writing outputs so that a failure never leaves a half-written file behind, and reading arrays
back behind one guard."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from vaelab.core.errors import VaelabError

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    Works for a file or a folder written at the temporary path. The rename is atomic on one
    filesystem, so readers see either the old output or the whole new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def load_arrays(path: str | Path, read: Callable[[Any], T], what: str, stage: str) -> T:
    """``read`` applied to the arrays in ``path`` (a .npz or .npy, never unpickled), the one guard
    around every such load: a missing file is a VaelabError naming the stage that writes it, a
    damaged one (unreadable, a key or field ``read`` lacks) one naming the stage to re-run.
    ``what`` names the file in those messages ("prepared data"); ``stage`` is the stage's verb."""
    path = Path(path)
    try:
        arrays = np.load(path, allow_pickle=False)
        try:
            return read(arrays)
        finally:
            if hasattr(arrays, "close"):  # a .npz; a .npy is the array itself
                arrays.close()
    except FileNotFoundError:
        raise VaelabError(f"{what} {path} not found; run `dvc repro {stage}@<dataset>` first") from None
    except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile, VaelabError) as error:
        raise VaelabError(f"{what} {path} is damaged ({error}); delete it and re-run the {stage} stage") from None
