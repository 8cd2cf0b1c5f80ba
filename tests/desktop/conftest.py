"""Fixtures for the tray app's tests: offscreen Qt, an in-memory keyring, artifacts folder, the relay's settings."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before PySide6 is imported anywhere in the run (pytest-qt imports it when it makes the QApplication).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import keyring

from tests.desktop.memory_keyring import MemoryKeyring

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(autouse=True)
def _gc_on_gui_thread() -> Iterator[None]:
    """No automatic collection during a test; what it leaves is collected at its end, on this (the GUI) thread.

    A test holds its controller, and through it the qasync loop it closed, until it returns; after that they
    are garbage in reference cycles. Collected by a thread that happens to allocate (the relay's, a worker's
    executor building a model in the next test), the loop's timer object would be destroyed off the GUI
    thread with its timers still registered there, and their next tick would crash the GUI thread. The app
    itself runs under desktop.gcpolicy for the same reason.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        if was_enabled:
            gc.enable()


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ----- the relay of the tests that drive the app against a real worker ------------------------------------


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"lease_idle_s": 5.0, "max_moments": 16}


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, memory_keyring: MemoryKeyring) -> Path:
    """A config file and an XDG config folder of the test's own; the keyring in memory."""
    config = tmp_path / "config" / "config.toml"
    monkeypatch.setenv("INSANE_CONFIG", str(config))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    config.parent.mkdir(parents=True)
    config.write_text("")
    return config
