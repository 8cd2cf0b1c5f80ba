"""Cyclic garbage is collected on the GUI thread only, so Qt objects never die on a worker thread."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from desktop.gcpolicy import collect_due

ROOT = Path(__file__).resolve().parents[2]
OFF_THREAD = "Timers cannot be stopped from another thread"


def run_child(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.desktop.gc_child", mode], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_worker_threads_allocating_never_free_qt_objects() -> None:
    proc = run_child("guarded")
    assert proc.returncode == 0 and "finished" in proc.stdout, proc.stderr[-3000:]
    assert OFF_THREAD not in proc.stderr


def test_without_the_policy_a_worker_thread_frees_them_and_the_gui_thread_crashes() -> None:
    # The hazard the policy exists for, shown on this Qt: if this ever passes cleanly, PySide frees Qt
    # objects on their own thread by itself, and desktop.gcpolicy may be dropped.
    proc = run_child("unguarded")
    assert proc.returncode != 0 or OFF_THREAD in proc.stderr, proc.stderr[-3000:]


def test_collect_due_follows_pythons_thresholds() -> None:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        assert collect_due() is None  # nothing allocated since
        junk = [[] for _ in range(gc.get_threshold()[0] + 1)]
        assert collect_due() == 0
        del junk
    finally:
        if was_enabled:
            gc.enable()
