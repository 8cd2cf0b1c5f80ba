"""Uploads are as durable as events: in PostgreSQL with their event, cached in Redis, removed when done."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from core import keys
from insane.devkit.client import enroll_worker, event_body, make_tenant, result_for
from insane.devkit.relay import RelayServer, relay_settings, run_sync
from relay import blobs
from tests.relay.test_events import jpeg
from tests.relay.test_workers import lease, lease_until, results_post


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"lease_idle_s": 1.0, "max_deliveries": 2, "blob_ttl_s": 10}


@pytest.fixture(scope="module")
def relay_app_options() -> dict[str, Any]:
    return {"background": False}


def upload(relay: RelayServer, tenant, images: list[bytes], **extra) -> str:
    files = [("moment", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    r = httpx.post(
        f"{relay.url}/v1/events",
        data={"event": json.dumps(event_body(0, **extra))},
        files=files,
        headers=tenant.headers,
        timeout=30,
    )
    assert r.status_code == 202, r.text
    return r.json()["id"]


def noisy_jpeg(width: int, height: int) -> bytes:
    """A JPEG that does not compress away (noise): about a megabyte at this size."""
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def stored(relay: RelayServer, event_id: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(relay.settings.database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM blobs WHERE event_id = $1", uuid.UUID(event_id))
        finally:
            await conn.close()

    return run_sync(count())


def forget_redis_copies(relay: RelayServer, tenant) -> None:
    """What a Redis crash without AOF does to uploads: the cached images and the leases' holds are gone."""
    client = redis.Redis.from_url(relay.settings.redis_url)
    doomed = list(client.scan_iter(keys.blob(tenant.id, "*"))) + list(client.scan_iter(keys.hold("*")))
    if doomed:
        client.delete(*doomed)


def fetch(relay: RelayServer, worker, blob: str, lease: str | None = None) -> httpx.Response:
    params = {"lease": lease} if lease else None
    return httpx.get(f"{relay.url}/v1/worker/blobs/{blob}", params=params, headers=worker.headers, timeout=30)


def test_an_upload_outlives_redis_losing_it(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker, other = enroll_worker(relay.url), enroll_worker(relay.url)
    images = [jpeg(64, 48), jpeg(80, 60)]
    event_id = upload(relay, tenant, images)
    assert stored(relay, event_id) == 2  # on disk before the 202
    ev = lease_until(relay, worker, event_id)
    forget_redis_copies(relay, tenant)
    for moment, data in zip(ev["moments"], images, strict=True):
        got = fetch(relay, worker, moment["blob"], ev["lease_id"])
        assert got.status_code == 200 and got.content == data
    # Cached again for the next fetch.
    client = redis.Redis.from_url(relay.settings.redis_url)
    assert client.get(keys.blob(tenant.id, ev["moments"][0]["blob"])) == images[0]
    # A worker the event was never given gets nothing, with or without naming someone else's lease.
    assert fetch(relay, other, ev["moments"][0]["blob"]).status_code == 404
    assert fetch(relay, other, ev["moments"][0]["blob"], ev["lease_id"]).status_code == 404
    assert fetch(relay, other, ev["moments"][0]["blob"], "not-a-lease").status_code == 404


def test_images_go_once_no_review_needs_them(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    full = upload(relay, tenant, [jpeg(), jpeg()])
    ev = lease_until(relay, worker, full)
    assert results_post(relay, worker, result_for(ev)).json()["stored"] == [full]
    assert stored(relay, full) == 0  # all reviewed: gone with the result
    shrunk = upload(relay, tenant, [jpeg(), jpeg(), jpeg()])
    ev = lease_until(relay, worker, shrunk)
    assert results_post(relay, worker, result_for(ev, k=2)).json()["stored"] == [shrunk]
    assert stored(relay, shrunk) == 3  # kept for the back-fill of the skipped moment
    backfill = dict(result_for(ev, k=3), lease_id=None, backfill=True)
    assert results_post(relay, worker, backfill).json()["stored"] == [shrunk]
    assert stored(relay, shrunk) == 0


def test_a_failed_events_images_go_with_it(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    event_id = upload(relay, tenant, [jpeg()])
    for _ in range(relay.settings.max_deliveries):  # the worker "crashes" on it every time
        lease_until(relay, worker, event_id)
        time.sleep(relay.settings.lease_idle_s + 0.1)
    assert event_id not in {e["event_id"] for e in lease(relay, worker, 64, wait=0.3)}  # dead-lettered instead
    view = httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()
    assert view["status"] == "failed" and stored(relay, event_id) == 0


def test_the_sweep_removes_what_a_shrunk_reviews_grace_has_passed(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    event_id = upload(relay, tenant, [jpeg(), jpeg()])
    ev = lease_until(relay, worker, event_id)
    results_post(relay, worker, result_for(ev, k=1))

    async def age() -> None:
        conn = await asyncpg.connect(relay.settings.database_url)
        try:
            await conn.execute(
                "UPDATE events SET done_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(event_id)
            )
        finally:
            await conn.close()

    assert stored(relay, event_id) == 2
    run_sync(age())
    assert relay.call(blobs.sweep) >= 2 and stored(relay, event_id) == 0


def test_a_full_upload_store_answers_503_and_takes_urls_still(services, relay_db: str) -> None:
    settings = relay_settings(services, relay_db, blob_store_max_mb=1)
    with RelayServer(settings, background=False) as relay:
        tenant = make_tenant(relay.url)
        big = noisy_jpeg(1600, 1200)
        codes = []
        for _ in range(40):
            files = [("moment", (f"{i}.jpg", big, "image/jpeg")) for i in range(4)]
            r = httpx.post(
                f"{relay.url}/v1/events",
                data={"event": json.dumps(event_body(0))},
                files=files,
                headers=tenant.headers,
                timeout=30,
            )
            codes.append(r.status_code)
            if r.status_code == 503:
                assert r.json()["type"].endswith("/overloaded") and "upload store is full" in r.json()["detail"]
                assert int(r.headers["retry-after"]) > 0
                break
        assert codes[-1] == 503 and set(codes[:-1]) == {202}
        urls = httpx.post(f"{relay.url}/v1/events", json=event_body(2), headers=tenant.headers, timeout=30)
        assert urls.status_code == 202


def test_a_lan_worker_gets_an_image_redis_lost_from_the_relay(relay: RelayServer) -> None:
    from core.streams import acl_rules
    from core.worker.redis_source import RedisLeaseSource

    tenant = make_tenant(relay.url)
    creds = enroll_worker(relay.url, name="lan")
    admin = redis.Redis.from_url(relay.settings.redis_url)
    name, password = f"lan-{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", *acl_rules(name, password))
    image = jpeg(96, 64)
    event_id = upload(relay, tenant, [image])

    async def scenario() -> bytes:
        host_db = relay.settings.redis_url.split("://", 1)[1]
        source = RedisLeaseSource(f"redis://{name}:{password}@{host_db}", relay.url, creds.secret, min_idle_s=60)
        try:
            for _ in range(20):
                got = [e for e in (await source.lease(64, 0.2)).events if str(e.event_id) == event_id]
                if got:
                    break
            forget_redis_copies(relay, tenant)
            return await source.fetch_blob(got[0].moments[0].blob, got[0])
        finally:
            await source.aclose()

    try:
        assert run_sync(scenario()) == image
    finally:
        admin.execute_command("ACL", "DELUSER", name)
