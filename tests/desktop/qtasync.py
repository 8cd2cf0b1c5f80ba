"""Run a coroutine on a qasync loop over the test's QApplication, and wait on conditions without sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import PySide6  # noqa: F401  # before qasync
import qasync

from desktop.gcpolicy import collect_on_gui_thread


def run_qt(qapp: Any, coro: Coroutine[Any, Any, Any], timeout_s: float = 240.0) -> Any:
    """Run ``coro`` to completion on a fresh qasync loop, then close the loop (and its executor)."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout_s):  # in this task: the scenario sees no wrapper task
            return await coro

    qapp.setQuitOnLastWindowClosed(False)  # as the app itself does: Quit is explicit, not the last window
    # As the app does: the loop's Qt timers, and the scenario's widgets, are freed on this thread only.
    with collect_on_gui_thread():
        loop = qasync.QEventLoop(qapp)
        try:
            return loop.run_until_complete(bounded())
        finally:
            loop.close()
            del loop  # garbage from here (unless the scenario's objects hold it): collected on leaving, here


async def until(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` while the loop runs (Qt events included); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)
