"""The named mutex that tells the Windows installer the tray app is running (Inno Setup's ``AppMutex``).

    mutex = AppMutex()
    mutex.acquire()        # Windows: creates the named mutexes; elsewhere nothing
    ...
    mutex.release()

Qt's hidden tray window does not quit on the Restart Manager's end-session messages, so Setup could not
close a running app and replaced half of its files. With ``AppMutex`` in installer/windows/insane.iss,
Setup and Uninstall see these mutexes first and ask the user to quit the app. Both names, as Inno Setup's
documentation asks: the session-local one, and the ``Global\\`` one seen from other sessions (fast user
switching), so installing from one account notices the app running in another.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

APP_MUTEX = "InsaneAISecurityTray"


def mutex_names() -> list[str]:
    """The names, in the order installer/windows/insane.iss lists them in ``AppMutex``."""
    return [APP_MUTEX, f"Global\\{APP_MUTEX}"]


class AppMutex:
    def __init__(self, kernel32: Any = None, platform: str | None = None) -> None:
        self._platform = platform or sys.platform
        self._kernel32 = kernel32
        self._handles: list[int] = []

    def _api(self) -> Any:
        if self._kernel32 is None:
            import ctypes
            from ctypes import wintypes

            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
            kernel32.CreateMutexW.argtypes = (ctypes.c_void_p, wintypes.BOOL, wintypes.LPCWSTR)
            kernel32.CreateMutexW.restype = wintypes.HANDLE
            kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
            self._kernel32 = kernel32
        return self._kernel32

    def acquire(self) -> None:
        """Create the mutexes (not owned: existing is what Setup checks). A failure is logged, not fatal."""
        if self._platform != "win32" or self._handles:
            return
        api = self._api()
        for name in mutex_names():
            handle = api.CreateMutexW(None, False, name)
            if handle:
                self._handles.append(handle)
            else:
                log.warning("could not create the mutex %s: the installer will not see the app running", name)

    def release(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            self._api().CloseHandle(handle)
