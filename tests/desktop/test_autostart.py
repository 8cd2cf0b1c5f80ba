"""Start at login: the real XDG file here; the LaunchAgent plist and the Run key value by their content."""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path

import pytest

from desktop.autostart import (
    AutostartError,
    RunKeyEntry,
    launch_agent_entry,
    reconcile,
    tray_command,
    xdg_entry,
)

COMMAND = ["/opt/Insane AI/insane", "tray"]


def test_xdg_entry_round_trip(tmp_path: Path) -> None:
    entry = xdg_entry(COMMAND, config_home=tmp_path)
    assert not entry.is_enabled() and not entry.exists()
    entry.enable()
    assert entry.path == tmp_path / "autostart" / "insane-ai-security.desktop"
    text = entry.path.read_text()
    assert text.startswith("[Desktop Entry]\n")
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    # The Exec= quoting reads back as the same argument list.
    assert shlex.split(exec_line.removeprefix("Exec=")) == COMMAND
    assert entry.is_enabled()
    entry.disable()
    assert not entry.exists()
    entry.disable()  # already gone: no error


def test_default_xdg_location_follows_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert xdg_entry(COMMAND).path.parent == tmp_path / "autostart"


def test_reconcile_rewrites_an_entry_whose_command_moved(tmp_path: Path) -> None:
    old = xdg_entry(["/old/insane", "tray"], config_home=tmp_path)
    old.enable()
    new = xdg_entry(COMMAND, config_home=tmp_path)
    assert new.exists() and not new.is_enabled()
    assert reconcile(True, new) is True
    assert new.is_enabled()
    assert reconcile(True, new) is False  # nothing to do
    assert reconcile(False, new) is True
    assert not new.exists()


def test_reconcile_removes_a_stale_entry_when_disabled(tmp_path: Path) -> None:
    xdg_entry(["/old/insane", "tray"], config_home=tmp_path).enable()
    entry = xdg_entry(COMMAND, config_home=tmp_path)
    assert reconcile(False, entry) is True
    assert not entry.exists()


def test_unwritable_folder_is_our_error(tmp_path: Path) -> None:
    blocker = tmp_path / "autostart"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(AutostartError, match="could not write"):
        xdg_entry(COMMAND, config_home=tmp_path).enable()


def test_launch_agent_plist(tmp_path: Path) -> None:
    entry = launch_agent_entry(COMMAND, home=tmp_path)
    entry.enable()
    assert entry.path == tmp_path / "Library" / "LaunchAgents" / "ai.insane.tray.plist"
    plist = plistlib.loads(entry.path.read_bytes())
    assert plist == {
        "Label": "ai.insane.tray",
        "ProgramArguments": COMMAND,
        "RunAtLoad": True,
        "ProcessType": "Interactive",
    }
    assert entry.is_enabled()


class DictRunKey:
    """The Run key as a dict: the registry itself exists only on Windows."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


def test_run_key_value_is_a_quoted_command_line() -> None:
    store = DictRunKey()
    entry = RunKeyEntry([r"C:\Program Files\Insane AI\insane.exe", "tray"], store)
    assert reconcile(True, entry)
    assert store.values == {"InsaneAISecurity": r'"C:\Program Files\Insane AI\insane.exe" tray'}
    assert reconcile(False, entry)
    assert store.values == {}


def test_tray_command_runs_this_python() -> None:
    import sys

    assert tray_command() == [sys.executable, "-m", "insane", "tray"]
