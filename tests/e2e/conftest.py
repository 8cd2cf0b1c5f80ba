"""A real relay (PostgreSQL + Redis), a loopback image server and real ONNX models for the worker tests."""

from __future__ import annotations

import asyncio
import importlib.util
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from core.detect import OnnxConfig, load_detector
from core.settings import load_settings
from core.worker import Worker, WorkerConfig
from core.worker.build import preloader_factory
from core.worker.http_source import HttpLeaseSource
from insane.demo_media import ImageServer
from tests import models
from tests.relayhelp import RelayServer, enroll_worker, fresh_database, make_tenant, relay_settings, run_sync


def _need_ultralytics() -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("needs the export extra: ultralytics is not importable (pip install '.[export]')")


@pytest.fixture(scope="session")
def person_onnx() -> Path:
    """Real trained YOLOv8s (classes Normal, Fall: people), dynamic batch, 640."""
    _need_ultralytics()
    cache = models.test_cache()
    return models.export_onnx(models.fall_model_pt(cache), cache, 640)


@pytest.fixture(scope="session")
def fast_onnx() -> Path:
    """YOLOv8n, random weights: for plumbing tests where only speed and shapes matter."""
    _need_ultralytics()
    cache = models.test_cache()
    return models.export_onnx(models.yolov8n_pt(cache), cache, 640)


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    _need_ultralytics()
    return models.sample_images()


def serve_images(files: dict[str, bytes]) -> ImageServer:
    """A camera's snapshot server on loopback serving ``files`` by name (the demo's own)."""
    server = ImageServer()
    for name, data in files.items():
        server.add(name, data)
    return server


@pytest.fixture(scope="module")
def image_server(photos) -> Iterator[str]:
    with serve_images(photos) as server:
        yield server.base


@pytest.fixture(scope="module")
def relay_db(services) -> str:
    return fresh_database(services)


@pytest.fixture(scope="module")
def relay(services, relay_db) -> Iterator[RelayServer]:
    settings = relay_settings(services, relay_db, lease_idle_s=5.0, max_deliveries=10, max_moments=64)
    with RelayServer(settings) as running:
        yield running


def allow_private(relay_db: str, tenant_id: str, hosts: list[str]) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(relay_db)
        try:
            await conn.execute("UPDATE tenants SET allow_private_hosts = $2 WHERE id = $1", uuid.UUID(tenant_id), hosts)
        finally:
            await conn.close()

    run_sync(go())


@pytest.fixture(scope="module")
def tenant(relay, relay_db):
    creds = make_tenant(relay.url, tier="pro")
    allow_private(relay_db, creds.id, ["127.0.0.1"])
    return creds


def make_worker(url: str, token: str, model: Path, dedicated: str | None = None, source=None, **config) -> Worker:
    settings = load_settings(worker_fetch_timeout_s=15.0)
    cfg = dict(lease_wait_s=1.0, heartbeat_s=1.0, retry_min_s=0.1, retry_max_s=0.5, threads=2, stop_timeout_s=30.0)
    cfg.update(config)
    detector = load_detector(OnnxConfig(type="onnx", path=str(model), threads=2))
    return Worker(
        WorkerConfig(**cfg),
        source or HttpLeaseSource(url, token),
        detector,
        preloader_factory(settings, uuid.UUID(dedicated) if dedicated else None),
    )


def post_event(url: str, tenant, urls: list[str] = (), uploads: list[bytes] = (), camera: str = "front") -> str:
    event = {"camera": camera, "time": "2026-01-01T00:00:00Z", "moments": list(urls)}
    if uploads:
        import json

        files = [("event", (None, json.dumps(event), "application/json"))]
        files += [("moment", (f"m{i}.jpg", data, "image/jpeg")) for i, data in enumerate(uploads)]
        r = httpx.post(f"{url}/v1/events", files=files, headers=tenant.headers, timeout=30)
    else:
        r = httpx.post(f"{url}/v1/events", json=event, headers=tenant.headers, timeout=30)
    assert r.status_code in (200, 201, 202), r.text
    return r.json()["id"]


async def wait_done(url: str, tenant, event_ids: list[str], timeout_s: float = 120.0, k: int | None = None) -> dict:
    """Poll the tenant's view of each event until it is done (and reviewed with at least ``k`` moments)."""
    views: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(headers=tenant.headers, timeout=30) as client:
        while time.monotonic() < deadline:
            for event_id in event_ids:
                if event_id in views:
                    continue
                view = (await client.get(f"{url}/v1/events/{event_id}")).json()
                if view.get("status") in ("done", "failed") and (k is None or (view.get("k") or 0) >= k):
                    views[event_id] = view
            if len(views) == len(event_ids):
                return views
            await asyncio.sleep(0.2)
    raise AssertionError(f"not done in {timeout_s}s: {sorted(set(event_ids) - set(views))}")


__all__ = ["allow_private", "enroll_worker", "make_worker", "post_event", "wait_done"]
