"""Start at login, per platform: an XDG autostart entry, a Windows Run key value, a macOS LaunchAgent.

    entry = autostart_entry()              # for this platform and this installation's command
    entry.enable(); entry.is_enabled(); entry.disable()

The settings' ``start_at_login`` is the source of truth; :func:`reconcile` makes the entry match it
at every start, which also rewrites an entry whose command moved (an update, a reinstall).

On Windows the installer asks too ("Start when I sign in"). It leaves its answer for the app under
``HKCU\\Software\\Insane AI Security`` (and writes the Run value itself); at the next start :func:`settle`
makes that answer the setting, saves it and removes it, then reconciles. Without this the app, whose
setting was still false, deleted the Run value the installer had just written.

    want = settle(settings.start_at_login, autostart_entry(), installer_choice(), save=...)
"""

from __future__ import annotations

import logging
import os
import plistlib
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

APP_ID = "insane-ai-security"
LAUNCH_AGENT_LABEL = "ai.insane.tray"
APP_BUNDLE_ID = "ai.insane.desktop"  # the .app's CFBundleIdentifier (installer/specinfo.py)
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "InsaneAISecurity"
# Where the Windows installer leaves its "Start when I sign in" answer ("1" or "0") for the app to take.
CHOICE_KEY = r"Software\Insane AI Security"
CHOICE_VALUE = "StartAtLoginChoice"


class AutostartError(Exception):
    """The entry could not be written or removed; ``str()`` is a sentence for the user."""


WINDOWED_EXE = "insane-desktop.exe"
CONSOLE_EXE = "insane-desktop-cli.exe"  # its console companion (installer/specinfo.py)


def tray_command() -> list[str]:
    """The command that starts the tray app for this installation (a bundle or a Python environment)."""
    if getattr(sys, "frozen", False):
        exe = Path(sys.executable)
        # Started from the console companion, the entry must still name the windowed program, or every
        # sign-in would open a console window.
        if exe.name.lower() == CONSOLE_EXE and (exe.parent / WINDOWED_EXE).is_file():
            exe = exe.parent / WINDOWED_EXE
        return [str(exe), "tray"]
    return [sys.executable, "-m", "insane", "tray"]


class AutostartEntry(Protocol):
    def is_enabled(self) -> bool: ...  # present and starting this installation's command
    def exists(self) -> bool: ...  # present, maybe with an old command
    def enable(self) -> None: ...
    def disable(self) -> None: ...
    def describe(self) -> str: ...


@dataclass
class _FileEntry:
    """An entry that is one file: the XDG .desktop file or the LaunchAgent plist."""

    path: Path
    content: bytes

    def is_enabled(self) -> bool:
        try:
            return self.path.read_bytes() == self.content
        except OSError:
            return False

    def exists(self) -> bool:
        return self.path.exists()

    def enable(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_bytes(self.content)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise AutostartError(f"could not write {self.path}: {exc.strerror or exc}") from exc
        log.info("start at login enabled: %s", self.path)

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise AutostartError(f"could not remove {self.path}: {exc.strerror or exc}") from exc
        log.info("start at login disabled: %s", self.path)

    def describe(self) -> str:
        return str(self.path)


def xdg_entry(command: list[str], config_home: Path | None = None) -> _FileEntry:
    """``$XDG_CONFIG_HOME/autostart/insane-ai-security.desktop`` (freedesktop Desktop Application Autostart)."""
    base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    # Exec= takes its own quoting: arguments with spaces go in double quotes, with \ " ` $ escaped.
    exec_line = " ".join(_desktop_quote(arg) for arg in command)
    text = (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=Insane AI Security\n"
        "Comment=AI review of security-camera events on this PC\n"
        f"Exec={exec_line}\n"
        "Icon=insane-ai-security\n"
        "Terminal=false\n"
        "X-GNOME-Autostart-enabled=true\n"
    )
    return _FileEntry(base / "autostart" / f"{APP_ID}.desktop", text.encode())


def _desktop_quote(arg: str) -> str:
    if arg and not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`"):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def launch_agent_entry(command: list[str], home: Path | None = None) -> _FileEntry:
    """``~/Library/LaunchAgents/ai.insane.tray.plist``, loaded by launchd at the next login."""
    plist = {
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "ProcessType": "Interactive",
        # macOS 13+ lists login items in System Settings; without this an agent shows as a nameless
        # background item, with it as the app (name and icon) whose bundle id it names.
        "AssociatedBundleIdentifiers": [APP_BUNDLE_ID],
    }
    path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"
    return _FileEntry(path, plistlib.dumps(plist))


class RunKeyStore(Protocol):
    """String values of one HKCU key (the Run key, the installer's answer): the seam that lets the Windows
    entries be tested on any platform."""

    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


class WinregRunKey:
    """The real HKCU key (the Run key by default) through ``winreg`` (Windows only)."""

    def __init__(self, path: str = RUN_KEY) -> None:
        import winreg

        self._winreg = winreg
        self.path = path

    def get(self, name: str) -> str | None:
        w = self._winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, self.path) as key:
                value, _ = w.QueryValueEx(key, name)
                return str(value)
        except FileNotFoundError:
            return None

    def set(self, name: str, value: str) -> None:
        w = self._winreg
        with w.CreateKey(w.HKEY_CURRENT_USER, self.path) as key:
            w.SetValueEx(key, name, 0, w.REG_SZ, value)

    def delete(self, name: str) -> None:
        w = self._winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, self.path, 0, w.KEY_SET_VALUE) as key:
                w.DeleteValue(key, name)
        except FileNotFoundError:
            return


@dataclass
class RunKeyEntry:
    command: list[str]
    store: RunKeyStore

    @property
    def value(self) -> str:
        return subprocess.list2cmdline(self.command)

    def is_enabled(self) -> bool:
        return self.store.get(RUN_VALUE) == self.value

    def exists(self) -> bool:
        return self.store.get(RUN_VALUE) is not None

    def enable(self) -> None:
        try:
            self.store.set(RUN_VALUE, self.value)
        except OSError as exc:
            raise AutostartError(f"could not write the Run key: {exc}") from exc
        log.info("start at login enabled: HKCU\\%s\\%s", RUN_KEY, RUN_VALUE)

    def disable(self) -> None:
        try:
            self.store.delete(RUN_VALUE)
        except OSError as exc:
            raise AutostartError(f"could not remove the Run key value: {exc}") from exc
        log.info("start at login disabled")

    def describe(self) -> str:
        return f"HKCU\\{RUN_KEY}\\{RUN_VALUE}"


def autostart_entry(command: list[str] | None = None, platform: str | None = None) -> AutostartEntry:
    command = command or tray_command()
    platform = platform or sys.platform
    if platform == "win32":
        return RunKeyEntry(command, WinregRunKey())
    if platform == "darwin":
        return launch_agent_entry(command)
    return xdg_entry(command)


@dataclass
class InstallerChoice:
    """The Windows installer's pending "Start when I sign in" answer."""

    store: RunKeyStore

    def pending(self) -> bool | None:
        value = self.store.get(CHOICE_VALUE)
        return None if value is None else value.strip() == "1"

    def clear(self) -> None:
        try:
            self.store.delete(CHOICE_VALUE)
        except OSError as exc:
            raise AutostartError(f"could not remove the installer's answer: {exc}") from exc


def installer_choice(platform: str | None = None) -> InstallerChoice | None:
    """Where the installer leaves its answer: only Windows has one."""
    if (platform or sys.platform) != "win32":
        return None
    return InstallerChoice(WinregRunKey(CHOICE_KEY))


def settle(
    want: bool,
    entry: AutostartEntry,
    choice: InstallerChoice | None,
    save: Callable[[bool], None],
) -> bool:
    """The setting in force after the installer's pending answer (if any) became it; the entry matches it.

    The answer is saved with ``save`` before it is removed, so a failed save (it raises) leaves it for the
    next start and changes nothing.
    """
    if choice is not None and (answer := choice.pending()) is not None:
        if answer != want:
            save(answer)
            log.info("start at login: %s, as chosen in the installer", "on" if answer else "off")
        want = answer
        choice.clear()
    reconcile(want, entry)
    return want


def reconcile(want: bool, entry: AutostartEntry | None = None) -> bool:
    """Make the entry match the setting; True when something changed."""
    entry = entry or autostart_entry()
    if want and not entry.is_enabled():
        entry.enable()
        return True
    if not want and entry.exists():
        entry.disable()
        return True
    return False
