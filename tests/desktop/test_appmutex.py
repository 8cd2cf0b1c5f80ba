"""desktop/appmutex.py: the mutexes the Windows installer's AppMutex looks for, through the kernel32 seam."""

from __future__ import annotations

import re

from desktop.appmutex import AppMutex, mutex_names
from insane.devkit import ROOT


class Kernel32:
    """CreateMutexW and CloseHandle, recorded: the real ones exist on Windows only."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.fail = fail
        self.created: list[tuple[object, bool, str]] = []
        self.closed: list[int] = []

    def CreateMutexW(self, attributes: object, owned: bool, name: str) -> int:
        self.created.append((attributes, owned, name))
        return 0 if name in self.fail else 100 + len(self.created)

    def CloseHandle(self, handle: int) -> int:
        self.closed.append(handle)
        return 1


def test_windows_creates_the_local_and_the_global_mutex_and_closes_them() -> None:
    api = Kernel32()
    mutex = AppMutex(api, platform="win32")
    mutex.acquire()
    mutex.acquire()  # once per process
    assert api.created == [(None, False, "InsaneAISecurityTray"), (None, False, "Global\\InsaneAISecurityTray")]
    mutex.release()
    assert api.closed == [101, 102]
    mutex.release()
    assert api.closed == [101, 102]


def test_a_mutex_that_cannot_be_created_is_logged_and_the_app_goes_on(caplog) -> None:
    api = Kernel32(fail={"Global\\InsaneAISecurityTray"})
    mutex = AppMutex(api, platform="win32")
    mutex.acquire()
    assert "could not create the mutex Global\\InsaneAISecurityTray" in caplog.text
    mutex.release()
    assert api.closed == [101]


def test_other_platforms_create_nothing() -> None:
    api = Kernel32()
    AppMutex(api, platform="linux").acquire()
    assert api.created == []


def test_the_installer_looks_for_the_same_names() -> None:
    iss = (ROOT / "installer" / "windows" / "insane.iss").read_text()
    (line,) = re.findall(r"^AppMutex=(.*)$", iss, re.M)
    assert line.split(",") == mutex_names()
