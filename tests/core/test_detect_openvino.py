"""OpenVINO's CPU device (onnxruntime-openvino, in a venv of its own) finds the same boxes as the default CPU provider.

onnxruntime-openvino replaces the ``onnxruntime`` module, so it never enters the project's venv: the test
runs the detector in ``$INSANE_OPENVINO_VENV`` (default ``.venv-openvino``), made by ``./dev.sh openvino``
when missing, with this checkout on its path. The same code runs an Intel iGPU as ``OpenVINOExecutionProvider``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from core.detect import OnnxConfig, load_detector
from insane.devkit import ROOT

CHILD = """
import json, sys
from core.detect import OnnxConfig, load_detector
from core.detect import providers
model, images = sys.argv[1], sys.argv[2:]
with load_detector(OnnxConfig(path=model, providers=("OpenVINOCPU",), threads=2)) as det:
    session = det._sessions[0].get_providers()
    out = [[(d.label, d.confidence, list(d.box)) for d in det.detect([det.prepare(open(p, "rb").read())])[0]]
           for p in images]
print(json.dumps({"provider": det.provider, "session": session, "devices": providers.openvino_devices(),
                  "available": providers.available(), "detections": out}))
"""


def openvino_venv() -> Path:
    venv = Path(os.environ.get("INSANE_OPENVINO_VENV") or ROOT / ".venv-openvino")
    if not (venv / "bin" / "python").exists():
        made = subprocess.run(
            ["flock", "/tmp/insane-openvino-venv.lock", str(ROOT / "dev.sh"), "openvino"],
            cwd=ROOT,
            env={**os.environ, "INSANE_OPENVINO_VENV": str(venv)},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if made.returncode != 0:
            pytest.skip(f"./dev.sh openvino could not make {venv}: {made.stderr.strip()[-400:]}")
    return venv


@pytest.mark.slow
def test_openvino_cpu_finds_the_same_boxes_as_the_default_cpu_provider(
    fall_model_onnx: Path, sample_images: dict[str, bytes], tmp_path: Path
) -> None:
    venv = openvino_venv()
    paths = []
    for name, data in sample_images.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHILD, str(fall_model_onnx), *paths],
        env={**os.environ, "PYTHONPATH": str(ROOT), "ORT_DISABLE_TELEMETRY": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["provider"] == "OpenVINOCPU" and child["session"][0] == "OpenVINOExecutionProvider"
    assert "CPU" in child["devices"] and "OpenVINOCPU" in child["available"]
    with load_detector(OnnxConfig(path=str(fall_model_onnx), threads=2)) as det:
        assert det.provider == "CPUExecutionProvider"
        default = [det.detect([det.prepare(data)])[0] for data in sample_images.values()]
    assert sum(len(d) for d in default) >= 3  # the photos have people in them: a real comparison
    for name, ours, theirs in zip(sample_images, default, child["detections"], strict=True):
        # Boxes above the threshold by a margin must be found by both; near-threshold ones may flip.
        assert len(theirs) == len(ours) or _only_borderline(ours, theirs), (name, ours, theirs)
        for d in ours:
            match = max(theirs, key=lambda t: _iou(d.box, t[2]) if t[0] == d.label else -1, default=None)
            if d.confidence < 0.3 and (match is None or _iou(d.box, match[2]) < 0.9):
                continue  # borderline: checked by _only_borderline above
            assert match is not None and match[0] == d.label, (name, d)
            assert _iou(d.box, match[2]) > 0.98, (name, d, match)
            assert abs(match[1] - d.confidence) < 0.02, (name, d, match)


def _only_borderline(ours, theirs) -> bool:
    strong = [d for d in ours if d.confidence >= 0.3]
    strong_theirs = [t for t in theirs if t[1] >= 0.3]
    return len(strong) == len(strong_theirs)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
