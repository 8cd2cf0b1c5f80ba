"""desktop/logfile.py and the bundle's entry point: output nobody can read goes to a log file, shown in Settings.

The entry point runs in a child interpreter as the frozen app would start: with no standard streams at
all (a windowed Windows executable) and with both on /dev/null (a macOS app started from Finder).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop import logfile
from desktop.settings_dialog import SettingsDialog
from insane.devkit import ROOT


def test_lost_streams_need_a_log_file(tmp_path: Path) -> None:
    assert logfile.needs_log_file(None)
    with open(os.devnull, "w") as null:
        assert logfile.needs_log_file(null)
    with (tmp_path / "out.txt").open("w") as regular:
        assert not logfile.needs_log_file(regular)
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as pipe:
        assert not logfile.needs_log_file(pipe)
    assert not logfile.needs_log_file(io.StringIO())


def test_redirect_appends_and_keeps_one_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(logfile, "_active", None)
    path = tmp_path / "logs" / "tray.log"
    path.parent.mkdir()
    path.write_text("x" * 50)
    assert logfile.redirect_to_log_file(path, max_bytes=10) == path
    print("to stdout")
    print("to stderr", file=sys.stderr)
    sys.stdout.flush()
    assert path.read_text() == "to stdout\nto stderr\n"
    assert (tmp_path / "logs" / "tray.log.1").read_text() == "x" * 50
    assert logfile.active_log_file() == path
    sys.stdout.close()


CHILD = """
import runpy, sys
if sys.argv[1] == "none":
    sys.stdout = sys.stderr = None      # what a windowed Windows executable starts with
sys.argv = ["insane-desktop", "--help"]
runpy.run_path({entry!r}, run_name="__main__")
"""


@pytest.mark.parametrize("streams", ["none", "devnull"])
def test_the_bundle_entry_point_writes_its_output_to_the_log_file(tmp_path: Path, streams: str) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),  # platformdirs' user log folder on Linux
        "ORT_DISABLE_TELEMETRY": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(entry=str(ROOT / "installer" / "insane_desktop.py")), streams],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode == 0
    log = (tmp_path / "state" / "insane" / "log" / "tray.log").read_text()
    assert "usage: insane tray" in log and "--self-test" in log


def test_a_terminal_keeps_the_output(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, str(ROOT / "installer" / "insane_desktop.py"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "usage: insane tray" in done.stdout
    assert not (tmp_path / "state").exists()


def test_settings_shows_where_the_log_is(qtbot, tmp_path: Path) -> None:
    values = {"relay_url": "https://r.example", "model": "yolov8n", "worker_threads": 2, "start_at_login": False}
    dialog = SettingsDialog(values, log_file=tmp_path / "tray.log")
    qtbot.addWidget(dialog)
    assert dialog.log_location.text() == str(tmp_path / "tray.log")
    console = SettingsDialog(values)
    qtbot.addWidget(console)
    assert console.log_location.text() == "the terminal it was started from"


def test_onnxruntimes_own_telemetry_is_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    from desktop.cli import telemetry_off

    calls: list[str] = []
    real = onnxruntime.disable_telemetry_events
    monkeypatch.setattr(onnxruntime, "disable_telemetry_events", lambda: calls.append("off"))
    telemetry_off()
    assert calls == ["off"]
    real()  # the real switch exists in this onnxruntime and takes no arguments
