"""Tenant isolation: every id-bearing route answers 404 across tenants, and RLS is the second wall."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import httpx
import pytest

from insane.devkit.client import enroll_worker, event_body, make_tenant
from insane.devkit.relay import RelayServer, run_sync
from relay.db import app_url
from tests.relay.test_events import jpeg
from tests.relay.test_workers import lease, lease_until, submit


def test_tenant_b_gets_404_for_everything_of_tenant_a(relay: RelayServer) -> None:
    a, b = make_tenant(relay.url), make_tenant(relay.url)
    event_a = submit(relay, a)
    assert httpx.get(f"{relay.url}/v1/events/{event_a}", headers=a.headers).status_code == 200
    r = httpx.get(f"{relay.url}/v1/events/{event_a}", headers=b.headers)
    assert r.status_code == 404 and r.json()["type"].endswith("/not-found")
    assert httpx.get(f"{relay.url}/v1/events/{uuid.uuid4()}", headers=a.headers).status_code == 404
    assert httpx.get(f"{relay.url}/v1/events/not-a-uuid", headers=a.headers).status_code == 404
    listed = httpx.get(f"{relay.url}/v1/events", headers=b.headers).json()["events"]
    assert event_a not in {e["id"] for e in listed}
    # A's idempotency key used by B makes B's own event.
    ka = httpx.post(f"{relay.url}/v1/events", json=event_body(1, client_event_id="same"), headers=a.headers)
    kb = httpx.post(f"{relay.url}/v1/events", json=event_body(1, client_event_id="same"), headers=b.headers)
    assert kb.json()["id"] != ka.json()["id"]


def test_dedicated_worker_cannot_post_results_for_another_tenant(relay: RelayServer) -> None:
    a, b = make_tenant(relay.url), make_tenant(relay.url)
    shared = enroll_worker(relay.url)
    dedicated_b = enroll_worker(relay.url, tenant=b.id)
    event_a = submit(relay, a)
    ev = lease_until(relay, shared, event_a)
    from insane.devkit.client import result_for

    r = httpx.post(f"{relay.url}/v1/worker/results", json={"results": [result_for(ev)]}, headers=dedicated_b.headers)
    assert r.json() == {"stored": [], "duplicates": [], "acked": 0, "refused": [event_a]}
    assert httpx.get(f"{relay.url}/v1/events/{event_a}", headers=a.headers).json()["status"] == "queued"


def test_a_dedicated_worker_never_leases_another_tenants_event(relay: RelayServer) -> None:
    """Its tenant's pictures go only to workers it trusts, and it sees no one else's."""
    a, b = make_tenant(relay.url), make_tenant(relay.url)
    dedicated_b, shared = enroll_worker(relay.url, tenant=b.id), enroll_worker(relay.url)
    event_a, event_b = submit(relay, a), submit(relay, b)
    got = lease(relay, dedicated_b, 64, wait=0.5)
    assert [e["event_id"] for e in got] == [event_b]
    assert {e["tenant_id"] for e in lease(relay, dedicated_b, 64, wait=0.2)} <= {b.id}
    # B now has a worker of its own, so its automatic routing is `own`: the shared pool never sees B.
    seen = set()
    for _ in range(3):
        seen |= {e["tenant_id"] for e in lease(relay, shared, 64, wait=0.2)}
    assert b.id not in seen and a.id in seen
    assert event_a not in {e["event_id"] for e in lease(relay, dedicated_b, 64, wait=0.2)}


def test_blob_of_another_workers_lease_is_404(relay: RelayServer) -> None:
    a = make_tenant(relay.url)
    w1, w2 = enroll_worker(relay.url), enroll_worker(relay.url)
    r = httpx.post(
        f"{relay.url}/v1/events",
        headers=a.headers,
        data={"event": json.dumps(event_body(0))},
        files=[("moment", ("a.jpg", jpeg(), "image/jpeg"))],
    )
    blob = lease_until(relay, w1, r.json()["id"])["moments"][0]["blob"]
    assert httpx.get(f"{relay.url}/v1/worker/blobs/{blob}", headers=w2.headers).status_code == 404


def test_interleaved_tenants_on_a_small_pool_never_leak(relay: RelayServer) -> None:
    tenants = [make_tenant(relay.url) for _ in range(2)]
    own = {t.id: {submit(relay, t) for _ in range(3)} for t in tenants}

    async def probe() -> list[tuple[str, set[str]]]:
        async with httpx.AsyncClient(base_url=relay.url, timeout=30) as client:

            async def one(t) -> tuple[str, set[str]]:
                r = await client.get("/v1/events", headers=t.headers, params={"limit": 200})
                return t.id, {e["id"] for e in r.json()["events"]}

            return await asyncio.gather(*(one(tenants[i % 2]) for i in range(60)))

    for tenant_id, seen in asyncio.run(probe()):
        assert seen == own[tenant_id]


def test_every_tenant_table_has_forced_row_level_security(relay_db: str) -> None:
    async def check() -> list[tuple[str, bool, bool]]:
        conn = await asyncpg.connect(relay_db)
        try:
            return [
                tuple(r)
                for r in await conn.fetch("""
                SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
                WHERE c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                    AND a.attname IN ('tenant_id', 'dedicated_tenant') AND NOT a.attisdropped)""")
            ]
        finally:
            await conn.close()

    tables = run_sync(check())
    assert {t[0] for t in tables} >= {"events", "moments", "results", "api_keys", "usage", "workers"}
    assert all(enabled and forced for _, enabled, forced in tables), tables


def test_the_app_role_sees_nothing_without_a_tenant(relay: RelayServer) -> None:
    a = make_tenant(relay.url)
    submit(relay, a)

    async def as_app() -> tuple[int, int, int]:
        conn = await asyncpg.connect(app_url(relay.settings))
        try:
            bare = await conn.fetchval("SELECT count(*) FROM events")
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a.id)
                mine = await conn.fetchval("SELECT count(*) FROM events")
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(uuid.uuid4()))
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(
                        "INSERT INTO events (id, tenant_id, camera, occurred_at, lane, n_moments) "
                        "VALUES ($1, $2, 'x', now(), 'standard', 1)",
                        uuid.uuid4(),
                        uuid.UUID(a.id),
                    )
            return bare, mine, await conn.fetchval("SELECT count(*) FROM tenants")
        finally:
            await conn.close()

    bare, mine, tenants_visible = run_sync(as_app())
    assert bare == 0 and mine == 1 and tenants_visible == 0
