"""A real worker (real ONNX models through onnxruntime) serving the DeepStack API on a loopback port.

The worker's relay side is an idle relay (a LeaseSource that has no work): these tests are about the LAN
API; tests/relay/test_vision.py and tests/e2e drive the relay side.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.detect import OnnxConfig, load_detector
from core.lan.server import LanConfig, LanServer
from core.protocol import HeartbeatResponse, LeaseResponse
from core.worker import RequestRejected, Worker, WorkerConfig
from tests import models
from tests.vision_models import fixed_coco_model, grid_boxes


class IdleRelay:
    """A relay with no work for this worker (the LeaseSource port, nothing else)."""

    async def lease(self, max_events: int, wait_s: float) -> LeaseResponse:
        await asyncio.sleep(min(wait_s, 0.2))
        return LeaseResponse(events=[], queue_depth={"pro": 0, "standard": 0})

    async def fetch_blob(self, blob, event) -> bytes:
        raise RequestRejected("no blobs here", 404)

    async def post_results(self, results):
        raise RequestRejected("this relay leased nothing", 409)

    async def heartbeat(self, beat) -> HeartbeatResponse:
        return HeartbeatResponse()

    async def aclose(self) -> None:
        return None


class LanHarness:
    """A worker and its LAN server on a loop of their own in a thread (the clients under test are sync)."""

    def __init__(self, model: Path, key: str | None = None, **lan: object) -> None:
        self.model, self.key, self.lan_options = model, key, lan
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.worker: Worker | None = None
        self.server: LanServer | None = None
        self._run: asyncio.Task | None = None

    def call(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        detector = load_detector(OnnxConfig(type="onnx", path=str(self.model), threads=2))
        config = WorkerConfig(lease_wait_s=0.2, heartbeat_s=1.0, threads=2, retry_min_s=0.1, retry_max_s=0.5)
        self.worker = Worker(config, IdleRelay(), detector)
        self._run = asyncio.create_task(self.worker.run())
        self.server = LanServer(self.worker, LanConfig(host="127.0.0.1", port=0, key=self.key, **self.lan_options))
        await self.server.start()

    async def _stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.worker is not None:
            await self.worker.stop(drain=False)
            await self._run

    def __enter__(self) -> LanHarness:
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port


def _need_ultralytics() -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("needs the export extra: ultralytics is not importable (pip install '.[export]')")


@pytest.fixture(scope="session")
def person_model() -> Path:
    """Real trained YOLOv8s (Normal = a person standing, Fall), dynamic batch, 640."""
    _need_ultralytics()
    cache = models.test_cache()
    return models.export_onnx(models.fall_model_pt(cache), cache, 640)


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    _need_ultralytics()
    return models.sample_images()


@pytest.fixture(scope="session")
def crowd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COCO labels, 25 people that never overlap (0.95 down to 0.71) on every image."""
    return fixed_coco_model(tmp_path_factory.mktemp("models") / "crowd.onnx", grid_boxes(25))


@pytest.fixture(scope="module")
def lan(person_model: Path) -> Iterator[LanHarness]:
    with LanHarness(person_model) as running:
        yield running


@pytest.fixture(scope="module")
def keyed_lan(person_model: Path) -> Iterator[LanHarness]:
    with LanHarness(person_model, key="lan-secret-1") as running:
        yield running
