"""Build a worker from the settings: its config, its lease source, its detector and its preloader.

worker = build_worker(settings)        # settings.worker_token must be set (the tray reads the keyring)
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from uuid import UUID

from core.settings import Settings
from core.worker.config import WorkerConfig
from core.worker.engine import Worker
from core.worker.ports import DetectorPort, LeaseSource, PreloaderPort

log = logging.getLogger(__name__)


class WorkerSetupError(Exception):
    """The worker cannot start with these settings. ``str()`` says what to change."""


def worker_config(settings: Settings, *, pictures: bool = False) -> WorkerConfig:
    """``pictures``: keep recent events' best moments for a dashboard (the tray app); a headless worker,
    which has nobody to show them to, keeps none."""
    return WorkerConfig(
        lease_events=settings.worker_lease_events,
        lease_wait_s=settings.worker_lease_wait_s,
        # Heartbeats renew the leases held: several per lease deadline, so one lost beat costs nothing.
        heartbeat_s=min(5.0, settings.lease_idle_s / 3),
        lease_ahead_images=settings.worker_lease_ahead,
        max_batch=settings.worker_batch_size,
        batch_wait_s=settings.worker_batch_wait_ms / 1000.0,
        latency_target_s=settings.worker_latency_target_ms / 1000.0,
        decode_threads=settings.worker_decode_threads,
        threads=settings.worker_threads,
        k_max={"pro": settings.worker_k_max_pro, "standard": settings.worker_k_max_standard},
        k_floor={
            "pro": min(settings.worker_k_floor, settings.worker_k_max_pro),
            "standard": min(settings.worker_k_floor_standard, settings.worker_k_max_standard),
        },
        drain_target_s=settings.worker_drain_target_s,
        backfill=settings.worker_backfill,
        pictures_keep=WorkerConfig.pictures_keep if pictures else 0,
        pictures_other_tenants=settings.worker_pictures_other_tenants,
    )


def build_source(settings: Settings, token: str | None = None) -> LeaseSource:
    """The relay's worker API (default), or Redis Streams when ``worker_source = "redis"``."""
    token = token or (settings.worker_token.get_secret_value() if settings.worker_token else None)
    if not token:
        raise WorkerSetupError("no worker token: enroll this worker (INSANE_WORKER_TOKEN or the tray's Settings)")
    if settings.worker_source == "redis":
        from core.worker.redis_source import RedisLeaseSource

        if not settings.redis_url:
            raise WorkerSetupError("INSANE_WORKER_SOURCE=redis needs INSANE_REDIS_URL (a least-privilege ACL user)")
        return RedisLeaseSource.from_settings(settings, token)
    from core.worker.http_source import HttpLeaseSource

    return HttpLeaseSource(settings.relay_url, token)


def build_detector(settings: Settings) -> DetectorPort:
    from core.detect import detector_config_from_settings, load_detector

    return load_detector(detector_config_from_settings(settings))


def preloader_factory(settings: Settings, dedicated_tenant: UUID | None = None):
    def make(source: LeaseSource) -> AbstractAsyncContextManager[PreloaderPort]:
        from core.preload import Preloader
        from core.ssrf import SsrfGuard

        return Preloader(
            blobs=source,
            guard=SsrfGuard(dedicated_tenant=dedicated_tenant),
            cache_bytes=settings.worker_cache_mb << 20,
            global_limit=settings.worker_fetch_concurrency,
            per_host_limit=settings.worker_fetch_per_host,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            deadline_s=settings.worker_fetch_timeout_s,
        )

    return make


def build_worker(
    settings: Settings,
    *,
    token: str | None = None,
    detector: DetectorPort | None = None,
    dedicated_tenant: UUID | None = None,
    pictures: bool = False,
) -> Worker:
    """A ready-to-run worker (``pictures``: see :func:`worker_config`; ``dedicated_tenant`` defaults to
    the ``worker_dedicated_tenant`` setting). Raises WorkerSetupError, or core.detect's
    DetectorError/ModelNotFound."""
    dedicated_tenant = dedicated_tenant or settings.worker_dedicated_tenant
    detector = detector or build_detector(settings)
    try:
        source = build_source(settings, token)
    except WorkerSetupError:
        detector.close()
        raise
    config = fit_to_device(settings, detector, worker_config(settings, pictures=pictures))
    return Worker(
        config,
        source,
        detector,
        preloader_factory(settings, dedicated_tenant),
        dedicated_tenant=dedicated_tenant,
    )


def fit_to_device(settings: Settings, detector: DetectorPort, config: WorkerConfig) -> WorkerConfig:
    """On a GPU: the largest batch within the latency target (or worker_batch_size when
    worker_gpu_batch_max is 0), and enough decode threads to keep up with it. On the CPU: as configured."""
    from core.detect import providers, tuning
    from core.detect.base import RawModel

    if providers.is_cpu(detector.provider) or not isinstance(detector, RawModel):
        return config
    limit = settings.worker_gpu_batch_max
    if detector.max_batch:
        limit = min(limit, detector.max_batch)
    if limit >= 1:
        batch, timings = tuning.largest_batch(lambda b: tuning.seconds_for(detector, b), config.latency_target_s, limit)
        shown = ", ".join(f"{b}: {t * 1000:.0f} ms" for b, t in timings.items())
        log.info(
            "batch %d on %s: the largest within %.0f ms (%s)",
            batch,
            detector.provider,
            config.latency_target_s * 1000,
            shown,
        )
        config = replace(config, max_batch=batch)
        per_image = timings[batch] / batch
    else:
        per_image = tuning.seconds_for(detector, config.max_batch) / config.max_batch
        log.info("batch %d on %s, as set (worker_gpu_batch_max is 0)", config.max_batch, detector.provider)
    decode = tuning.decode_seconds(detector, tuning.synthetic_frame())
    threads, why = tuning.decode_threads(per_image, decode, config.decode_threads, os.cpu_count() or 1)
    log.info("%s", why)
    return replace(config, decode_threads=threads)
