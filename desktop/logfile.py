"""The tray app's log file, for when nobody can read its standard error.

    if needs_log_file(sys.stderr):       # the windowed Windows build (None), a macOS app from Finder (/dev/null)
        path = redirect_to_log_file()    # stdout and stderr now append to it; logging configured after follows
    active_log_file()                    # that path, for Settings to show; None when output goes to a terminal

A windowed (GUI subsystem) Windows executable starts with ``sys.stdout`` and ``sys.stderr`` set to None,
so the logs, ``--help`` and any traceback went nowhere. The file is in the platform's log folder
(platformdirs: ``%LOCALAPPDATA%\\insane\\insane\\Logs`` on Windows, ``~/Library/Logs/insane`` on macOS,
``~/.local/state/insane/log`` on Linux), kept under ``MAX_BYTES`` by moving the previous one aside.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import platformdirs

from core.settings import APP_NAME

LOG_NAME = "tray.log"
MAX_BYTES = 2_000_000

_active: Path | None = None


def log_file_path() -> Path:
    return platformdirs.user_log_path(APP_NAME) / LOG_NAME


def needs_log_file(stream: Any) -> bool:
    """True when what is written to ``stream`` is lost: it is None, or the null device."""
    if stream is None:
        return True
    try:
        mine = os.fstat(stream.fileno())
        null = os.stat(os.devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False  # not a file (a test's capture, a pipe wrapper): someone reads it
    return (mine.st_dev, mine.st_ino) == (null.st_dev, null.st_ino)


def redirect_to_log_file(path: Path | None = None, max_bytes: int = MAX_BYTES) -> Path:
    """Point ``sys.stdout`` and ``sys.stderr`` at the log file (appending, line by line); its path."""
    global _active
    path = path or log_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))  # one previous file is kept
    except FileNotFoundError:
        pass
    stream = path.open("a", encoding="utf-8", errors="backslashreplace", buffering=1)
    sys.stdout = sys.stderr = stream
    _active = path
    return path


def active_log_file() -> Path | None:
    return _active
