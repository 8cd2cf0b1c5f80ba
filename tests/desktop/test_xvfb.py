"""The real tray under X: Xvfb with Debian's ``trayer`` as the tray host; screenshots for review."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEEDED = ("Xvfb", "trayer", "import")


@pytest.fixture
def x_display(tmp_path: Path) -> Iterator[dict[str, str]]:
    missing = [name for name in NEEDED if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: xvfb trayer imagemagick)")
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        number = fh.readline().strip()  # Xvfb writes its display number once it accepts clients
    env = dict(os.environ, DISPLAY=f":{number}", QT_QPA_PLATFORM="xcb")
    trayer = subprocess.Popen(
        [
            "trayer",
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "request",
            "--height",
            "32",
            "--transparent",
            "false",
            "--tint",
            "0x303030",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert number, "Xvfb did not start"
        yield env
    finally:
        for proc in (trayer, xvfb):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_tray_icon_and_menu_under_x(x_display: dict[str, str], artifacts: Path, tmp_path: Path) -> None:
    env = dict(
        x_display,
        INSANE_CONFIG=str(tmp_path / "config.toml"),
        XDG_CONFIG_HOME=str(tmp_path),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
    )
    (tmp_path / "config.toml").write_text("")
    (tmp_path / "run").mkdir(mode=0o700)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.desktop.xvfb_child", str(artifacts)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["platform"] == "xcb"
    assert out["tray_available"] is True
    assert out["icon_visible"] is True and out["icon_geometry"][2] > 0
    assert out["menu_visible"] is True
    assert out["menu_items"][-3:] == ["Open dashboard", "Settings…", "Quit"]
    assert "Pause" in out["menu_items"] and any(item.startswith("Use GPU") for item in out["menu_items"])
    assert out["tooltip"].startswith("Insane AI Security: starting")
    assert out["dashboard_saved"] is True
    for name in ("tray-menu-xvfb.png", "dashboard-xvfb.png", "desktop-xvfb.png"):
        assert (artifacts / name).stat().st_size > 1000
