"""The prepared-data file format and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.core.prepared import PreparedData, load_prepared, save_prepared
from vaelab.core.errors import VaelabError
from vaelab.core.io import atomic_path


def _tiny() -> PreparedData:
    rng = np.random.default_rng(0)
    return PreparedData(
        x_train=rng.integers(0, 256, (5, 4, 4, 1), dtype=np.uint8), y_train=np.array([0, 1, 2, 0, 1]),
        x_test=rng.integers(0, 256, (2, 4, 4, 1), dtype=np.uint8), y_test=np.array([2, 0]),
        class_names=("zero", "one", "two"),
    )


def test_round_trip(tmp_path):
    data = _tiny()
    save_prepared(data, tmp_path / "sub" / "d.npz")
    back = load_prepared(tmp_path / "sub" / "d.npz")
    np.testing.assert_array_equal(back.x_train, data.x_train)
    np.testing.assert_array_equal(back.y_test, data.y_test)
    assert back.class_names == data.class_names and back.image_shape == (4, 4, 1)
    assert back.y_train.dtype == np.int64
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["d.npz"]  # no temp files left


def test_rejects_bad_arrays():
    with pytest.raises(VaelabError) as error:
        PreparedData(np.zeros((2, 4, 4, 1), np.float32), np.zeros(2), np.zeros((1, 4, 4, 1), np.uint8),
                     np.zeros(1), ("a",))
    assert str(error.value) == ("x_train must be uint8 images (N, H, W, 1|3), got float32 of shape (2, 4, 4, 1); "
                                "convert them to uint8 NHWC first")
    with pytest.raises(VaelabError) as error:
        PreparedData(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2), np.zeros((1, 5, 4, 1), np.uint8),
                     np.zeros(1), ("a",))
    assert str(error.value) == "train and test images differ in shape: (4, 4, 1) vs (5, 4, 1)"
    with pytest.raises(VaelabError, match=r"^y_test must have shape \(1,\), got \(2,\)$"):
        PreparedData(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2), np.zeros((1, 4, 4, 1), np.uint8),
                     np.zeros(2), ("a",))


def test_missing_and_damaged_files(tmp_path):
    with pytest.raises(VaelabError, match="not found"):
        load_prepared(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(VaelabError, match="damaged"):
        load_prepared(tmp_path / "bad.npz")


def test_atomic_path_keeps_old_output_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_replaces_a_folder(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "stale").write_text("x")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
