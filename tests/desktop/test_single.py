"""One instance per user: the second start finds the first and asks it to show itself."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from desktop.single import SingleInstance, instance_name


def test_second_instance_signals_the_first(qtbot, tmp_path: Path) -> None:
    name = f"insane-test-{uuid.uuid4().hex[:8]}"
    first = SingleInstance(name, lock_dir=tmp_path)
    assert first.acquire()
    try:
        second = SingleInstance(name, lock_dir=tmp_path)
        with qtbot.waitSignal(first.activated, timeout=5000):
            assert not second.acquire()
    finally:
        first.release()
    # Released: the next start is first again.
    third = SingleInstance(name, lock_dir=tmp_path)
    assert third.acquire()
    third.release()


def test_a_dead_owner_does_not_block_the_next_start(qapp, tmp_path: Path) -> None:
    name = f"insane-test-{uuid.uuid4().hex[:8]}"
    code = (
        "import os, sys; from pathlib import Path\n"
        "from PySide6.QtCore import QCoreApplication\n"
        "from desktop.single import SingleInstance\n"
        "app = QCoreApplication([])\n"
        f"s = SingleInstance({name!r}, lock_dir=Path({str(tmp_path)!r}))\n"
        "assert s.acquire()\n"
        "os._exit(0)  # dies holding the lock and the socket\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
    again = SingleInstance(name, lock_dir=tmp_path)
    assert again.acquire()
    again.release()


def test_name_is_per_config_folder(tmp_path: Path) -> None:
    assert instance_name(tmp_path / "a" / "config.toml") != instance_name(tmp_path / "b" / "config.toml")
