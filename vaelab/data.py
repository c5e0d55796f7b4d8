"""The prepared-dataset file: the contract between the preprocess stage and everything after it.

One compressed ``.npz`` per dataset holding

* ``x_train``, ``x_test``: uint8 images, shape (N, H, W, C), C = 1 or 3;
* ``y_train``, ``y_test``: int64 labels, shape (N,);
* ``class_names``: str array, shape (K,), ``class_names[y]`` names label ``y``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.errors import VaelabError
from vaelab.io import atomic_path


@dataclass(frozen=True)
class PreparedData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
                raise ValueError(f"x_{split} must be uint8 (N, H, W, 1|3), got {x.dtype} {x.shape}")
            if y.shape != (len(x),):
                raise ValueError(f"y_{split} must have shape ({len(x)},), got {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"train and test images differ in shape: {self.x_train.shape[1:]} vs {self.x_test.shape[1:]}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def save_prepared(data: PreparedData, path: str | Path) -> None:
    """Write ``data`` to ``path`` (compressed npz), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                x_train=data.x_train, y_train=data.y_train.astype(np.int64),
                x_test=data.x_test, y_test=data.y_test.astype(np.int64),
                class_names=np.asarray(data.class_names, dtype=str),
            )


def load_prepared(path: str | Path) -> PreparedData:
    """Read a file written by :func:`save_prepared`; a missing or damaged file is a VaelabError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return PreparedData(
                x_train=npz["x_train"], y_train=npz["y_train"],
                x_test=npz["x_test"], y_test=npz["y_test"],
                class_names=tuple(str(c) for c in npz["class_names"]),
            )
    except FileNotFoundError:
        raise VaelabError(f"prepared data {path} not found; run `dvc repro preprocess@<dataset>` first") from None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise VaelabError(f"prepared data {path} is damaged ({error}); delete it and re-run the preprocess stage") from None
