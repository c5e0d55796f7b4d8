"""The prepared-dataset file: the contract between the preprocess stage and everything after it.

One compressed ``.npz`` per dataset holding

* ``x_train``, ``x_test``: uint8 images, shape (N, H, W, C), C = 1 or 3;
* ``y_train``, ``y_test``: int64 labels, shape (N,);
* ``class_names``: str array, shape (K,), ``class_names[y]`` names label ``y``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.core.io import atomic_path, load_arrays


def check_image_array(images: Any, what: str = "images") -> np.ndarray:
    """``images`` as an ndarray if it is uint8 (N, H, W, 1|3), the one image format every stage
    passes on; otherwise a :class:`VaelabError` naming ``what``, its dtype and shape."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise VaelabError(f"{what} must be uint8 images (N, H, W, 1|3), got {images.dtype} of shape {images.shape}; "
                          f"convert them to uint8 NHWC first")
    return images


@dataclass(frozen=True)
class PreparedData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = check_image_array(getattr(self, f"x_{split}"), f"x_{split}"), getattr(self, f"y_{split}")
            if y.shape != (len(x),):
                raise VaelabError(f"y_{split} must have shape ({len(x)},), got {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise VaelabError(f"train and test images differ in shape: {self.x_train.shape[1:]} vs "
                              f"{self.x_test.shape[1:]}")

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
    return load_arrays(path, lambda npz: PreparedData(
        x_train=npz["x_train"], y_train=npz["y_train"], x_test=npz["x_test"], y_test=npz["y_test"],
        class_names=tuple(str(c) for c in npz["class_names"])), "prepared data", "preprocess")
