"""installer/bundle_check.py: what fails the desktop build (forbidden packages and libraries, size)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from insane.devkit import ROOT
from installer import bundle_check


def test_forbidden_modules_are_found_by_their_package_or_subpackage() -> None:
    names = [
        "numpy",
        "numpy.linalg",
        "torch.nn.functional",
        "starlette.routing",
        "asyncpg",
        "uvicorn.main",
        "ultralytics.engine",
        "relay.app",
        "desktop.tray",
        "core.detect",
        "torchmetrics",
        "cv2",
        "PIL.Image",
        "insane.cli",
        "insane.devkit.services",
        "insane.devkitten",
    ]
    assert bundle_check.forbidden_modules([*names, "uvloop.loop", "core.lan.server"]) == [
        "asyncpg",
        "cv2",
        "insane.devkit",
        "relay",
        "torch",
        "ultralytics",
        "uvloop",
    ]  # Starlette and uvicorn serve the LAN API (core/lan): allowed; the relay's asyncpg and relay/ never


def test_forbidden_files_catch_torch_opencv_and_unused_qt_modules() -> None:
    paths = [
        "_internal/torch/lib/libtorch_cpu.so",
        "_internal/libc10.so",
        "_internal/PySide6/Qt/lib/libQt6WebEngineCore.so.6",
        "_internal/PySide6/Qt/lib/libQt6Quick.so.6",
        "_internal/PySide6/Qt/lib/libQt6Widgets.so.6",
        "_internal/PySide6/Qt/lib/libQt6Network.so.6",
        "_internal/onnxruntime/capi/libonnxruntime_providers_shared.so",
        "_internal/cv2/cv2.abi3.so",
        "insane-desktop",
    ]
    assert bundle_check.forbidden_files(paths) == [
        "_internal/PySide6/Qt/lib/libQt6Quick.so.6",
        "_internal/PySide6/Qt/lib/libQt6WebEngineCore.so.6",
        "_internal/cv2/cv2.abi3.so",
        "_internal/libc10.so",
        "_internal/torch/lib/libtorch_cpu.so",
    ]


def test_folder_bytes_counts_files_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 500)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert bundle_check.folder_bytes(tmp_path) == 1500


def test_command_line_fails_on_a_folder_over_the_limit_or_with_torch(tmp_path: Path) -> None:
    bundle = tmp_path / "insane-desktop"
    (bundle / "_internal" / "torch").mkdir(parents=True)
    (bundle / "_internal" / "torch" / "__init__.pyc").write_bytes(b"\0" * 2_000_000)
    done = subprocess.run(
        [sys.executable, str(ROOT / "installer" / "bundle_check.py"), str(bundle), "--max-mb", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "forbidden file in the bundle: _internal/torch/__init__.pyc" in done.stderr
    assert "the bundle is 2.0 MB, over the 1 MB limit" in done.stderr
    assert "no executable" in done.stderr


def test_the_spec_uses_the_checker_and_the_tray_entry_point() -> None:
    spec = (ROOT / "pyinstaller.spec").read_text()
    assert "bundle_check.forbidden_modules" in spec and "bundle_check.check_folder" in spec
    assert 'hiddenimports=["desktop.cli"]' in spec
    entry = (ROOT / "installer" / "insane_desktop.py").read_text()
    assert 'cli.COMMANDS[:] = [("tray", "desktop.cli")]' in entry


@pytest.mark.parametrize(
    "script", ["installer/linux/build.sh", "installer/macos/build.sh", "installer/linux/install.sh"]
)
def test_shell_scripts_parse(script: str) -> None:
    done = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
