"""Per-tenant routing through the real relay: own, shared, own-then-shared; where an event waits; the upgrade
from the global lanes of earlier relays."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import redis

from core import keys
from insane.devkit.client import enroll_worker, make_tenant, result_for, set_routing
from insane.devkit.relay import RelayServer, fresh_database, relay_settings, run_sync
from relay.db import migrate
from tests.relay.test_workers import lease, lease_until, results_post, submit


def view(relay: RelayServer, tenant, event_id: str) -> dict:
    return httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers, timeout=30).json()


def heartbeat(relay: RelayServer, worker) -> dict:
    r = httpx.post(f"{relay.url}/v1/worker/heartbeat", json={}, headers=worker.headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_an_own_tenants_event_waits_visibly_for_its_worker(relay: RelayServer) -> None:
    home = make_tenant(relay.url)
    pc = enroll_worker(relay.url, tenant=home.id, name="home-pc")
    shared = enroll_worker(relay.url)
    r = httpx.post(
        f"{relay.url}/v1/events",
        json={"camera": "door", "time": datetime.now(UTC).isoformat(), "moments": ["https://cam.example.com/1.jpg"]},
        headers=home.headers,
    )
    assert r.status_code == 202 and r.json()["waiting_for"] == "your workers"
    event_id = r.json()["id"]
    queue = view(relay, home, event_id)["queue"]
    assert queue["routing"] == "own" and queue["state"] == "waiting" and queue["position"] == 1
    assert queue["your_workers_online"] == 0 and "none has ever sent a heartbeat" in queue["note"]
    assert event_id not in {e["event_id"] for e in lease(relay, shared, 64, wait=0.3)}
    assert heartbeat(relay, pc)["dedicated_tenant"] == home.id
    listed = httpx.get(f"{relay.url}/v1/workers", headers=home.headers).json()
    assert listed["routing"] == "own" and [w["name"] for w in listed["workers"]] == ["home-pc"]
    assert listed["workers"][0]["online"] and listed["workers"][0]["last_seen"]
    assert view(relay, home, event_id)["queue"]["note"] == "waiting for your workers: next in line"
    ev = lease_until(relay, pc, event_id)
    assert view(relay, home, event_id)["queue"]["state"] == "in review"
    assert results_post(relay, pc, result_for(ev)).json()["stored"] == [event_id]
    assert "queue" not in view(relay, home, event_id)
    # Another tenant sees none of it.
    other = make_tenant(relay.url)
    assert httpx.get(f"{relay.url}/v1/workers", headers=other.headers).json()["workers"] == []


def test_a_routing_change_reaches_the_pool_at_once(relay: RelayServer) -> None:
    home = make_tenant(relay.url)
    enroll_worker(relay.url, tenant=home.id)  # automatic routing: own
    shared = enroll_worker(relay.url)
    first = submit(relay, home)
    assert first not in {e["event_id"] for e in lease(relay, shared, 64, wait=0.3)}
    assert set_routing(relay.url, home.id, "shared") == {
        "routing": "shared",
        "automatic": False,
        "shared_after_s": None,
    }
    ev = lease_until(relay, shared, first)
    assert results_post(relay, shared, result_for(ev)).json()["stored"] == [first]
    set_routing(relay.url, home.id, None)  # automatic again: own, since it has a worker of its own
    second = submit(relay, home)
    assert second not in {e["event_id"] for e in lease(relay, shared, 64, wait=0.3)}
    bad = httpx.put(
        f"{relay.url}/admin/tenants/{home.id}/routing",
        json={"routing": "everyone"},
        headers={"Authorization": f"Bearer {relay.settings.admin_token.get_secret_value()}"},
    )
    assert bad.status_code == 422 and "own-then-shared" in bad.json()["detail"]


def test_own_then_shared_gives_its_own_workers_the_first_chance(relay: RelayServer) -> None:
    home = make_tenant(relay.url)
    set_routing(relay.url, home.id, "own-then-shared", shared_after_s=1.0)
    shared = enroll_worker(relay.url)
    posted = time.monotonic()
    event_id = submit(relay, home)
    assert "shared pool may take it after 1 s" in view(relay, home, event_id)["queue"]["note"]
    ev = lease_until(relay, shared, event_id, tries=40)
    assert time.monotonic() - posted >= 0.9  # not before its own workers had their second
    assert results_post(relay, shared, result_for(ev)).json()["stored"] == [event_id]


def _old_relay_state(services) -> tuple[str, str, str, str]:
    """A database at the schema of relays before per-tenant routing, with one event queued the old way:
    in the global lane, delivered once to a worker. Returns (db url, redis url, tenant id, event id)."""
    db_url = fresh_database(services, migrate=False)
    run_sync(migrate(db_url, until=2))
    settings = relay_settings(services, db_url)
    tenant, event_id = str(uuid.uuid4()), str(uuid.uuid4())

    async def seed() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("INSERT INTO tenants (id, name, tier) VALUES ($1, 'old', 'guardian')", uuid.UUID(tenant))
            await conn.execute(
                "INSERT INTO events (id, tenant_id, camera, occurred_at, lane, n_moments) "
                "VALUES ($1, $2, 'yard', now(), 'standard', 1)",
                uuid.UUID(event_id),
                uuid.UUID(tenant),
            )
            await conn.execute(
                "INSERT INTO moments (event_id, idx, tenant_id, url) VALUES ($1, 0, $2, 'https://cam.example.com/a.jpg')",
                uuid.UUID(event_id),
                uuid.UUID(tenant),
            )
        finally:
            await conn.close()

    run_sync(seed())
    old = redis.Redis.from_url(settings.redis_url)
    lane = keys.legacy_stream("standard")
    old.xgroup_create(lane, "workers", id="0", mkstream=True)
    body = {
        "event_id": event_id,
        "tenant_id": tenant,
        "lane": "standard",
        "camera": "yard",
        "hint": None,
        "created_at": datetime.now(UTC).isoformat(),
        "moments": [{"index": 0, "url": "https://cam.example.com/a.jpg"}],
        "allow_private_hosts": [],
    }
    old.xadd(lane, {"id": event_id, "event": json.dumps(body)})
    old.xadd(lane, {"id": "garbage", "event": "{not json"})
    return db_url, settings.redis_url, tenant, event_id


def test_an_existing_database_and_its_queued_events_survive_the_upgrade(services) -> None:
    db_url, redis_url, tenant, event_id = _old_relay_state(services)
    old = redis.Redis.from_url(redis_url)
    lane = keys.legacy_stream("standard")
    # An old worker had it in review under the old lease id when the relay was upgraded.
    (entry,) = [e for e in old.xreadgroup("workers", "", {lane: ">"}, count=1)[0][1]]
    worker_id = str(uuid.uuid4())
    old.xclaim(lane, "workers", worker_id, 0, [entry[0]])
    old_lease = f"standard:{entry[0].decode()}"
    run_sync(migrate(db_url))  # the new relay's migrations, on the old schema
    settings = relay_settings(services, db_url, redis_url=redis_url)
    with RelayServer(settings, background=False) as relay:
        assert not old.exists(lane)  # moved at start
        assert old.xlen(keys.stream(tenant, "standard")) == 1  # the malformed entry was left out
        assert old.sismember(keys.delivered(event_id), worker_id)
        shared = enroll_worker(relay.url)
        ev = lease_until(relay, shared, event_id)
        assert ev["tenant_id"] == tenant and ev["lease_id"].startswith(f"{tenant}:standard:")
        # The old worker, enrolled before the upgrade, finishes its review with the old lease id: taken.
        token = _worker_with_id(relay, worker_id)
        late = httpx.post(
            f"{relay.url}/v1/worker/results",
            json={"results": [dict(result_for(ev), lease_id=old_lease)]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert late.status_code == 200 and late.json() == {"stored": [event_id], "duplicates": [], "acked": 0}
        assert results_post(relay, shared, result_for(ev)).json()["acked"] == 1


def _worker_with_id(relay: RelayServer, worker_id: str) -> str:
    """Enroll a worker, then give it the id the old relay's worker had (its token follows)."""
    from relay.auth import WORKER_PREFIX, new_secret

    secret = new_secret(WORKER_PREFIX, uuid.UUID(worker_id).hex)

    async def insert() -> None:
        conn = await asyncpg.connect(relay.settings.database_url)
        try:
            await conn.execute(
                "INSERT INTO workers (id, name, token_sha256) VALUES ($1, 'old', $2)",
                uuid.UUID(worker_id),
                secret.sha256,
            )
        finally:
            await conn.close()

    run_sync(insert())
    return secret.full
