"""Start at login, per platform: an XDG autostart entry, a Windows Run key value, a macOS LaunchAgent.

    entry = autostart_entry()              # for this platform and this installation's command
    entry.enable(); entry.is_enabled(); entry.disable()

The settings' ``start_at_login`` is the source of truth; :func:`reconcile` makes the entry match it
at every start, which also rewrites an entry whose command moved (an update, a reinstall).
"""

from __future__ import annotations

import logging
import os
import plistlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

APP_ID = "insane-ai-security"
LAUNCH_AGENT_LABEL = "ai.insane.tray"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "InsaneAISecurity"


class AutostartError(Exception):
    """The entry could not be written or removed; ``str()`` is a sentence for the user."""


def tray_command() -> list[str]:
    """The command that starts the tray app for this installation (a bundle or a Python environment)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "tray"]
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
    }
    path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"
    return _FileEntry(path, plistlib.dumps(plist))


class RunKeyStore(Protocol):
    """The HKCU Run key: the seam that lets the Windows entry be tested on any platform."""

    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


class WinregRunKey:
    """The real HKCU\\...\\Run key through ``winreg`` (Windows only)."""

    def __init__(self) -> None:
        import winreg

        self._winreg = winreg

    def get(self, name: str) -> str | None:
        w = self._winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _ = w.QueryValueEx(key, name)
                return str(value)
        except FileNotFoundError:
            return None

    def set(self, name: str, value: str) -> None:
        w = self._winreg
        with w.CreateKey(w.HKEY_CURRENT_USER, RUN_KEY) as key:
            w.SetValueEx(key, name, 0, w.REG_SZ, value)

    def delete(self, name: str) -> None:
        w = self._winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, RUN_KEY, 0, w.KEY_SET_VALUE) as key:
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
