"""`insane detect` and `insane model` as a user runs them: a child process, real files, real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        INSANE_MODEL_DIR=str(tmp_path / "models"),
        YOLO_OFFLINE="1",
        YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"),
        **extra,
    )
    return subprocess.run(
        [sys.executable, "-m", "insane", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_detect_json_and_errors(tmp_path: Path, fall_model_onnx: Path, sample_images: dict[str, bytes]) -> None:
    bus = tmp_path / "bus.jpg"
    bus.write_bytes(sample_images["bus.jpg"])
    junk = tmp_path / "notes.txt"
    junk.write_text("not a picture")
    r = _run(
        "detect",
        "--model",
        str(fall_model_onnx),
        "--json",
        "--save",
        str(tmp_path / "out"),
        str(bus),
        str(junk),
        tmp_path=tmp_path,
    )
    assert r.returncode == 1, r.stderr
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    assert first["detections"] and {d["label"] for d in first["detections"]} <= {"Normal", "Fall"}
    assert all(0 <= d["box"][0] < d["box"][2] <= 810 for d in first["detections"])
    assert second == {"image": str(junk), "error": "not a JPEG or PNG image (unknown file signature)"}
    assert (tmp_path / "out" / "bus.annotated.jpg").stat().st_size > 10_000


def test_detect_batches_mixed_shapes_and_keeps_the_order(
    tmp_path: Path, fall_model_onnx: Path, sample_images: dict[str, bytes]
) -> None:
    # A 3:4 photo, a 16:9 one, a broken file and the 3:4 one again, two per batch: one model call per shape,
    # every answer in the order given, each the same as that photo's own single run.
    names = ["bus.jpg", "zidane.jpg", "broken.jpg", "bus2.jpg"]
    (tmp_path / "bus.jpg").write_bytes(sample_images["bus.jpg"])
    (tmp_path / "zidane.jpg").write_bytes(sample_images["zidane.jpg"])
    (tmp_path / "broken.jpg").write_bytes(sample_images["bus.jpg"][:500])
    (tmp_path / "bus2.jpg").write_bytes(sample_images["bus.jpg"])
    paths = [str(tmp_path / n) for n in names]
    batched = _run("detect", "--model", str(fall_model_onnx), "--json", "--batch", "2", *paths, tmp_path=tmp_path)
    assert batched.returncode == 1, batched.stderr
    lines = [json.loads(line) for line in batched.stdout.splitlines()]
    assert [line["image"] for line in lines] == paths
    assert "error" in lines[2] and "corrupt or truncated" in lines[2]["error"]
    single = _run("detect", "--model", str(fall_model_onnx), "--json", "--batch", "1", *paths[:2], tmp_path=tmp_path)
    alone = [json.loads(line) for line in single.stdout.splitlines()]
    assert lines[0]["detections"] == alone[0]["detections"] == lines[3]["detections"]
    assert lines[1]["detections"] == alone[1]["detections"] and lines[1]["detections"]
    refused = _run("detect", "--model", str(fall_model_onnx), "--batch", "0", paths[0], tmp_path=tmp_path)
    assert refused.returncode == 2 and "--batch must be at least 1" in refused.stderr


def test_missing_model_says_how_to_get_it(tmp_path: Path) -> None:
    r = _run("detect", "--model", "yolov8n", "x.jpg", tmp_path=tmp_path)
    assert r.returncode == 2 and "insane model download yolov8n" in r.stderr


def test_import_then_list(tmp_path: Path, fall_model_onnx: Path) -> None:
    r = _run("model", "import", str(fall_model_onnx), "--name", "mine", tmp_path=tmp_path)
    assert r.returncode == 0 and "2 classes" in r.stdout
    rows = json.loads(_run("model", "list", "--json", tmp_path=tmp_path).stdout)
    assert {"name": "mine", "state": "ready"}.items() <= next(x for x in rows if x["name"] == "mine").items()


def test_import_converts_a_checkpoint_without_torch(tmp_path: Path, fall_model_pt: Path) -> None:
    """The child process cannot import torch or Ultralytics: the conversion never needs them."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("torch", "ultralytics"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('{name} is blocked for this test')\n")
    env_path = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])
    r = _run("model", "import", str(fall_model_pt), "--name", "fall", tmp_path=tmp_path, PYTHONPATH=env_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(tmp_path / "models" / "fall.onnx"))
    assert "2 classes (Normal, Fall), input ['batch', 3, 'height', 'width'] tensor(float)" in r.stdout
    bad = tmp_path / "bad.pt"
    bad.write_bytes(fall_model_pt.read_bytes()[:5000])
    r = _run("model", "import", str(bad), tmp_path=tmp_path, PYTHONPATH=env_path)
    assert r.returncode == 1 and "insane model import: bad.pt is not a PyTorch zip checkpoint" in r.stderr


@pytest.mark.export
def test_export_makes_a_runnable_model(tmp_path: Path, fall_model_pt: Path) -> None:
    pytest.importorskip("ultralytics", reason="needs the export extra (Ultralytics, torch)")
    r = _run("model", "export", str(fall_model_pt), "--rect", "--name", "fall-rect", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    from core.detect.registry import describe

    info = describe(tmp_path / "models" / "fall-rect.onnx")
    assert info["labels"] == ["Normal", "Fall"] and info["imgsz"] == "[384, 640]"
