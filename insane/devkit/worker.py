"""A worker for tests, against a relay's worker API, with short waits so that tests run fast.

    worker = make_worker(relay.url, creds.secret, model_path, dedicated=tenant.id, heartbeat_s=0.25)
    task = asyncio.create_task(worker.run()) ... await worker.stop()

The real engine (``core.worker.Worker``), the real ONNX detector and the real preloader; only the
timings differ from ``insane worker``'s defaults.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from core.detect import OnnxConfig, load_detector
from core.settings import load_settings
from core.worker import Worker, WorkerConfig
from core.worker.build import preloader_factory
from core.worker.http_source import HttpLeaseSource


def make_worker(
    url: str, token: str, model: Path, dedicated: str | None = None, source: Any = None, **config: Any
) -> Worker:
    """A worker on ``model`` (2 threads) leasing from ``url``; ``config`` overrides WorkerConfig fields."""
    settings = load_settings(worker_fetch_timeout_s=15.0)
    cfg: dict[str, Any] = dict(
        lease_wait_s=1.0, heartbeat_s=1.0, retry_min_s=0.1, retry_max_s=0.5, threads=2, stop_timeout_s=30.0
    )
    cfg.update(config)
    detector = load_detector(OnnxConfig(type="onnx", path=str(model), threads=2))
    tenant = uuid.UUID(dedicated) if dedicated else None
    return Worker(
        WorkerConfig(**cfg),
        source or HttpLeaseSource(url, token),
        detector,
        preloader_factory(settings, tenant),
        dedicated_tenant=tenant,
    )
