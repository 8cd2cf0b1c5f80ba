"""core/detect/checkpoint.py: Ultralytics checkpoints read without torch, and hostile ones refused with no side effect.

Each payload test first proves the payload is live (plain ``pickle.loads`` in a child process creates the marker
file), then that our reader refuses it, naming the global, and that the marker file does not exist.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path, PureWindowsPath

import numpy as np
import pytest

from core.detect.checkpoint import CheckpointError, Limits, Module, UnsafeCheckpoint, read_checkpoint
from tests.core.pickles import Global, Reduce, dumps, module, tensor, torch_zip

# --- a small valid checkpoint, written by hand ------------------------------------------------------------


def _conv_ckpt(model_key: str = "model", ema: object = None, extra: dict | None = None) -> tuple[bytes, np.ndarray]:
    weights = np.arange(2 * 3 * 1 * 1, dtype=np.float16).reshape(2, 3, 1, 1) / 4
    conv = module("torch.nn.modules.conv.Conv2d", {"weight": tensor("HalfStorage", "0", 6, (2, 3, 1, 1))}, groups=1)
    model = module(
        "ultralytics.nn.tasks.DetectionModel",
        children={"model": module("torch.nn.modules.container.Sequential", children={"0": conv})},
        names={0: "a", 1: "b"},
    )
    ckpt = {"date": "2024-01-01", "version": "8.1.0", model_key: model, "ema": ema, **(extra or {})}
    return torch_zip(dumps(ckpt), {"0": weights.tobytes()}), weights


def _write(tmp_path: Path, raw: bytes, name: str = "m.pt") -> Path:
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def test_a_checkpoint_reads_into_inert_modules_with_fp16_upcast(tmp_path: Path) -> None:
    raw, weights = _conv_ckpt()
    ckpt = read_checkpoint(_write(tmp_path, raw))
    assert ckpt.model.cls == "ultralytics.nn.tasks.DetectionModel"
    assert ckpt.model.attrs["names"] == {0: "a", 1: "b"}
    conv = ckpt.model.child("model").child("0")
    w = conv.tensor("weight")
    assert w.dtype == np.float32 and np.array_equal(w, weights.astype(np.float32))
    assert ckpt.meta == {"date": "2024-01-01", "version": "8.1.0"}


def test_ema_is_taken_before_model_as_ultralytics_does(tmp_path: Path) -> None:
    ema = module("ultralytics.nn.tasks.DetectionModel", names={0: "from-ema"})
    raw, _ = _conv_ckpt(ema=ema)
    assert read_checkpoint(_write(tmp_path, raw)).model.attrs["names"] == {0: "from-ema"}
    raw, _ = _conv_ckpt(ema=None)  # a stripped checkpoint: ema is None, the model is the weights
    assert read_checkpoint(_write(tmp_path, raw)).model.attrs["names"] == {0: "a", 1: "b"}


def test_windows_and_posix_paths_read_as_pure_paths(tmp_path: Path) -> None:
    args = {
        "data": Reduce(Global("pathlib", "WindowsPath"), ("D:\\data\\coco.yaml",)),
        "save_dir": Reduce(Global("pathlib", "PosixPath"), ("/runs/train",)),
    }
    raw, _ = _conv_ckpt(extra={"train_args": args})
    ckpt = read_checkpoint(_write(tmp_path, raw))
    assert ckpt.meta["train_args"] == {"data": str(PureWindowsPath("D:\\data\\coco.yaml")), "save_dir": "/runs/train"}


def test_bfloat16_and_strided_tensors(tmp_path: Path) -> None:
    values = np.array([1.5, -2.0, 3.25, 0.0, 7.0, 8.0], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)
    # A transposed view (stride (1, 3)) at offset 0 over 6 elements: a 3×2 tensor.
    t = tensor("BFloat16Storage", "0", 6, (3, 2), stride=(1, 3))
    raw = torch_zip(dumps({"model": module("ultralytics.nn.tasks.DetectionModel", t=t)}), {"0": bf16.tobytes()})
    got = read_checkpoint(_write(tmp_path, raw)).model.tensor("t")
    assert np.array_equal(got, values.reshape(2, 3).T)


def test_the_real_fall_model_reads(fall_model_pt: Path) -> None:
    ckpt = read_checkpoint(fall_model_pt)
    assert ckpt.model.attrs["names"] == {0: "Normal", 1: "Fall"}
    assert ckpt.meta["version"] == "8.3.202" and ckpt.meta["train_args"]["epochs"] == 50
    first = ckpt.model.child("model").child("0").child("conv").tensor("weight")
    assert first.shape == (32, 3, 3, 3) and first.dtype == np.float32 and np.isfinite(first).all()


@pytest.mark.export
def test_a_checkpoint_pickled_with_dill_reads(tmp_path: Path, model_cache: Path) -> None:
    from importlib.util import find_spec

    if find_spec("dill") is None or find_spec("torch") is None:
        pytest.skip("needs torch and dill (the test install)")
    from insane.devkit import models

    src = models.yolov8n_pt(model_cache)
    out = tmp_path / "dill.pt"
    code = (
        "import sys, torch, dill, pathlib\n"
        "ck = torch.load(sys.argv[1], weights_only=False, map_location='cpu')\n"
        "ck['train_args'] = {'project': pathlib.PurePosixPath('/runs'), 'names': {0: 'x'}}\n"
        "torch.save(ck, sys.argv[2], pickle_module=dill)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(src), str(out)], check=True, env={**os.environ, "YOLO_OFFLINE": "1"}
    )
    assert b"dill._dill" in zipfile.ZipFile(out).read("dill/data.pkl")
    ckpt = read_checkpoint(out)
    assert ckpt.meta["train_args"]["project"] == "/runs"
    assert ckpt.model.child("model").child("22").name == "Detect"


# --- hostile pickles ---------------------------------------------------------------------------------------


def _payload(name: str, marker: Path) -> Reduce:
    """A REDUCE of the named global that creates ``marker`` when plain pickle loads it."""
    module_name, func = name.rsplit(".", 1)
    args = {
        "os.system": (f"touch {marker}",),
        "builtins.eval": (f"open({str(marker)!r}, 'w').close()",),
        "subprocess.Popen": (["touch", str(marker)],),
    }[name]
    return Reduce(Global(module_name, func), args)


def _prove_live(data: bytes, marker: Path) -> None:
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"], input=data)
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:  # Popen's child may finish after the parent
        time.sleep(0.05)
    assert marker.exists(), "the payload should work against plain pickle"
    marker.unlink()


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_a_global_outside_the_allow_list_is_named_and_never_run(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    data = dumps({"model": _payload(name, marker), "ema": None})
    _prove_live(data, marker)
    with pytest.raises(UnsafeCheckpoint, match=rf"names the global {name}, which is not on the allow-list"):
        read_checkpoint(_write(tmp_path, torch_zip(data)))
    time.sleep(0.2)  # a started process would have had time to touch the file
    assert not marker.exists()


def test_importlib_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    imported = Reduce(Global("importlib", "import_module"), ("os",))
    payload = Reduce(Reduce(Global("operator", "attrgetter"), ("system",)), (imported,))
    data = dumps({"model": Reduce(payload, (f"touch {marker}",))})
    _prove_live(data, marker)
    with pytest.raises(UnsafeCheckpoint, match=r"names the global operator\.attrgetter"):
        read_checkpoint(_write(tmp_path, torch_zip(data)))
    data = dumps({"model": Reduce(Reduce(Global("importlib", "import_module"), ("os",)), ())})
    with pytest.raises(UnsafeCheckpoint, match=r"names the global importlib\.import_module"):
        read_checkpoint(_write(tmp_path, torch_zip(data)))
    assert not marker.exists()


def test_a_reduce_payload_inside_a_real_looking_checkpoint_is_refused(tmp_path: Path) -> None:
    """An object whose ``__reduce__`` runs a command, pickled by Python's own pickler into train_args."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = pickle.dumps({"train_args": {"x": Payload()}}, protocol=2)
    assert b"system" in evil
    _prove_live(evil, marker)
    with pytest.raises(UnsafeCheckpoint, match=r"(posix|os)\.system"):
        read_checkpoint(_write(tmp_path, torch_zip(evil)))
    assert not marker.exists()


def test_dill_type_table_allows_plain_types_only(tmp_path: Path) -> None:
    ok = dumps(
        {
            "model": module("ultralytics.nn.tasks.DetectionModel"),
            "s": Reduce(Reduce(Global("dill._dill", "_load_type"), ("set",)), ([1, 2],)),
        }
    )
    assert read_checkpoint(_write(tmp_path, torch_zip(ok))).model.name == "DetectionModel"
    for bad in ("CodeType", "FunctionType", "type"):
        data = dumps({"x": Reduce(Global("dill._dill", "_load_type"), (bad,))})
        with pytest.raises(UnsafeCheckpoint, match=rf"_load_type\('{bad}'\)"):
            read_checkpoint(_write(tmp_path, torch_zip(data)))
    data = dumps({"x": Reduce(Global("dill._dill", "_create_function"), ())})
    with pytest.raises(UnsafeCheckpoint, match=r"dill\._dill\._create_function"):
        read_checkpoint(_write(tmp_path, torch_zip(data)))


def test_stand_ins_cannot_be_given_methods_by_the_pickle(tmp_path: Path) -> None:
    """BUILD twice: the first tries to plant ``__setstate__``; stand-ins have no instance dict to hold it."""
    from tests.core.pickles import New

    cls = Global("ultralytics.nn.tasks", "DetectionModel")
    planted = New(cls, {"__setstate__": Global("collections", "OrderedDict"), "names": {0: "x"}})
    raw = torch_zip(dumps({"model": planted}))
    model = read_checkpoint(_write(tmp_path, raw)).model
    assert isinstance(model, Module) and not hasattr(model, "__dict__")
    assert model.attrs["__setstate__"] is not None and model.attrs["names"] == {0: "x"}


def test_a_huge_memo_index_is_refused_before_unpickling(tmp_path: Path) -> None:
    data = b"\x80\x02N" + b"r" + struct.pack("<I", 0x7FFFFFF0) + b"."  # LONG_BINPUT far beyond the ops
    with pytest.raises(CheckpointError, match="memo slot"):
        read_checkpoint(_write(tmp_path, torch_zip(data)))


# --- hostile zips ------------------------------------------------------------------------------------------


def test_a_truncated_file_is_a_clear_error(tmp_path: Path, fall_model_pt: Path) -> None:
    raw = fall_model_pt.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 10, 100):
        with pytest.raises(CheckpointError, match="not a PyTorch zip checkpoint"):
            read_checkpoint(_write(tmp_path, raw[:cut]))
    with pytest.raises(CheckpointError, match="not a PyTorch zip checkpoint"):
        read_checkpoint(_write(tmp_path, b""))


def test_a_record_whose_bytes_were_changed_is_refused(tmp_path: Path) -> None:
    raw, _ = _conv_ckpt()
    zf = zipfile.ZipFile(io.BytesIO(raw))
    info = zf.getinfo("archive/data/0")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    damaged = raw[:start] + b"\xff" * info.file_size + raw[start + info.file_size :]  # bytes changed, CRC not
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(_write(tmp_path, damaged))


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", dumps({"model": None}))
        with zf.open("archive/data/0", "w", force_zip64=True) as fh:
            block = bytes(1 << 24)
            for _ in range(16):  # 256 MiB of zeros, about 250 KB deflated
                fh.write(block)
    assert path.stat().st_size < 1 << 20
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="a zip bomb"):
        read_checkpoint(path)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(CheckpointError, match=r"declares \d+ bytes uncompressed"):
        read_checkpoint(path, Limits(max_ratio=10**9, max_total_bytes=1 << 27))


def test_a_deflated_record_that_lies_about_its_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", dumps({"model": None}) + b"\0" * 100_000)
    raw = bytearray(path.read_bytes())
    zf = zipfile.ZipFile(path)
    info = zf.getinfo("archive/data.pkl")
    # Shrink the declared size in both headers to 20 bytes: the ratio check passes, the data runs on.
    local = info.header_offset
    central = raw.rindex(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, 20)
    struct.pack_into("<I", raw, central + 24, 20)
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"cannot be read"):
        read_checkpoint(path)


@pytest.mark.parametrize("stored", [5, 7, 0], ids=["short", "long", "empty"])
def test_a_storage_whose_bytes_differ_from_its_declared_size_is_refused(tmp_path: Path, stored: int) -> None:
    """The tensor declares 6 fp16 elements (12 bytes); the record holds another count of them."""
    data = dumps({"model": module("ultralytics.nn.tasks.DetectionModel", t=tensor("HalfStorage", "0", 6, (6,)))})
    raw = torch_zip(data, {"0": bytes(2 * stored)})
    with pytest.raises(CheckpointError, match=r"record archive/data/0 holds \d+ bytes where its tensor declares 12"):
        read_checkpoint(_write(tmp_path, raw))


@pytest.mark.parametrize(
    ("size", "stride", "offset", "message"),
    [
        ((6,), (1,), 2, "reaches element 7 of a storage holding 6"),
        ((3, 3), (3, 1), 0, "a tensor of 9 elements over a storage of 6"),
        ((2, 2), (5, 1), 0, "reaches element 6 of a storage holding 6"),
        ((2**40,), (0,), 0, "refused"),
        ((-1,), (1,), 0, "malformed tensor geometry"),
    ],
)
def test_a_tensor_reaching_outside_its_storage_is_refused(tmp_path: Path, size, stride, offset, message) -> None:
    t = tensor("FloatStorage", "0", 6, size, stride, offset)
    raw = torch_zip(dumps({"model": module("ultralytics.nn.tasks.DetectionModel", t=t)}), {"0": bytes(24)})
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(_write(tmp_path, raw))


def test_a_storage_referenced_with_another_size_is_refused(tmp_path: Path) -> None:
    t1, t2 = tensor("FloatStorage", "0", 6, (6,)), tensor("FloatStorage", "0", 3, (3,))
    raw = torch_zip(dumps({"model": module("ultralytics.nn.tasks.DetectionModel", a=t1, b=t2)}), {"0": bytes(24)})
    with pytest.raises(CheckpointError, match="two different types or sizes"):
        read_checkpoint(_write(tmp_path, raw))


def test_what_is_not_a_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(_write(tmp_path, torch_zip(dumps([1, 2]))))
    with pytest.raises(CheckpointError, match="no model"):
        read_checkpoint(_write(tmp_path, torch_zip(dumps({"model": None, "ema": None}))))
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="not a PyTorch zip checkpoint"):
        read_checkpoint(_write(tmp_path, b"\x80\x02}q\x00." + bytes(100)))  # torch < 1.6's legacy format
    script = io.BytesIO()
    with zipfile.ZipFile(script, "w") as zf:
        zf.writestr("m/data.pkl", dumps({}))
        zf.writestr("m/constants.pkl", dumps(()))
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_checkpoint(_write(tmp_path, script.getvalue()))
    with pytest.raises(CheckpointError, match="not a valid pickle"):
        read_checkpoint(_write(tmp_path, torch_zip(b"\x80\x02}(Xa" + b".")))
    with pytest.raises(CheckpointError, match="not a pickle this reader can use: TypeError"):
        read_checkpoint(_write(tmp_path, torch_zip(dumps(Reduce(7, ())))))
