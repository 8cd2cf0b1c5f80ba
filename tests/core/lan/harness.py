"""A real worker with nothing to do for a relay, serving the LAN API on a free loopback port.

    with lan_worker(fall_model_onnx, key="secret") as lan:      # insane.devkit.deepstack.WorkerThread
        httpx.post(f"{lan.url}/v1/vision/detection", files={"image": jpeg})

The worker's relay side is an idle relay (a LeaseSource that has no work): these tests are about the LAN
API; tests/relay/test_vision.py and tests/e2e drive the relay side.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core.lan.server import LanConfig
from core.protocol import HeartbeatResponse, LeaseResponse
from core.worker import RequestRejected
from insane.devkit.deepstack import WorkerThread


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


def lan_worker(model: Path, key: str | None = None, **lan: Any) -> WorkerThread:
    """A worker with an idle relay, serving the LAN API on a free loopback port (``lan``: LanConfig's fields)."""
    return WorkerThread(model, IdleRelay(), lan=LanConfig(host="127.0.0.1", port=0, key=key, **lan))
