"""A qasync loop whose executor threads allocate while Qt objects with running timers lie in reference cycles.

python -m tests.desktop.gc_child guarded      (under desktop.gcpolicy, as the app runs: exits 0)
python -m tests.desktop.gc_child unguarded    (Python's own collection: the GUI thread crashes)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import faulthandler
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import PySide6  # noqa: F401  # before qasync
import qasync
from PySide6.QtCore import QObject, QTimerEvent
from PySide6.QtWidgets import QApplication

from desktop.gcpolicy import collect_on_gui_thread


class Ticking(QObject):
    def timerEvent(self, event: QTimerEvent) -> None:  # Qt's name for it
        pass


def drop_in_a_cycle() -> None:
    """A Qt object with a running timer that only the cyclic collector can free (like a closed qasync loop)."""
    obj = Ticking()
    obj.startTimer(10)
    cycle: dict[str, object] = {"obj": obj}
    cycle["self"] = cycle


def allocate() -> None:
    """A worker thread's allocations (decoding, loading a model): enough to cross every collection threshold."""
    keep: collections.deque[list[list[int]]] = collections.deque(maxlen=40)
    for _ in range(200):
        keep.append([[i] for i in range(5000)])


async def scenario() -> None:
    loop = asyncio.get_running_loop()
    for _ in range(5):
        drop_in_a_cycle()
        await loop.run_in_executor(None, allocate)
        await asyncio.sleep(0.1)  # the GUI thread dispatches the timers meanwhile


def main(mode: str) -> None:
    faulthandler.enable()
    app = QApplication([sys.argv[0]])
    guard = collect_on_gui_thread() if mode == "guarded" else contextlib.nullcontext()
    with guard:
        loop = qasync.QEventLoop(app)
        try:
            loop.run_until_complete(scenario())
        finally:
            loop.close()
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
