"""Leases under load: a slow review keeps its lease (heartbeats renew it), and a LAN worker, whose Redis
user cannot move entries, still gets poison and malformed entries dead-lettered through the relay."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
import redis

from core import keys
from core.streams import acl_rules
from core.worker.redis_source import RedisLeaseSource
from insane.devkit.client import allow_private_hosts, enroll_worker, event_body, make_tenant, wait_done
from insane.devkit.worker import make_worker
from tests.relay.test_workers import result_rows

pytestmark = pytest.mark.timeout(120)
SLOW_S = 2.5


class _SlowImages(http.server.BaseHTTPRequestHandler):
    image: ClassVar[bytes] = b""
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        time.sleep(SLOW_S)  # a camera on a slow uplink: the review outlasts the lease deadline
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(self.image)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"lease_idle_s": 1.0, "max_deliveries": 3, "requeue_after_s": 600}


@pytest.fixture(scope="module")
def relay_app_options() -> dict[str, Any]:
    return {"background": False}


@pytest.fixture
def slow_server(sample_images) -> Iterator[tuple[str, list[str]]]:
    handler = type("Slow", (_SlowImages,), {"image": sample_images["bus.jpg"], "hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.hits
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("renew", [True, False], ids=["heartbeats-renew", "without-renewal"])
async def test_a_review_slower_than_the_lease_deadline_is_not_done_twice(
    relay, slow_server, small_onnx, renew: bool
) -> None:
    url, hits = slow_server
    tenant = make_tenant(relay.url)
    allow_private_hosts(relay.url, tenant.id, ["127.0.0.1"])
    # In the control case the slow worker beats only every 30 s: its lease lapses (1 s deadline) and the
    # other worker takes the event over and reviews it again.
    heartbeat = 0.25 if renew else 30.0
    a, b = (enroll_worker(relay.url, tenant=tenant.id, name=n) for n in ("slow", "idle"))
    slow = make_worker(relay.url, a.secret, small_onnx, dedicated=tenant.id, heartbeat_s=heartbeat, lease_wait_s=0.5)
    idle = make_worker(relay.url, b.secret, small_onnx, dedicated=tenant.id, heartbeat_s=0.25, lease_wait_s=0.5)
    tasks = [asyncio.create_task(slow.run())]
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(
                f"{relay.url}/v1/events",
                headers=tenant.headers,
                json=event_body(camera="slow", moments=[f"{url}/a/{i}.jpg" for i in range(2)]),
            )
        event_id = r.json()["id"]
        for _ in range(200):
            if hits:
                break
            await asyncio.sleep(0.02)
        assert hits, "the slow worker never fetched"
        # It leases nothing more (else its own XAUTOCLAIM could take the idle entry back before the other
        # worker does); its review goes on.
        slow.pause()
        tasks.append(asyncio.create_task(idle.run()))  # now a second worker polls for reclaimable entries
        views = await wait_done(relay.url, tenant, [event_id], timeout_s=60)
        await asyncio.sleep(SLOW_S + 0.5)  # let a second review, if any, reach the image server
    finally:
        for w in (slow, idle):
            await w.stop()
        await asyncio.gather(*tasks)
    assert views[event_id]["status"] == "done" and result_rows(relay, event_id) == 1
    if renew:
        assert sorted(hits) == ["/a/0.jpg", "/a/1.jpg"]  # reviewed once: the lease never lapsed
        assert idle.snapshot().events_total == 0
    else:
        assert len(hits) > 2  # reclaimed mid-review and fetched again: what renewal prevents


async def test_lan_worker_gets_poison_and_malformed_entries_dead_lettered(relay, services) -> None:
    tenant = make_tenant(relay.url)
    creds = enroll_worker(relay.url, name="lan")
    admin = redis.Redis.from_url(relay.settings.redis_url)
    name, password = f"lan-{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", *acl_rules(name, password))
    host_db = relay.settings.redis_url.split("://", 1)[1]
    source = RedisLeaseSource(
        f"redis://{name}:{password}@{host_db}",
        relay.url,
        creds.secret,
        min_idle_s=0.3,
        max_deliveries=relay.settings.max_deliveries,
    )
    client = httpx.AsyncClient(base_url=relay.url, timeout=30)
    try:
        assert source.consumer == creds.id  # the relay renews and dead-letters only for the holder
        r = await client.post("/v1/events", json=event_body(1), headers=tenant.headers)
        event_id = r.json()["id"]
        garbage = admin.xadd(keys.stream(tenant.id, "standard"), {"id": "not-an-event", "event": "{not json"}).decode()
        deliveries = []
        for _ in range(6):
            leased = await source.lease(16, 0.1)
            deliveries += [e.deliveries for e in leased.events if str(e.event_id) == event_id]
            await asyncio.sleep(0.35)  # the worker "crashes" on it every time: no result
        # Another worker cannot dead-letter an entry that is not its own, or has deliveries left.
        other = enroll_worker(relay.url, name="other")
        r2 = await client.post("/v1/events", json=event_body(1), headers=tenant.headers)
        fresh = next(e for e in (await source.lease(16, 0.1)).events if str(e.event_id) == r2.json()["id"])
        for who in (other, creds):
            moved = await client.post(
                "/v1/worker/dead-letter", headers=who.headers, json={"lease_ids": [fresh.lease_id], "reason": "try"}
            )
            assert moved.status_code == 200 and moved.json() == {"moved": []}
        view = (await client.get(f"/v1/events/{event_id}", headers=tenant.headers)).json()
    finally:
        await client.aclose()
        await source.aclose()
        admin.execute_command("ACL", "DELUSER", name)
    # Each lease this worker got was one more delivery, up to max_deliveries (on a loaded machine a lease
    # can come back empty while another call holds the entry, so the list may miss one; the dead letter
    # below still records the exact count).
    assert deliveries and deliveries == sorted(set(deliveries)) and deliveries[-1] == 3
    dead = {f[b"id"].decode(): f for _, f in admin.xrange(keys.dead(tenant.id))}
    assert set(dead) == {event_id, "not-an-event"}
    assert dead["not-an-event"][b"entry_id"].decode() == garbage and b"malformed" in dead["not-an-event"][b"reason"]
    assert dead[event_id][b"deliveries"] == b"4"
    assert view["status"] == "failed" and "delivered 3 times" in view["error"]
    assert admin.xpending(keys.stream(tenant.id, "standard"), "workers")["pending"] == 1  # only the fresh one
