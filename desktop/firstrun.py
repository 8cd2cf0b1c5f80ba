"""Which model the app runs on a fresh install, and fetching it on first run.

    choice = choose_model(settings, ModelRegistry(settings.model_dir))
    if choice.how == "download":
        fetch_in_console(registry, choice.name)      # or fetch_in_dialog(...) for the tray app

The configured model runs whenever this PC has it. A fresh install has only what the app carries
(``models/`` inside the desktop bundle), so it runs that. With nothing carried, the first run fetches
:data:`FIRST_RUN_MODEL`: the one known model with a pinned ONNX download, size and SHA-256 checked,
resumable, which runs without torch or an export step.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from core.detect.base import DetectorError, ModelNotFound
from core.detect.download import DownloadError
from core.detect.registry import ModelRegistry

FIRST_RUN_MODEL = "fall-yolov8s"


@dataclass(frozen=True)
class Choice:
    name: str
    how: str  # "configured", "carried", "present" (the first-run model, already here) or "download"


def choose_model(settings, registry: ModelRegistry) -> Choice:
    """The model to run: the configured one if present, else the carried one, else the first-run download
    (fetched already, or to fetch now)."""
    try:
        registry.resolve(settings.model)
        return Choice(settings.model, "configured")
    except ModelNotFound:
        pass
    carried = registry.bundled()
    if carried:
        return Choice(FIRST_RUN_MODEL if FIRST_RUN_MODEL in carried else carried[0], "carried")
    try:
        registry.resolve(FIRST_RUN_MODEL)
        return Choice(FIRST_RUN_MODEL, "present")  # fetched on an earlier first run, or installed otherwise
    except ModelNotFound:
        return Choice(FIRST_RUN_MODEL, "download")


class Cancelled(DownloadError):
    """The user stopped the download; the part file stays, and the next start resumes it."""


def fetch_in_console(registry: ModelRegistry, name: str, out=sys.stderr) -> Path:
    """Download ``name`` with a one-line progress display on ``out``; raises DownloadError or DetectorError."""

    def progress(done: int, total: int | None) -> None:
        pct = f" {100 * done / total:5.1f}%" if total else ""
        print(f"\rdownloading the model {name}: {done / 1e6:6.1f} MB{pct}", end="", file=out, flush=True)

    try:
        return registry.download(name, kind="onnx", progress=progress)
    finally:
        print(file=out)


def fetch_in_dialog(registry: ModelRegistry, name: str, parent=None) -> Path:
    """Download ``name`` off the GUI thread behind a progress dialog with Cancel (raises :class:`Cancelled`)."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QProgressDialog

    state: dict[str, object] = {"done": 0, "total": None}
    cancel = threading.Event()

    def progress(done: int, total: int | None) -> None:
        state["done"], state["total"] = done, total
        if cancel.is_set():
            raise Cancelled("the model download was cancelled; it resumes on the next start")

    def work() -> None:
        try:
            state["path"] = registry.download(name, kind="onnx", progress=progress)
        except (DownloadError, DetectorError) as exc:
            state["error"] = exc

    dialog = QProgressDialog(f"Downloading the detection model {name} (first run only)…", "Cancel", 0, 1000, parent)
    dialog.setWindowTitle("Insane AI Security")
    dialog.setMinimumDuration(0)
    dialog.setAutoClose(False)
    dialog.canceled.connect(cancel.set)
    loop = QEventLoop()
    thread = threading.Thread(target=work, name="insane-model-download", daemon=True)

    def tick() -> None:
        total = state["total"]
        if isinstance(total, int) and total > 0:
            dialog.setValue(min(999, int(1000 * int(state["done"]) / total)))
            dialog.setLabelText(
                f"Downloading the detection model {name} (first run only)…\n"
                f"{int(state['done']) / 1e6:.1f} of {total / 1e6:.1f} MB"
            )
        if not thread.is_alive():
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(tick)
    thread.start()
    timer.start(100)
    dialog.show()
    try:
        loop.exec()
    finally:
        timer.stop()
        dialog.close()
    thread.join()
    if "error" in state:
        raise state["error"]  # type: ignore[misc]
    return state["path"]  # type: ignore[return-value]
