"""Which model the app runs on a fresh install, and fetching it on first run.

    choice = model_choice(settings, ModelRegistry.from_settings(settings))
    if choice.how == "download":
        installed = fetch_in_console(registry, choice.name)   # or fetch_in_dialog(...) for the tray app
        print(installed.summary)                                # "Installed yolov8n: YOLOv8n, 80 classes (…)"

The configured model runs whenever this PC has it. A bundle that carries a model runs that one. Otherwise
the first run fetches the configured model when it is one the registry can download (a known name, or
one of the user's catalogue), else :data:`FIRST_RUN_MODEL`: COCO YOLOv8n, whose pinned ``.pt`` (6.5 MB,
size and SHA-256 checked, resumable) is converted to ONNX on this PC without torch.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.detect.base import DetectorError, ModelNotFound
from core.detect.download import DownloadError
from core.detect.registry import ModelRegistry, describe

FIRST_RUN_MODEL = "yolov8n"


@dataclass(frozen=True)
class Choice:
    name: str
    how: str  # "configured", "carried", "present" (the first-run model, already here) or "download"


@dataclass(frozen=True)
class Installed:
    name: str
    path: Path
    labels: list[str]

    @property
    def summary(self) -> str:
        shown = ", ".join(self.labels[:6]) + ("…" if len(self.labels) > 6 else "")
        return f"Installed the detection model {self.name}: {len(self.labels)} classes ({shown}), in {self.path}"


def model_choice(settings, registry: ModelRegistry) -> Choice:
    """The model to run: the configured one if present, else the carried one, else a download (the configured
    model when it can be fetched, else the first-run model), or the first-run model fetched already."""
    try:
        registry.resolve(settings.model)
        return Choice(settings.model, "configured")
    except ModelNotFound:
        pass
    carried = registry.bundled()
    if carried:
        return Choice(FIRST_RUN_MODEL if FIRST_RUN_MODEL in carried else carried[0], "carried")
    if downloadable(registry, settings.model):
        return Choice(settings.model, "download")
    try:
        registry.resolve(FIRST_RUN_MODEL)
        return Choice(FIRST_RUN_MODEL, "present")  # fetched on an earlier first run, or installed otherwise
    except ModelNotFound:
        return Choice(FIRST_RUN_MODEL, "download")


def present_instead(registry: ModelRegistry, missing: str) -> str | None:
    """A model this PC has, to run when ``missing`` cannot be fetched: a known one first, then any in the cache."""
    names = [n for n in registry.known if n != missing]
    names += [row["name"] for row in registry.entries() if row["name"] not in names and row["name"] != missing]
    for name in names:
        try:
            registry.resolve(name)
            return name
        except DetectorError:  # not here, or corrupt
            continue
    return None


def downloadable(registry: ModelRegistry, name: str) -> bool:
    spec = registry.known.get(name)
    return spec is not None and any(source.url for source in spec.sources)


class Cancelled(DownloadError):
    """The user stopped the download; the part file stays, and the next start resumes it."""


def _installed(name: str, path: Path) -> Installed:
    return Installed(name, path, list(describe(path)["labels"]))


def fetch_in_console(registry: ModelRegistry, name: str, out=sys.stderr) -> Installed:
    """Download and convert ``name`` with a one-line progress display on ``out``; raises DownloadError or
    DetectorError."""

    def progress(done: int, total: int | None) -> None:
        pct = f" {100 * done / total:5.1f}%" if total else ""
        print(f"\rdownloading the model {name}: {done / 1e6:6.1f} MB{pct}", end="", file=out, flush=True)

    def converting() -> None:
        print(f"\nconverting {name} to ONNX…", end="", file=out, flush=True)

    try:
        path = registry.download(name, progress=progress, on_convert=converting)
    finally:
        print(file=out)
    return _installed(name, path)


@dataclass
class _Fetch:
    """What the download thread tells the dialog's timer."""

    done: int = 0
    total: int | None = None
    converting: threading.Event = field(default_factory=threading.Event)
    installed: Installed | None = None
    error: DownloadError | DetectorError | None = None


def fetch_in_dialog(registry: ModelRegistry, name: str, parent=None, linger_s: float = 20.0) -> Installed:
    """Download and convert ``name`` off the GUI thread behind a progress dialog with Cancel (raises
    :class:`Cancelled`), then say in the same window what was installed until OK or ``linger_s`` seconds."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QProgressDialog

    state = _Fetch()
    cancel = threading.Event()
    title = f"Downloading the detection model {name} (first run only)…"

    def progress(done: int, total: int | None) -> None:
        state.done, state.total = done, total
        if cancel.is_set():
            raise Cancelled("the model download was cancelled; it resumes on the next start")

    def work() -> None:
        try:
            path = registry.download(name, progress=progress, on_convert=state.converting.set)
            state.installed = _installed(name, path)
        except (DownloadError, DetectorError) as exc:
            state.error = exc

    dialog = QProgressDialog(title, "Cancel", 0, 1000, parent)
    dialog.setWindowTitle("Insane AI Security")
    dialog.setMinimumDuration(0)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.canceled.connect(cancel.set)
    loop = QEventLoop()
    thread = threading.Thread(target=work, name="insane-model-download", daemon=True)

    def tick() -> None:
        total = state.total
        if state.converting.is_set():
            dialog.setValue(999)
            dialog.setLabelText(f"Converting the detection model {name} to ONNX on this PC…")
        elif isinstance(total, int) and total > 0:
            dialog.setValue(min(999, int(1000 * state.done / total)))
            dialog.setLabelText(f"{title}\n{state.done / 1e6:.1f} of {total / 1e6:.1f} MB")
        if not thread.is_alive():
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(tick)
    thread.start()
    timer.start(100)
    dialog.show()
    try:
        loop.exec()
        thread.join()
        timer.stop()
        if state.installed is not None:
            _say_done(dialog, state.installed, linger_s)
    finally:
        timer.stop()
        dialog.close()
    if state.error is not None:
        raise state.error
    assert state.installed is not None  # work() either installs or records the error
    return state.installed


def _say_done(dialog, installed: Installed, linger_s: float) -> None:
    """The progress window turns into the answer: what was installed, with an OK button."""
    from PySide6.QtCore import QEventLoop, QTimer

    dialog.canceled.disconnect()
    dialog.setValue(1000)
    dialog.setCancelButtonText("OK")
    dialog.setLabelText(installed.summary.replace(": ", ":\n", 1))
    loop = QEventLoop()
    dialog.canceled.connect(loop.quit)
    QTimer.singleShot(int(linger_s * 1000), loop.quit)
    loop.exec()
