"""Write zip archives in torch's formats (TorchScript ``torch.jit.save`` and ``torch.save``) without
torch, for tests of :mod:`vaelab.metrics.torchscript`.

The pickle is emitted opcode by opcode (protocol 2, as torch writes it), naming exactly the
globals torch names: ``torch._utils._rebuild_tensor_v2`` (and ``_rebuild_parameter`` for
``nn.Parameter``), ``torch FloatStorage`` in the persistent id ``('storage', type, key,
'cpu', numel)``, ``collections.OrderedDict`` for the (empty) backward hooks,
``torch.jit._pickle.build_intlist`` for int lists, and ``__torch__.<module> <Class>`` objects
built with NEWOBJ + BUILD from their attribute dict. Storages are raw little-endian bytes in
``<top>/data/<key>``.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                 np.dtype(np.int64): "LongStorage"}


@dataclass
class Module:
    """A TorchScript module object: its class ``__torch__.<type_name>`` and attributes by name."""

    type_name: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Parameter:
    """A tensor saved as ``nn.Parameter`` (``_rebuild_parameter`` around ``_rebuild_tensor_v2``)."""

    data: np.ndarray


@dataclass
class Strided:
    """A tensor stored as a strided view: ``storage`` (1-d) viewed at ``offset`` with ``shape``/``stride``."""

    storage: np.ndarray
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass
class Raw:
    """Pickle opcodes written as they are (e.g. a global that must be refused)."""

    opcodes: bytes


class _Emitter:
    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.storages: list[tuple[str, bytes]] = []

    def op(self, code: bytes) -> None:
        self.out += code

    def global_(self, module: str, name: str) -> None:
        self.out += b"c" + f"{module}\n{name}\n".encode()

    def value(self, v: Any) -> None:
        if isinstance(v, Raw):
            self.op(v.opcodes)
        elif isinstance(v, bool):
            self.op(b"\x88" if v else b"\x89")
        elif isinstance(v, int):
            self.op(b"J" + struct.pack("<i", v))  # BININT
        elif isinstance(v, float):
            self.op(b"G" + struct.pack(">d", v))  # BINFLOAT
        elif isinstance(v, str):
            data = v.encode()
            self.op(b"X" + struct.pack("<I", len(data)) + data)  # BINUNICODE
        elif v is None:
            self.op(b"N")
        elif isinstance(v, list):
            self.global_("torch.jit._pickle", "build_intlist")
            self.op(b"(]")  # MARK, EMPTY_LIST
            if v:
                self.op(b"(")
                for item in v:
                    self.value(item)
                self.op(b"e")  # APPENDS
            self.op(b"tR")  # TUPLE, REDUCE
        elif isinstance(v, Module):
            module, _, name = v.type_name.rpartition(".")
            self.global_(f"__torch__.{module}" if module else "__torch__", name)
            self.op(b")\x81")  # EMPTY_TUPLE, NEWOBJ
            self.dict_items(v.attributes, b"}")
            self.op(b"b")  # BUILD
        elif isinstance(v, dict):  # a state dict: OrderedDict()
            self.global_("collections", "OrderedDict")
            self.op(b")R")
            self.dict_items(v, b"")
        elif isinstance(v, Parameter):
            self.global_("torch._utils", "_rebuild_parameter")
            self.op(b"(")
            self.value(v.data)
            self.op(b"\x89")
            self.empty_hooks()
            self.op(b"tR")
        elif isinstance(v, np.ndarray):
            array = np.ascontiguousarray(v)
            strides = tuple(s // array.itemsize for s in array.strides)
            self.tensor(Strided(array.reshape(-1), 0, array.shape, strides))
        elif isinstance(v, Strided):
            self.tensor(v)
        else:
            raise TypeError(f"cannot write {type(v).__name__}")

    def dict_items(self, items: dict[str, Any], opener: bytes) -> None:
        self.op(opener)
        if items:
            self.op(b"(")
            for key, item in items.items():
                self.value(key)
                self.value(item)
            self.op(b"u")  # SETITEMS

    def empty_hooks(self) -> None:
        self.global_("collections", "OrderedDict")
        self.op(b")R")

    def tensor(self, t: Strided) -> None:
        key = str(len(self.storages))
        storage = np.ascontiguousarray(t.storage).astype(t.storage.dtype.newbyteorder("<"))
        self.storages.append((key, storage.tobytes()))
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.op(b"((")  # MARK (args), MARK (persistent id)
        self.value("storage")
        self.global_("torch", STORAGE_NAMES[np.dtype(t.storage.dtype)])
        self.value(key)
        self.value("cpu")
        self.value(int(storage.size))
        self.op(b"tQ")  # TUPLE, BINPERSID
        self.value(int(t.offset))
        self.op(b"(")
        for s in t.shape:
            self.value(int(s))
        self.op(b"t(")
        for s in t.stride:
            self.value(int(s))
        self.op(b"t\x89")  # requires_grad False
        self.empty_hooks()
        self.op(b"tR")


def write_archive(path: Path, root: Any, top: str = "archive") -> Path:
    """Write ``root`` (a :class:`Module` tree, a dict state dict, ...) as a torch zip archive
    whose entries live under the folder ``top``."""
    emitter = _Emitter()
    emitter.value(root)
    emitter.op(b".")  # STOP
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/data.pkl", bytes(emitter.out))
        zf.writestr(f"{top}/byteorder", "little")
        for key, data in emitter.storages:
            zf.writestr(f"{top}/data/{key}", data)
        zf.writestr(f"{top}/version", "3\n")
    return path


def inception_module_tree(tensors: dict[str, dict[str, np.ndarray]], as_parameters: bool = False) -> Module:
    """The module tree ``layers.<block>.<tower>.<conv>.{weight,beta,mean,var}`` of the 2015 network
    from per-conv tensors (``{"mixed_4.tower.conv_1": {...}}``), as TorchScript nests it."""
    layers = Module("torch.nn.modules.container.Sequential")
    for name, parts in tensors.items():
        node = layers
        *path, leaf = name.split(".")
        for segment in path:
            node = node.attributes.setdefault(segment, Module("inceptionv3.InceptionBlock"))
        node = node.attributes.setdefault(leaf, Module("inceptionv3.Conv2dLayer"))
        for tensor, value in parts.items():
            node.attributes[tensor] = Parameter(value) if as_parameters else value
        node.attributes["stride"] = 1
    return layers
