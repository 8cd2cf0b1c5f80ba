"""A LAN worker: leases and blobs straight from the relay's Redis, results over the relay's HTTP API."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from core.streams import Streams
from core.worker.redis_source import RedisLeaseSource
from insane.devkit.client import enroll_worker, post_event, wait_done
from insane.devkit.worker import make_worker

pytestmark = pytest.mark.timeout(180)


async def test_redis_source_reviews_uploads_and_the_relay_acks(relay, tenant, sample_images, yolov8n_onnx):
    creds = enroll_worker(relay.url)
    source = RedisLeaseSource(relay.settings.redis_url, relay.url, creds.secret, min_idle_s=5)
    worker = make_worker(relay.url, creds.secret, yolov8n_onnx, source=source)
    task = asyncio.create_task(worker.run())
    try:
        ids = [
            post_event(relay.url, tenant, uploads=[sample_images["bus.jpg"], sample_images["zidane.jpg"]])
            for _ in range(2)
        ]
        views = await wait_done(relay.url, tenant, ids)
    finally:
        await worker.stop()
        await task
    assert all(v["k"] == 2 and v["moments"][1]["width"] == 1280 for v in views.values())
    assert worker.snapshot().events_total == 2
    # Acked by the relay once stored: nothing is left pending for this consumer.

    client = aioredis.from_url(relay.settings.redis_url)
    try:
        pending = [p for lane in ("pro", "standard") for p in await Streams(client).pending(tenant.id, lane)]
    finally:
        await client.aclose()
    assert source.consumer == creds.id
    assert not [p for p in pending if p.get("consumer") in (creds.id, creds.id.encode())]
