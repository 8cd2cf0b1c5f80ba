"""Start at login: the real XDG file here; the LaunchAgent plist and the Run key value by their content."""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path

import pytest

from desktop.autostart import (
    CHOICE_VALUE,
    RUN_VALUE,
    AutostartError,
    InstallerChoice,
    RunKeyEntry,
    installer_choice,
    launch_agent_entry,
    reconcile,
    settle,
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
        "AssociatedBundleIdentifiers": ["ai.insane.desktop"],  # System Settings names it after the app
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


def test_a_bundle_starts_its_windowed_program_even_from_the_console_companion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("insane-desktop.exe", "insane-desktop-cli.exe"):
        (tmp_path / name).write_bytes(b"MZ")
    monkeypatch.setattr("sys.frozen", True, raising=False)
    monkeypatch.setattr("sys.executable", str(tmp_path / "insane-desktop-cli.exe"))
    assert tray_command() == [str(tmp_path / "insane-desktop.exe"), "tray"]
    monkeypatch.setattr("sys.executable", str(tmp_path / "insane-desktop.exe"))
    assert tray_command() == [str(tmp_path / "insane-desktop.exe"), "tray"]


def test_tray_command_runs_this_python() -> None:
    import sys

    assert tray_command() == [sys.executable, "-m", "insane", "tray"]


# ----- the Windows installer's "Start when I sign in" and the app's setting are one thing -------------------

EXE = r"C:\Users\a b\AppData\Local\Programs\Insane AI Security\insane-desktop.exe"
INSTALLER_VALUE = f'"{EXE}" tray'  # what installer/windows/insane.iss writes (test_windows_installer.py)


def after_install(start_at_login: bool) -> tuple[DictRunKey, DictRunKey]:
    """HKCU as a per-user install leaves it: the Run value when ticked, and the answer for the app."""
    run, answers = DictRunKey(), DictRunKey()
    if start_at_login:
        run.values[RUN_VALUE] = INSTALLER_VALUE
    answers.values[CHOICE_VALUE] = "1" if start_at_login else "0"
    return run, answers


def test_reconcile_alone_deleted_the_run_value_the_installer_wrote() -> None:
    # Defect: the first start after install reconciled against the default setting (off) and removed it.
    run, _ = after_install(True)
    assert reconcile(False, RunKeyEntry([EXE, "tray"], run)) is True
    assert run.values == {}


def test_the_installers_yes_becomes_the_setting_and_the_run_value_stays() -> None:
    run, answers = after_install(True)
    saved: list[bool] = []
    want = settle(False, RunKeyEntry([EXE, "tray"], run), InstallerChoice(answers), saved.append)
    assert want is True
    assert saved == [True]  # written to the config file: Settings shows it ticked
    assert run.values == {RUN_VALUE: INSTALLER_VALUE}
    assert answers.values == {}  # taken once: from now on Settings decides
    # The next start has no answer pending, and the saved setting keeps the value.
    assert settle(True, RunKeyEntry([EXE, "tray"], run), InstallerChoice(answers), saved.append) is True
    assert run.values == {RUN_VALUE: INSTALLER_VALUE} and saved == [True]


def test_the_installers_no_turns_off_what_the_app_had_turned_on() -> None:
    run, answers = after_install(False)
    run.values[RUN_VALUE] = INSTALLER_VALUE  # the app's own entry from before the reinstall
    saved: list[bool] = []
    assert settle(True, RunKeyEntry([EXE, "tray"], run), InstallerChoice(answers), saved.append) is False
    assert saved == [False] and run.values == {} and answers.values == {}


def test_an_answer_equal_to_the_setting_is_taken_without_a_save() -> None:
    run, answers = after_install(True)
    saved: list[bool] = []
    assert settle(True, RunKeyEntry([EXE, "tray"], run), InstallerChoice(answers), saved.append) is True
    assert saved == [] and answers.values == {}


def test_without_an_answer_the_setting_decides() -> None:
    run = DictRunKey()
    run.values[RUN_VALUE] = INSTALLER_VALUE
    assert settle(False, RunKeyEntry([EXE, "tray"], run), InstallerChoice(DictRunKey()), lambda on: None) is False
    assert run.values == {}
    assert settle(True, RunKeyEntry([EXE, "tray"], run), None, lambda on: None) is True
    assert run.values == {RUN_VALUE: INSTALLER_VALUE}


def test_a_failed_save_keeps_the_answer_for_the_next_start() -> None:
    run, answers = after_install(True)

    def save(on: bool) -> None:
        raise AutostartError("could not write the config file")

    with pytest.raises(AutostartError):
        settle(False, RunKeyEntry([EXE, "tray"], run), InstallerChoice(answers), save)
    assert answers.values == {CHOICE_VALUE: "1"}
    assert run.values == {RUN_VALUE: INSTALLER_VALUE}


def test_a_run_value_of_a_moved_installation_is_rewritten_to_this_one() -> None:
    run, answers = after_install(True)
    run.values[RUN_VALUE] = '"C:\\Old\\insane-desktop.exe" tray'
    assert settle(False, RunKeyEntry([EXE, "tray"], run), InstallerChoice(answers), lambda on: None) is True
    assert run.values == {RUN_VALUE: INSTALLER_VALUE}


def test_only_windows_has_an_installer_answer() -> None:
    assert installer_choice("linux") is None
    assert installer_choice("darwin") is None
