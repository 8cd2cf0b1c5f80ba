"""Python's cyclic garbage collector, run on the GUI thread only.

PySide destroys a Qt object on whichever thread drops the last reference to it, and Python runs its
cyclic collector on whichever thread happens to allocate when a threshold is crossed. Here that is
usually a worker thread (decoding, inference, the qasync executor loading a model), so a Qt object left
in a reference cycle would be destroyed there. Qt objects must die on their own thread: one destroyed
elsewhere with a timer running stays registered with the GUI thread's event dispatcher ("QObject::~QObject:
Timers cannot be stopped from another thread") and the timer's next tick crashes the GUI thread. A closed
qasync loop is such an object: its timers stay registered until they fire, and it sits in a cycle.

So automatic collection is off while the GUI runs, and the GUI thread collects, a generation at a time,
as often as Python's own thresholds would have:

    with collect_on_gui_thread():
        loop.run_until_complete(main())     # a qasync loop: the timer below runs on it
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QTimer

CHECK_EVERY_MS = 250


def collect_due() -> int | None:
    """Collect the generations whose thresholds were crossed (as Python's automatic collection would)."""
    t0, t1, t2 = gc.get_threshold()
    c0, c1, c2 = gc.get_count()
    if t0 == 0 or c0 <= t0:
        return None
    generation = 2 if c1 > t1 and c2 > t2 else 1 if c1 > t1 else 0
    gc.collect(generation)
    return generation


@contextmanager
def collect_on_gui_thread(check_every_ms: int = CHECK_EVERY_MS) -> Iterator[None]:
    """Within, only this (the GUI) thread collects cyclic garbage; on exit it collects everything left."""
    was_enabled = gc.isenabled()
    gc.disable()
    timer = QTimer()
    timer.timeout.connect(collect_due)
    timer.start(check_every_ms)
    try:
        yield
    finally:
        timer.stop()
        # What the run left behind (a closed loop, its timers still registered) dies here, on this thread.
        gc.collect()
        if was_enabled:
            gc.enable()
