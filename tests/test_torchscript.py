"""The torch-archive reader: tensors and attributes come out exactly, and no pickled code ever runs."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from tests.torch_archive import Module, Parameter, Raw, Strided, write_archive
from vaelab.core.errors import VaelabError
from vaelab.metrics.torchscript import UnsafePickleError, read_archive


def test_module_tree_tensors_and_attributes_by_dotted_path(tmp_path):
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    beta = rng.standard_normal(4).astype(np.float32)
    root = Module("wrap_net.WrapNet", {
        "training": False,
        "net": Module("inceptionv3.InceptionV3", {
            "layers": Module("torch.nn.modules.container.Sequential", {
                "conv": Module("inceptionv3.Conv2dLayer", {"weight": kernel, "beta": Parameter(beta), "stride": 2,
                                                           "padding": [0, 3]}),
            }),
        }),
    })
    archive = read_archive(write_archive(tmp_path / "model.pt", root, top="out_jit_module"))
    assert sorted(archive.tensors) == ["net.layers.conv.beta", "net.layers.conv.weight"]
    np.testing.assert_array_equal(archive.tensors["net.layers.conv.weight"], kernel)
    np.testing.assert_array_equal(archive.tensors["net.layers.conv.beta"], beta)
    assert archive.tensors["net.layers.conv.weight"].dtype == np.float32
    assert archive.attributes == {"training": False, "net.layers.conv.stride": 2, "net.layers.conv.padding": [0, 3]}


def test_state_dict_archive_with_another_top_folder(tmp_path):
    state = {"layers.conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
             "output.bias": np.array([1.5, -2.0], np.float64)}
    archive = read_archive(write_archive(tmp_path / "state.pt", state, top="inception-2015-12-05"))
    np.testing.assert_array_equal(archive.tensors["layers.conv.weight"], state["layers.conv.weight"])
    assert archive.tensors["output.bias"].dtype == np.float64


def test_strided_views_and_storage_offsets_are_honoured(tmp_path):
    storage = np.arange(20, dtype=np.float32)
    # A transposed 3x4 view starting at element 2: element [i, j] = storage[2 + i + 3 * j].
    view = Strided(storage, offset=2, shape=(3, 4), stride=(1, 3))
    tensors = read_archive(write_archive(tmp_path / "v.pt", {"t": view})).tensors
    expected = np.array([[2 + i + 3 * j for j in range(4)] for i in range(3)], np.float32)
    np.testing.assert_array_equal(tensors["t"], expected)
    assert tensors["t"].flags.c_contiguous


def test_a_pickle_naming_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    # GLOBAL 'os system', MARK, 'touch <marker>', TUPLE, REDUCE: os.system("touch ...") if unpickled naively.
    command = f"touch {marker}".encode()
    payload = Raw(b"cos\nsystem\n(X" + len(command).to_bytes(4, "little") + command + b"tR")
    path = write_archive(tmp_path / "evil.pt", {"layers.conv.weight": payload})
    with pytest.raises(UnsafePickleError) as error:
        read_archive(path)
    assert "os.system" in str(error.value) and "nothing was run" in str(error.value)
    assert not marker.exists()
    # Any global outside the short list, e.g. a builtin that could build objects.
    evil = write_archive(tmp_path / "evil2.pt", {"x": Raw(b"cbuiltins\neval\n(X\x04\x00\x00\x001+1tR")})
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        read_archive(evil)


def test_not_an_archive_truncated_or_inconsistent_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(VaelabError, match="not a zip archive.*truncated"):
        read_archive(bad)

    good = write_archive(tmp_path / "good.pt", {"w": np.ones((8, 8), np.float32)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VaelabError, match="not a zip archive"):
        read_archive(truncated)

    # A storage shorter than its tensor says.
    short = tmp_path / "short.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(short, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:100] if item.filename.endswith("data/0") else data)
    with pytest.raises(VaelabError, match="holds 100 bytes, expected 64 x 4 for tensor w"):
        read_archive(short)

    # A view reaching past its storage.
    past = write_archive(tmp_path / "past.pt", {"t": Strided(np.zeros(4, np.float32), 2, (3,), (1,))})
    with pytest.raises(VaelabError, match="reaches past its storage"):
        read_archive(past)

    nopkl = tmp_path / "nopkl.pt"
    with zipfile.ZipFile(nopkl, "w") as zf:
        zf.writestr("archive/other.txt", "x")
    with pytest.raises(VaelabError, match="expected one <folder>/data.pkl"):
        read_archive(nopkl)
