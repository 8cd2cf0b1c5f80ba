"""bench/gpu.py on a machine without a GPU: it runs, says no GPU was found and why, and gives the CPU figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from insane.devkit import ROOT


@pytest.mark.slow
def test_bench_gpu_runs_on_the_cpu_and_says_no_gpu_was_found(yolov8n_onnx: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--seconds", "0.2", "--model", f"yolov8n={yolov8n_onnx}"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # one JSON object, nothing else on stdout
    res = json.loads(lines[0])
    assert res["gpu"]["found"] is False
    assert res["gpu"]["reason"].startswith("no GPU was found: ")
    assert "this onnxruntime offers no CUDA or TensorRT" in res["gpu"]["reason"]
    assert res["summary"].endswith("CPU figures only")
    rates = res["raw"]["CPUExecutionProvider"]["yolov8n"]["fp32"]
    assert set(rates) == {"1", "8"} and all(v > 0 for v in rates.values())
    assert res["pipeline"]["yolov8n"]["provider"] == "CPUExecutionProvider" and res["pipeline"]["yolov8n"]["img_s"] > 0
    wall = res["decode"]
    assert wall["ms_per_frame_one_thread"] > 0 and wall["frames_per_s_by_threads"]["1"] > 0
    assert "skipped" in res["e2e"]
    assert "no GPU was found" in done.stderr
