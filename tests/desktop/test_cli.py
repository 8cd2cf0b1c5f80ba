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
