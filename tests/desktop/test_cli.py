"""``insane tray``: --help imports no Qt; --self-test runs the real detector on the bundled sample."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from insane.devkit import INSANE, ROOT


def test_help_imports_no_qt() -> None:
    code = (
        "import sys; from insane.cli import main\n"
        "try:\n    main(['tray', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert not any(m.startswith(('PySide6', 'qasync')) for m in sys.modules), 'Qt imported'\n"
    )
    proc = subprocess.run([*INSANE[:1], "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--self-test" in proc.stdout


def test_self_test_runs_the_model(shipped_fall_onnx: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [*INSANE, "tray", "--self-test", "--model", str(shipped_fall_onnx)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "model: fall-yolov8s-fp16-shipped (2 classes)" in proc.stdout
    assert "sample: sample.jpg" in proc.stdout and "self-test: OK" in proc.stdout


def test_self_test_fails_cleanly_without_a_model(tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [*INSANE, "tray", "--self-test", "--model", str(tmp_path / "missing.onnx")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "self-test: FAILED: model file not found" in proc.stderr


def test_a_gpu_builds_self_test_tries_the_gpu_falls_back_to_the_cpu_and_says_so(
    shipped_fall_onnx: Path, monkeypatch, capsys, qapp
) -> None:
    from core.detect import providers
    from core.settings import load_settings
    from desktop.selftest import self_test

    # The GPU flavour's onnxruntime-gpu on a machine without a GPU: it offers TensorRT and CUDA, neither loads.
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(providers, "offered", lambda: gpu_build)
    assert self_test(load_settings(model=str(shipped_fall_onnx))) == 0
    out = capsys.readouterr().out
    assert "provider CPUExecutionProvider" in out and "self-test: OK" in out
    assert "execution provider: CPUExecutionProvider" in out
    assert "not used: TensorrtExecutionProvider: onnxruntime fell back to the CPU" in out
    assert "CUDAExecutionProvider: onnxruntime fell back to the CPU" in out
