"""The worker API and the reconciler against a real relay, PostgreSQL and Redis."""

from __future__ import annotations

import json
import threading
import time
import uuid

import asyncpg
import httpx
import pytest
import redis

from core import keys
from core.ssrf import SsrfGuard
from insane.devkit.client import admin_headers, enroll_worker, event_body, make_tenant, result_for
from insane.devkit.relay import RelayServer, run_sync
from relay import reconciler, webhooks
from tests.relay.test_events import jpeg


def lease(relay: RelayServer, worker, n: int = 8, wait: float = 0.5) -> list[dict]:
    r = httpx.post(
        f"{relay.url}/v1/worker/lease", json={"max_events": n, "wait_s": wait}, headers=worker.headers, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["events"]


def lease_until(relay: RelayServer, worker, event_id: str, tries: int = 20) -> dict:
    for _ in range(tries):
        for ev in lease(relay, worker, 64):
            if ev["event_id"] == event_id:
                return ev
    raise AssertionError(f"event {event_id} was never leased")


def submit(relay: RelayServer, tenant, **kw) -> str:
    r = httpx.post(f"{relay.url}/v1/events", json=event_body(**kw), headers=tenant.headers, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def results_post(relay: RelayServer, worker, *results: dict) -> httpx.Response:
    return httpx.post(
        f"{relay.url}/v1/worker/results", json={"results": list(results)}, headers=worker.headers, timeout=30
    )


def result_rows(relay: RelayServer, event_id: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(relay.settings.database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM results WHERE event_id = $1::text::uuid", event_id)
        finally:
            await conn.close()

    return run_sync(count())


async def send_webhooks(state, allow: frozenset[str]) -> int:
    """One webhook pass with a guard that allows ``allow`` (loopback receivers in these tests)."""
    guard = SsrfGuard(allow)
    async with webhooks.guarded_client(guard) as client:
        return await webhooks.send_due(state, client, guard)


@pytest.mark.parametrize("path", ["/v1/worker/enroll", "/v1/workers/enroll"], ids=["path", "first-path"])
def test_enroll_codes_are_one_time(relay: RelayServer, path: str) -> None:
    code = httpx.post(f"{relay.url}/admin/enroll-codes", json={}, headers=admin_headers()).json()["code"]
    first = httpx.post(f"{relay.url}{path}", json={"code": code, "name": "pc"})
    assert first.status_code == 200 and first.json()["token"].startswith("iw_")
    token = {"Authorization": f"Bearer {first.json()['token']}"}
    assert httpx.post(f"{relay.url}/v1/worker/heartbeat", json={}, headers=token).status_code == 200
    for again_at in ("/v1/worker/enroll", "/v1/workers/enroll"):  # one code, one worker, whichever path
        again = httpx.post(f"{relay.url}{again_at}", json={"code": code, "name": "pc"})
        assert again.status_code == 403 and again.json()["type"].endswith("/invalid-enroll-code")
    assert (
        httpx.post(
            f"{relay.url}/v1/worker/lease", json={}, headers={"Authorization": "Bearer iw_x_" + "y" * 40}
        ).status_code
        == 401
    )


def test_whole_event_life_with_sse_and_webhook(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    received: list[tuple[bytes, str]] = []
    hook = _start_receiver(received)
    secret = httpx.put(
        f"{relay.url}/admin/tenants/{tenant.id}/webhook", json={"url": hook.url}, headers=admin_headers()
    ).json()["secret"]
    sse_lines: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{relay.url}/v1/events/stream", headers=tenant.headers, timeout=30) as r:
            for line in r.iter_lines():
                ready.set()
                sse_lines.append(line)
                if line.startswith("data:"):
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10)
    event_id = submit(relay, tenant, n=2)
    ev = lease_until(relay, worker, event_id)
    assert (
        ev["tenant_id"] == tenant.id and ev["deliveries"] == 1 and ev["lease_id"].startswith(f"{tenant.id}:standard:")
    )
    r = results_post(relay, worker, result_for(ev))
    assert r.json() == {"stored": [event_id], "duplicates": [], "acked": 1}
    view = httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()
    assert view["status"] == "done" and view["k"] == 2 and view["moments"][0]["detections"][0]["label"] == "person"
    assert view["verdict"][0]["label"] == "person"
    listener.join(10)
    data = next(line for line in sse_lines if line.startswith("data:"))
    assert json.loads(data[5:])["id"] == event_id and "event: result" in sse_lines
    assert relay.call(send_webhooks, frozenset({"127.0.0.1"})) == 1
    body, signature = received[0]
    assert json.loads(body)["event"]["id"] == event_id
    assert webhooks.verify_signature(secret, body, signature)
    assert not webhooks.verify_signature("wrong", body, signature)
    hook.stop()
    # Redis no longer holds the entry: acked and deleted.
    assert redis.Redis.from_url(relay.settings.redis_url).xlen(keys.stream(tenant.id, "standard")) == 0


def test_webhook_to_a_private_address_is_refused_by_the_ssrf_guard(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    httpx.put(
        f"{relay.url}/admin/tenants/{tenant.id}/webhook",
        json={"url": "http://127.0.0.1:9/hook"},
        headers=admin_headers(),
    )
    event_id = submit(relay, tenant)
    results_post(relay, worker, result_for(lease_until(relay, worker, event_id)))
    assert relay.call(send_webhooks, frozenset()) == 0

    async def status(state) -> tuple:
        async with state.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', '*', true)")
            return tuple(
                await conn.fetchrow(
                    "SELECT status, last_error FROM webhook_deliveries WHERE event_id = $1", uuid.UUID(event_id)
                )
            )

    got = relay.call(status)
    assert got[0] == "failed" and "SSRF" in got[1]


def test_stale_workers_late_result_is_not_a_second_row(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    a, b = enroll_worker(relay.url, name="a"), enroll_worker(relay.url, name="b")
    event_id = submit(relay, tenant)
    first = lease_until(relay, a, event_id)
    time.sleep(relay.settings.lease_idle_s + 0.2)  # a stalls past the lease deadline
    second = lease_until(relay, b, event_id)
    assert second["deliveries"] == 2 and second["lease_id"] == first["lease_id"]
    assert results_post(relay, b, result_for(second)).json()["stored"] == [event_id]
    late = results_post(relay, a, result_for(first, k=1)).json()
    assert late["duplicates"] == [event_id] and late["stored"] == []
    assert result_rows(relay, event_id) == 1
    assert httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()["k"] == 3


def test_backfill_only_grows_k(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    event_id = submit(relay, tenant, n=4)
    ev = lease_until(relay, worker, event_id)
    results_post(relay, worker, result_for(ev, k=2))
    smaller = result_for(ev, k=1, backfill=True, lease_id=None)
    assert results_post(relay, worker, smaller).json()["duplicates"] == [event_id]
    bigger = result_for(ev, k=4, backfill=True, lease_id=None)
    assert results_post(relay, worker, bigger).json()["stored"] == [event_id]
    assert httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()["k"] == 4


def test_blobs_only_to_the_lease_holder(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    holder, other = enroll_worker(relay.url), enroll_worker(relay.url)
    data = jpeg()
    r = httpx.post(
        f"{relay.url}/v1/events",
        headers=tenant.headers,
        data={"event": json.dumps(event_body(0))},
        files=[("moment", ("a.jpg", data, "image/jpeg"))],
    )
    ev = lease_until(relay, holder, r.json()["id"])
    blob = ev["moments"][0]["blob"]
    got = httpx.get(f"{relay.url}/v1/worker/blobs/{blob}", headers=holder.headers)
    assert got.status_code == 200 and got.content == data and got.headers["content-type"] == "image/jpeg"
    assert httpx.get(f"{relay.url}/v1/worker/blobs/{blob}", headers=other.headers).status_code == 404
    assert httpx.get(f"{relay.url}/v1/worker/blobs/{'0' * 32}", headers=holder.headers).status_code == 404


def test_reconciler_requeues_an_event_whose_entry_was_lost(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    event_id = submit(relay, tenant)
    client = redis.Redis.from_url(relay.settings.redis_url)
    for entry_id, fields in client.xrange(keys.stream(tenant.id, "standard")):
        if fields[b"id"].decode() == event_id:
            client.xdel(keys.stream(tenant.id, "standard"), entry_id)
    time.sleep(relay.settings.requeue_after_s + 0.1)
    assert relay.call(reconciler.reconcile_once)["requeued"] >= 1
    ev = lease_until(relay, worker, event_id)
    assert results_post(relay, worker, result_for(ev)).json()["stored"] == [event_id]
    assert httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()["status"] == "done"


def test_poison_event_is_delivered_n_times_then_dead_lettered_once(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    client = redis.Redis.from_url(relay.settings.redis_url)
    event_id = submit(relay, tenant)
    deliveries = []
    for _ in range(relay.settings.max_deliveries + 3):
        got = [e for e in lease(relay, worker, 64, wait=0.2) if e["event_id"] == event_id]
        deliveries += [e["deliveries"] for e in got]
        time.sleep(relay.settings.lease_idle_s + 0.1)  # the worker "crashes" on it every time
    relay.call(reconciler.reconcile_once)
    assert deliveries == list(range(1, relay.settings.max_deliveries + 1))
    dead = [f for _, f in client.xrange(keys.dead(tenant.id)) if f[b"id"].decode() == event_id]
    assert len(dead) == 1
    view = httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()
    assert view["status"] == "failed" and "delivered" in view["error"]


def test_heartbeat_stores_metrics_and_answers_depth(relay: RelayServer) -> None:
    worker = enroll_worker(relay.url, name="hb")
    r = httpx.post(
        f"{relay.url}/v1/worker/heartbeat",
        headers=worker.headers,
        json={"provider": "CPUExecutionProvider", "model": "yolov8n", "metrics": {"items_s": 12.5}},
    )
    assert r.status_code == 200 and set(r.json()["queue_depth"]) == {"pro", "standard"}
    listed = httpx.get(f"{relay.url}/admin/workers", headers=admin_headers()).json()["workers"]
    mine = next(w for w in listed if w["id"] == worker.id)
    assert mine["provider"] == "CPUExecutionProvider" and mine["last_seen"] is not None
    metrics = httpx.get(f"{relay.url}/metrics").text
    assert "insane_workers_online" in metrics and 'insane_lane_depth{lane="pro"}' in metrics


def test_worker_api_validates_bodies(relay: RelayServer) -> None:
    worker = enroll_worker(relay.url)
    bad = httpx.post(f"{relay.url}/v1/worker/lease", json={"max_events": 0}, headers=worker.headers)
    assert bad.status_code == 422 and bad.json()["type"].endswith("/invalid-body")
    r = results_post(
        relay,
        worker,
        {**result_for({"event_id": "00000000-0000-0000-0000-000000000000", "lease_id": "nolane:1-0", "moments": []})},
    )
    assert r.status_code == 422


class _Receiver:
    def __init__(self, server, thread) -> None:
        self.server, self.thread = server, thread
        self.url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _start_receiver(received: list) -> _Receiver:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((body, self.headers["Insane-Signature"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return _Receiver(server, thread)


def test_non_finite_numbers_in_heartbeats_and_results_get_a_422(relay: RelayServer) -> None:
    """PostgreSQL's jsonb refuses NaN and Infinity: they used to reach it and come back as a 500."""
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    headers = {**worker.headers, "content-type": "application/json"}
    for raw in (b'{"metrics": {"images_per_s": NaN}}', b'{"metrics": {"x": Infinity}}', b'{"metrics": {"x": 1e999}}'):
        r = httpx.post(f"{relay.url}/v1/worker/heartbeat", content=raw, headers=headers)
        assert r.status_code == 422 and "finite number" in r.json()["detail"], r.text
    event_id = submit(relay, tenant)
    ev = lease_until(relay, worker, event_id)
    good = json.dumps({"results": [result_for(ev)]})
    for finite, hostile in (('"confidence": 0.9', '"confidence": NaN'), ('"best": 0.9', '"best": Infinity')):
        assert finite in good
        r = httpx.post(f"{relay.url}/v1/worker/results", content=good.replace(finite, hostile), headers=headers)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    timings = json.dumps({"results": [{**result_for(ev), "timings_ms": {"infer": float("nan")}}]})
    r = httpx.post(f"{relay.url}/v1/worker/results", content=timings, headers=headers)
    assert r.status_code == 422 and "timings_ms.infer" in r.json()["detail"]
    assert result_rows(relay, event_id) == 0  # nothing stored, nothing acked: the worker may retry a sane result
    assert results_post(relay, worker, result_for(ev)).json()["stored"] == [event_id]
