"""Tensors out of a TorchScript (``torch.jit.save``) or ``torch.save`` zip archive, with numpy and
the standard library alone, and without running any pickled code.

Such an archive is a zip with one top folder (any name) holding ``data.pkl``, a pickle of the
module tree or state dict whose tensors point at raw little-endian storages ``data/<key>``.
:class:`SafeUnpickler` resolves the handful of globals those pickles name (torch's
tensor-rebuild functions, the typed storages, ``OrderedDict``, TorchScript's list builders and
``__torch__.*`` module classes) to inert stand-ins and refuses every other global, so a
pickle naming ``os.system`` (or anything else) is an error, never a call.

:func:`read_archive` returns every tensor by its dotted attribute path
(``net.layers.conv.weight``) as a numpy array, plus the plain attributes of the modules
(``net.layers.conv.stride``).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from vaelab.core.errors import VaelabError

# Storage classes torch writes into pickles, by name, and their element types.
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
# TorchScript's typed-list builders: each returns its argument, a list.
LIST_BUILDERS = ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist")
# Attribute values kept beside the tensors (strides, paddings, flags).
PLAIN_TYPES = (bool, int, float, str)


class UnsafePickleError(VaelabError):
    """A pickle names a global outside the short list a weights file needs."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and its kin: only its element type matters."""

    name: str
    dtype: Any


@dataclass(frozen=True)
class _Storage:
    """Stand-in for a storage: the archive entry ``data/<key>`` holding ``numel`` elements."""

    key: str
    dtype: Any
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """Stand-in for a tensor: a strided view into a storage, read after unpickling."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _Module:
    """Stand-in for a ``__torch__.*`` module object: it only keeps its attributes."""

    type_name = "module"

    def __setstate__(self, state: Any) -> None:
        self.attributes = dict(state) if isinstance(state, dict) else {}


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> _TensorRef:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])``."""
    if not isinstance(storage, _Storage):
        raise VaelabError(f"a tensor in the archive has no storage (got {type(storage).__name__})")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """``torch._utils._rebuild_parameter(data, requires_grad, hooks)``: a parameter is its data."""
    return data


def _as_list(values: Any) -> list:
    return list(values)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for torch archives' ``data.pkl`` that can construct nothing but stand-ins.

    ``persistent_load`` turns torch's ``('storage', type, key, location, numel)`` ids into
    :class:`_Storage` records; ``find_class`` allows exactly the names below and raises
    :class:`UnsafePickleError` naming any other.
    """

    def __init__(self, file: IO[bytes], source: str) -> None:
        super().__init__(file)
        self.source = source
        self._module_classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name in LIST_BUILDERS:
            return _as_list
        if module.startswith("__torch__.") or module == "__torch__":
            # A TorchScript module class: an inert object that only stores its attributes.
            qualified = f"{module}.{name}"
            if qualified not in self._module_classes:
                self._module_classes[qualified] = type(name, (_Module,), {"type_name": qualified})
            return self._module_classes[qualified]
        raise UnsafePickleError(
            f"{self.source} names the Python global {module}.{name}, which no weights file needs; "
            f"refusing to load it (nothing was run): use one of the known weights files"
        )

    def persistent_load(self, pid: Any) -> Any:
        if (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            return _Storage(key=str(pid[2]), dtype=pid[1].dtype, numel=int(pid[4]))
        raise UnsafePickleError(f"{self.source} holds an unknown persistent id {pid!r:.80}; it is not a torch archive")


@dataclass
class Archive:
    """What :func:`read_archive` found: tensors and plain attributes by dotted path."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


def _data_pickle(names: list[str], source: str) -> str:
    candidates = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(candidates) != 1:
        raise VaelabError(f"{source} is not a TorchScript/torch archive: expected one <folder>/data.pkl, "
                          f"found {candidates or 'none'}")
    return candidates[0]


def _read_tensor(zf: zipfile.ZipFile, top: str, ref: _TensorRef, name: str, source: str) -> np.ndarray:
    entry = f"{top}/data/{ref.storage.key}"
    dtype = np.dtype(ref.storage.dtype).newbyteorder("<")
    try:
        raw = zf.read(entry)
    except KeyError:
        raise VaelabError(f"{source}: tensor {name} points at {entry}, which the archive lacks; the file is damaged") from None
    if len(raw) != ref.storage.numel * dtype.itemsize:
        raise VaelabError(f"{source}: {entry} holds {len(raw)} bytes, expected {ref.storage.numel} x {dtype.itemsize} "
                          f"for tensor {name}; the file is damaged")
    storage = np.frombuffer(raw, dtype=dtype)
    extent = ref.offset + sum((s - 1) * st for s, st in zip(ref.shape, ref.stride) if s > 0) + 1
    if min(ref.shape, default=1) > 0 and (ref.offset < 0 or min(ref.stride, default=0) < 0 or extent > storage.size):
        raise VaelabError(f"{source}: tensor {name} (offset {ref.offset}, shape {ref.shape}, stride {ref.stride}) "
                          f"reaches past its storage of {storage.size} elements; the file is damaged")
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], shape=ref.shape,
                                           strides=tuple(s * dtype.itemsize for s in ref.stride), writeable=False)
    return np.ascontiguousarray(view).astype(dtype.newbyteorder("="))


def _walk(node: Any, path: str, found: list[tuple[str, Any]], depth: int = 0) -> None:
    if depth > 64:
        raise VaelabError(f"the module tree is deeper than 64 levels at {path!r}; not a weights file")
    if isinstance(node, _Module):
        items = getattr(node, "attributes", {}).items()
    elif isinstance(node, dict):
        items = node.items()
    else:
        found.append((path, node))
        return
    for key, value in items:
        if isinstance(key, str):
            _walk(value, f"{path}.{key}" if path else key, found, depth + 1)


def read_archive(file: str | Path | IO[bytes], source: str | None = None) -> Archive:
    """Every tensor (as a numpy array) and plain attribute of a torch zip archive, by dotted path.

    ``file``: a path or a binary file object. Refuses pickles that name anything but the
    known torch globals (:class:`UnsafePickleError`); a file that is not such a zip, or whose
    storages do not match their tensors, is a :class:`VaelabError` naming the problem.
    """
    source = source or str(file)
    try:
        zf = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as error:
        raise VaelabError(f"{source} is not a zip archive ({error}); it is not a TorchScript weights file "
                          f"(damaged or truncated download?)") from None
    with zf:
        pkl = _data_pickle(zf.namelist(), source)
        top = pkl.split("/")[0]
        byteorder = f"{top}/byteorder"
        if byteorder in zf.namelist() and zf.read(byteorder).strip() not in (b"little", b""):
            raise VaelabError(f"{source} stores big-endian tensors; only little-endian archives are supported")
        try:
            root = SafeUnpickler(io.BytesIO(zf.read(pkl)), f"{source}:{pkl}").load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise VaelabError(f"{source}:{pkl} is not a readable pickle ({type(error).__name__}: {error}); "
                              f"the file is damaged") from None
        found: list[tuple[str, Any]] = []
        _walk(root, "", found)
        archive = Archive()
        for name, value in found:
            if isinstance(value, _TensorRef):
                archive.tensors[name] = _read_tensor(zf, top, value, name, source)
            elif isinstance(value, PLAIN_TYPES) or (isinstance(value, list)
                                                    and all(isinstance(v, PLAIN_TYPES) for v in value)):
                archive.attributes[name] = value
        return archive
