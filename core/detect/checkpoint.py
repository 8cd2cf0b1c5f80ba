"""Read an Ultralytics ``.pt`` checkpoint without torch, and without running anything the file names.

    ckpt = read_checkpoint(Path("yolov8n.pt"))      # CheckpointError (UnsafeCheckpoint) when it cannot
    model = ckpt.model                              # the DetectionModel: a Module stand-in
    model.cls, model.attrs["names"], model.children()["model"]
    conv = ...; conv.tensor("weight")               # float32 numpy array (fp16 and bf16 are upcast)

A checkpoint is a zip: ``NAME/data.pkl`` (a pickle of a dict) and one file per storage under ``NAME/data/``.
The pickle is read by :class:`SafeUnpickler`, which resolves every global the file names through a fixed
table and never imports anything:

- classes of ``ultralytics.*`` and ``torch.nn.*`` become :class:`Module` stand-ins that only collect the
  state the pickle gives them (they have no methods a pickle could call and keep no ``__dict__`` a pickle
  could fill with one);
- torch's tensor and parameter rebuild functions become ours, which cut numpy arrays out of the storages
  after checking offsets, shapes and strides against the bytes;
- a few plain containers (``OrderedDict``, ``set``, ``torch.Size``...), paths (a ``WindowsPath`` pickled on
  Windows reads as a ``PureWindowsPath`` here, and the other way round), the numpy scalars and the dill type
  table entries that training metadata holds (inert as well);
- anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``importlib``...) stops the read with
  :class:`UnsafeCheckpoint` naming the global.

The zip is checked before anything is decompressed (entry count, declared sizes, compression ratio,
methods) and each storage must hold exactly the bytes its tensor declares.
"""

from __future__ import annotations

import io
import logging
import pathlib
import pickle
import pickletools
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.detect.base import DetectorError

log = logging.getLogger(__name__)


class CheckpointError(DetectorError):
    """The file is not a checkpoint this reader can use; ``str()`` says why."""


class UnsafeCheckpoint(CheckpointError):
    """The pickle names a global outside the allow-list. Nothing it names was imported or called."""


class UnsupportedModel(CheckpointError):
    """A readable checkpoint whose model (task, head or module) the ONNX builder does not convert."""


@dataclass(frozen=True)
class Limits:
    """What a checkpoint may hold before it is refused as hostile (YOLOv8x in fp32 is ~270 MB)."""

    max_entries: int = 20_000
    max_pickle_bytes: int = 16 << 20  # real ones are ~100 KB
    max_total_bytes: int = 2 << 30
    max_ratio: int = 200  # uncompressed / compressed, for a deflated entry
    max_elements: int = 1 << 29  # in one tensor


@dataclass
class Checkpoint:
    path: Path
    model: Module  # ``ema`` when present, else ``model`` (as Ultralytics' own loader picks)
    meta: dict[str, Any] = field(default_factory=dict)  # the other plain entries: version, date, train_args...


class Module:
    """Stand-in for a pickled class: the dotted name it was pickled under, its constructor arguments and state.

    ``__slots__`` and a class-level ``__setstate__``: a pickle cannot plant a method on an instance.
    """

    __slots__ = ("args", "state")
    args: tuple[Any, ...]
    state: dict[str, Any]
    cls = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Module:
        self = object.__new__(cls)
        self.args = args
        self.state = {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            for part in state:
                if isinstance(part, dict):
                    self.state.update(part)
        elif isinstance(state, dict):
            self.state.update(state)
        else:
            self.state["__state__"] = state

    @property
    def name(self) -> str:
        return self.cls.rsplit(".", 1)[-1]

    @property
    def attrs(self) -> dict[str, Any]:
        return self.state

    def children(self) -> dict[str, Any]:
        """The submodules, in order (torch's ``_modules``)."""
        found = self.state.get("_modules")
        return dict(found) if isinstance(found, dict) else {}

    def child(self, name: str) -> Any:
        return self.children().get(name)

    def tensor(self, name: str) -> np.ndarray | None:
        """A parameter or buffer as float32 (or its own integer type), None when absent."""
        for where in ("_parameters", "_buffers"):
            table = self.state.get(where)
            if isinstance(table, dict) and table.get(name) is not None:
                value = table[name]
                if not isinstance(value, np.ndarray):
                    raise CheckpointError(f"{self.cls}.{name} is not a tensor")
                return value.astype(np.float32) if value.dtype.kind == "f" else value
        value = self.state.get(name)
        if isinstance(value, np.ndarray):
            return value.astype(np.float32) if value.dtype.kind == "f" else value
        return None

    def __repr__(self) -> str:
        return f"<{self.cls}>"


STANDIN_PREFIXES = ("ultralytics.", "torch.nn.")
# Training metadata (metrics, arguments) may hold these; nothing reads them, so they stay inert too.
INERT_GLOBALS = frozenset(
    {
        "numpy.dtype",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.ndarray",
        "argparse.Namespace",
        "types.SimpleNamespace",
    }
)
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("f8"),
    "FloatStorage": np.dtype("f4"),
    "HalfStorage": np.dtype("f2"),
    "BFloat16Storage": np.dtype("u2"),  # upcast by _upcast
    "LongStorage": np.dtype("i8"),
    "IntStorage": np.dtype("i4"),
    "ShortStorage": np.dtype("i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "UntypedStorage": np.dtype("u1"),
}
# dill pickles a builtin type as dill._dill._load_type(NAME); these names give back harmless types.
DILL_TYPES: dict[str, type] = {
    t.__name__: t
    for t in (set, frozenset, list, dict, tuple, bool, int, float, complex, str, bytes, bytearray, slice, range)
}
DILL_TYPES["NoneType"] = type(None)
PATHS = {
    "PosixPath": pathlib.PurePosixPath,
    "PurePosixPath": pathlib.PurePosixPath,
    "WindowsPath": pathlib.PureWindowsPath,
    "PureWindowsPath": pathlib.PureWindowsPath,
    "Path": pathlib.PurePath,
    "PurePath": pathlib.PurePath,
}


class StorageType:
    """What ``torch.FloatStorage`` and its kin resolve to: only a dtype."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class Storage:
    __slots__ = ("array", "kind")

    def __init__(self, array: np.ndarray, kind: str) -> None:
        self.array = array
        self.kind = kind

    @property
    def bfloat16(self) -> bool:
        return self.kind == "BFloat16Storage"


def _encode(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode``, which protocol 2 uses to pickle bytes: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("the pickle calls _codecs.encode with something other than (text, 'latin1')")
    return text.encode("latin1")


def _load_type(name: Any) -> type:
    if name not in DILL_TYPES:
        raise UnsafeCheckpoint(f"the pickle names dill._dill._load_type({name!r}), which is not on the allow-list")
    return DILL_TYPES[name]


class SafeUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` with a fixed table of globals; ``storage(key, dtype, numel)`` reads one storage."""

    def __init__(self, data: bytes, storage: Callable[[str, np.dtype, int], np.ndarray], limits: Limits) -> None:
        super().__init__(io.BytesIO(data))
        self._storage = storage
        self._limits = limits
        self._standins: dict[str, type[Module]] = {}
        self._storages: dict[str, Storage] = {}
        self._table: dict[str, Any] = {
            "collections.OrderedDict": OrderedDict,
            "builtins.set": set,
            "builtins.frozenset": frozenset,
            "builtins.slice": slice,
            "__builtin__.set": set,
            "__builtin__.frozenset": frozenset,
            "__builtin__.slice": slice,
            "builtins.bytearray": bytearray,
            "builtins.complex": complex,
            "__builtin__.bytearray": bytearray,
            "__builtin__.complex": complex,
            "_codecs.encode": _encode,
            "torch.Size": _size,
            "torch._utils._rebuild_tensor": self._rebuild_tensor,
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor,
            "torch._utils._rebuild_parameter": _rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
            "torch._tensor._rebuild_from_type_v2": self._rebuild_from_type,
            "torch.Tensor": Module,
            "dill._dill._load_type": _load_type,
        }
        for name in STORAGE_DTYPES:
            self._table[f"torch.{name}"] = StorageType(name)
        for module in ("pathlib", "pathlib._local"):
            for name, kind in PATHS.items():
                self._table[f"{module}.{name}"] = kind

    def find_class(self, module: str, name: str) -> Any:
        dotted = f"{module}.{name}"
        if dotted in self._table:
            return self._table[dotted]
        if dotted.startswith(STANDIN_PREFIXES) or dotted in INERT_GLOBALS:
            if dotted not in self._standins:
                self._standins[dotted] = type(name, (Module,), {"__slots__": (), "cls": dotted})
            return self._standins[dotted]
        raise UnsafeCheckpoint(f"the pickle names the global {dotted}, which is not on the allow-list; nothing was run")

    def persistent_load(self, pid: Any) -> Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id {type(pid).__name__} in the pickle")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, StorageType) or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"malformed storage reference for storage {key!r}")
        if key not in self._storages:
            self._storages[key] = Storage(self._storage(key, kind.dtype, numel), kind.name)
        stored = self._storages[key]
        if stored.kind != kind.name or stored.array.size != numel:
            raise CheckpointError(f"storage {key} is referenced with two different types or sizes")
        return stored

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> np.ndarray:
        if not isinstance(storage, Storage):
            raise CheckpointError("a tensor's storage is not a storage record")
        return _view(storage, offset, size, stride, self._limits.max_elements)

    def _rebuild_from_type(self, func: Any, _new_type: Any, args: Any, _state: Any) -> np.ndarray:
        if func != self._rebuild_tensor or not isinstance(args, tuple):
            raise CheckpointError("a tensor subclass is rebuilt by something other than a tensor rebuild")
        return func(*args)


def _size(*args: Any) -> tuple:
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else tuple(args)


def _rebuild_parameter(data: Any, *_rest: Any) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise CheckpointError("a parameter holds no tensor")
    return data


def _view(storage: Storage, offset: Any, size: Any, stride: Any, max_elements: int) -> np.ndarray:
    """The tensor (offset, size, stride) over ``storage``, copied out after a bounds check, floats upcast."""
    ints = (offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) else None
    if ints is None or len(size) != len(stride) or not all(isinstance(v, int) and v >= 0 for v in ints):
        raise CheckpointError(f"malformed tensor geometry: offset {offset!r}, size {size!r}, stride {stride!r}")
    base = storage.array
    count = int(np.prod(size, dtype=np.int64)) if size else 1
    if count > max_elements or count > base.size:
        raise CheckpointError(f"a tensor of {count} elements over a storage of {base.size} is refused")
    if count:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= base.size:
            raise CheckpointError(
                f"a tensor reaches element {last} of a storage holding {base.size}: the file is damaged or hostile"
            )
    item = base.itemsize
    view = np.lib.stride_tricks.as_strided(
        base[offset:] if count else base[:0], shape=size, strides=tuple(s * item for s in stride), writeable=False
    )
    return _upcast(np.array(view), storage.bfloat16)


def _upcast(array: np.ndarray, bfloat16: bool) -> np.ndarray:
    if bfloat16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    if array.dtype in (np.float16, np.float64):
        return array.astype(np.float32)
    return array


def read_checkpoint(path: Path, limits: Limits | None = None) -> Checkpoint:
    """Read ``path``; raises :class:`CheckpointError` (or :class:`UnsafeCheckpoint`) with what is wrong."""
    path = Path(path)
    limits = limits or Limits()
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise CheckpointError(f"no such file: {path}") from exc
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(
            f"{path.name} is not a PyTorch zip checkpoint (truncated, damaged, or saved by torch < 1.6): {exc}"
        ) from exc
    with zf:
        prefix = _check_archive(zf, path.name, limits)
        data = _read_entry(zf, f"{prefix}data.pkl", limits)
        byteorder = _read_entry(zf, f"{prefix}byteorder", limits).decode("ascii", "replace").strip() or "little"
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path.name}: unknown byte order {byteorder!r}")

        def storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            return _read_storage(
                zf, f"{prefix}data/{key}", dtype.newbyteorder("<" if byteorder == "little" else ">"), numel, limits
            )

        obj = _unpickle(data, storage, limits, path.name)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name} holds a {type(obj).__name__}, not an Ultralytics checkpoint dict")
    model = obj.get("ema") or obj.get("model")
    if not isinstance(model, Module):
        raise CheckpointError(f"{path.name} has no model (neither 'ema' nor 'model'): not an Ultralytics checkpoint")
    meta = {k: plain(v) for k, v in obj.items() if isinstance(k, str) and k not in ("model", "ema", "optimizer")}
    return Checkpoint(path, model, meta)


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain data: paths become strings, stand-ins and deep nesting None."""
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if depth < 6 and isinstance(value, dict):
        return {k: plain(v, depth + 1) for k, v in value.items() if isinstance(k, str | int)}
    if depth < 6 and isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    return None


def _check_archive(zf: zipfile.ZipFile, name: str, limits: Limits) -> str:
    """The records' folder (``NAME/``), after refusing what would be a bomb or is not torch's format."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise CheckpointError(f"{name} has {len(infos)} entries (at most {limits.max_entries}): refused")
    total = 0
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{name}: entry {info.filename} uses compression method {info.compress_type}")
        total += info.file_size
        deflated = info.compress_type == zipfile.ZIP_DEFLATED
        if deflated and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise CheckpointError(
                f"{name}: entry {info.filename} expands {info.compress_size} bytes to {info.file_size}: a zip bomb"
            )
    if total > limits.max_total_bytes:
        raise CheckpointError(f"{name} declares {total} bytes uncompressed (at most {limits.max_total_bytes}): refused")
    pickles = [i.filename for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if any(i.filename.endswith("/constants.pkl") for i in infos):
        raise CheckpointError(f"{name} is a TorchScript archive, not an Ultralytics checkpoint")
    if len(pickles) != 1:
        raise CheckpointError(f"{name} has {len(pickles)} data.pkl records, not one: not a torch checkpoint")
    return pickles[0][: -len("data.pkl")]


def _read_entry(zf: zipfile.ZipFile, member: str, limits: Limits, expect: int | None = None) -> bytes:
    try:
        info = zf.getinfo(member)
    except KeyError:
        if member.endswith("byteorder"):
            return b""
        raise CheckpointError(f"record {member} is missing") from None
    if expect is None and info.file_size > limits.max_pickle_bytes:
        raise CheckpointError(f"record {member} is {info.file_size} bytes (at most {limits.max_pickle_bytes})")
    if expect is not None and info.file_size != expect:
        raise CheckpointError(f"record {member} holds {info.file_size} bytes where its tensor declares {expect}")
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as exc:
        raise CheckpointError(f"record {member} cannot be read (truncated or damaged): {exc}") from exc
    if len(data) != info.file_size:
        raise CheckpointError(f"record {member} holds {len(data)} bytes, not the {info.file_size} it declares")
    return data


def _read_storage(zf: zipfile.ZipFile, member: str, dtype: np.dtype, numel: int, limits: Limits) -> np.ndarray:
    if numel > limits.max_total_bytes // dtype.itemsize:
        raise CheckpointError(f"record {member} declares {numel} elements: refused")
    data = _read_entry(zf, member, limits, expect=numel * dtype.itemsize)
    return np.frombuffer(data, dtype=dtype)


def _unpickle(data: bytes, storage: Callable[[str, np.dtype, int], np.ndarray], limits: Limits, name: str) -> Any:
    _prescan(data, name)
    try:
        return SafeUnpickler(data, storage, limits).load()
    except CheckpointError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        MemoryError,
        RecursionError,
        UnicodeDecodeError,
        struct.error,
    ) as exc:
        raise CheckpointError(
            f"{name}: data.pkl is not a pickle this reader can use: {type(exc).__name__}: {exc}"
        ) from exc


def _prescan(data: bytes, name: str) -> None:
    """Walk the opcodes once before unpickling: a memo index far beyond the ops makes CPython allocate it all."""
    try:
        for ops, (op, arg, _pos) in enumerate(pickletools.genops(data), 1):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET") and (
                not isinstance(arg, int) or arg > ops
            ):
                raise CheckpointError(f"{name}: data.pkl uses memo slot {arg} after {ops} opcodes: refused")
    except (ValueError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{name}: data.pkl is not a valid pickle: {exc}") from exc
