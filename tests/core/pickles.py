"""Pickles and torch-format zips written by hand, so a test can name any global without importing it.

    data = dumps({"model": New(Global("ultralytics.nn.tasks", "DetectionModel")), "ema": None})
    raw = torch_zip(data, {"0": np.arange(4, dtype=np.float16).tobytes()})

Protocol 2 opcodes, no memo: each object is written where it appears.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Reduce:
    func: Any
    args: tuple


@dataclass(frozen=True)
class New:
    """``cls.__new__(cls, *args)`` then BUILD with ``state`` (torch modules pickle this way)."""

    cls: Global
    state: Any = None
    args: tuple = ()


@dataclass(frozen=True)
class Persistent:
    pid: Any


def storage(kind: str, key: str, numel: int) -> Persistent:
    return Persistent(("storage", Global("torch", kind), key, "cpu", numel))


def tensor(kind: str, key: str, numel: int, size: tuple, stride: tuple | None = None, offset: int = 0) -> Reduce:
    if stride is None:
        stride, step = [], 1
        for n in reversed(size):
            stride.insert(0, step)
            step *= n
        stride = tuple(stride)
    odict = Reduce(Global("collections", "OrderedDict"), ())
    return Reduce(
        Global("torch._utils", "_rebuild_tensor_v2"), (storage(kind, key, numel), offset, size, stride, False, odict)
    )


def module(cls: str, params: dict | None = None, children: dict | None = None, **attrs: Any) -> New:
    """A torch module as torch pickles it: ``_parameters``, ``_buffers``, ``_modules`` and plain attributes."""
    mod, name = cls.rsplit(".", 1)
    state = {"training": False, "_parameters": params or {}, "_buffers": {}, "_modules": children or {}, **attrs}
    return New(Global(mod, name), state)


def dumps(obj: Any) -> bytes:
    out = io.BytesIO()
    out.write(b"\x80\x02")
    _write(out, obj)
    out.write(b".")
    return out.getvalue()


def _write(out: io.BytesIO, obj: Any) -> None:  # one branch per opcode
    if obj is None:
        out.write(b"N")
    elif obj is True or obj is False:
        out.write(b"\x88" if obj else b"\x89")
    elif isinstance(obj, int):
        if -(2**31) <= obj < 2**31:
            out.write(b"J" + struct.pack("<i", obj))
        else:
            raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            out.write(b"\x8a" + bytes([len(raw)]) + raw)
    elif isinstance(obj, float):
        out.write(b"G" + struct.pack(">d", obj))
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out.write(b"X" + struct.pack("<I", len(raw)) + raw)
    elif isinstance(obj, tuple):
        out.write(b"(")
        for item in obj:
            _write(out, item)
        out.write(b"t")
    elif isinstance(obj, list):
        out.write(b"](")
        for item in obj:
            _write(out, item)
        out.write(b"e")
    elif isinstance(obj, dict):
        out.write(b"}(")
        for key, value in obj.items():
            _write(out, key)
            _write(out, value)
        out.write(b"u")
    elif isinstance(obj, Global):
        out.write(f"c{obj.module}\n{obj.name}\n".encode())
    elif isinstance(obj, Reduce):
        _write(out, obj.func)
        _write(out, tuple(obj.args))
        out.write(b"R")
    elif isinstance(obj, New):
        _write(out, obj.cls)
        _write(out, tuple(obj.args))
        out.write(b"\x81")
        if obj.state is not None:
            _write(out, obj.state)
            out.write(b"b")
    elif isinstance(obj, Persistent):
        _write(out, obj.pid)
        out.write(b"Q")
    elif isinstance(obj, bytes):
        out.write(b"C" + bytes([len(obj)]) + obj if len(obj) < 256 else b"B" + struct.pack("<I", len(obj)) + obj)
    else:
        raise TypeError(f"cannot write {type(obj).__name__}")


def torch_zip(data_pkl: bytes, storages: dict[str, bytes] | None = None, name: str = "archive") -> bytes:
    """A zip laid out as ``torch.save`` writes it (records stored, not compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}/data.pkl", data_pkl)
        zf.writestr(f"{name}/byteorder", "little")
        for key, raw in (storages or {}).items():
            zf.writestr(f"{name}/data/{key}", raw)
        zf.writestr(f"{name}/version", "3\n")
    return buf.getvalue()
