"""A real worker (real ONNX models through onnxruntime) serving the DeepStack API on a loopback port.

The worker's relay side is an idle relay (a LeaseSource that has no work): these tests are about the LAN
API; tests/relay/test_vision.py and tests/e2e drive the relay side.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.lan.server import LanConfig
from core.protocol import HeartbeatResponse, LeaseResponse
from core.worker import RequestRejected
from insane.devkit import models
from insane.devkit.deepstack import WorkerThread, fixed_coco_model, grid_boxes


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


def LanHarness(model: Path, key: str | None = None, **lan: Any) -> WorkerThread:  # reads as a class
    """A worker with an idle relay, serving the LAN API on a free loopback port."""
    return WorkerThread(model, IdleRelay(), lan=LanConfig(host="127.0.0.1", port=0, key=key, **lan))


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
def sample_images() -> dict[str, bytes]:
    _need_ultralytics()
    return models.sample_images()


@pytest.fixture(scope="session")
def crowd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COCO labels, 25 people that never overlap (0.95 down to 0.71) on every image."""
    return fixed_coco_model(tmp_path_factory.mktemp("models") / "crowd.onnx", grid_boxes(25))


@pytest.fixture(scope="module")
def lan(person_model: Path) -> Iterator[WorkerThread]:
    with LanHarness(person_model) as running:
        yield running


@pytest.fixture(scope="module")
def keyed_lan(person_model: Path) -> Iterator[WorkerThread]:
    with LanHarness(person_model, key="lan-secret-1") as running:
        yield running
