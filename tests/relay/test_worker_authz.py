"""A worker writes only what it was given: results, back-fills and acks against a real relay.

A worker token is a credential of a machine the relay does not control; each test here is an attack
(or a legitimate edge) made through the real HTTP API, and checked in PostgreSQL and Redis.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
import httpx
import pytest
import redis

from core import keys
from core.streams import GROUP, parse_lease_id
from insane.devkit.client import enroll_worker, make_tenant, result_for
from insane.devkit.relay import RelayServer, run_sync
from tests.relay.test_workers import lease_until, result_rows, results_post, submit


def status(relay: RelayServer, tenant, event_id: str) -> str:
    return httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()["status"]


def stored_k(relay: RelayServer, event_id: str) -> int | None:
    async def fetch() -> int | None:
        conn = await asyncpg.connect(relay.settings.database_url)
        try:
            return await conn.fetchval("SELECT k FROM results WHERE event_id = $1", uuid.UUID(event_id))
        finally:
            await conn.close()

    return run_sync(fetch())


def pending_holder(relay: RelayServer, lease_id: str) -> str | None:
    tenant, lane, entry_id = parse_lease_id(lease_id)
    rows = redis.Redis.from_url(relay.settings.redis_url).xpending_range(
        keys.stream(tenant, lane), GROUP, min=entry_id, max=entry_id, count=1
    )
    return rows[0]["consumer"].decode() if rows else None


def test_a_dedicated_worker_cannot_write_another_tenants_verdict_with_its_own_lease(relay: RelayServer) -> None:
    a, b = make_tenant(relay.url), make_tenant(relay.url)
    shared, dedicated_b = enroll_worker(relay.url), enroll_worker(relay.url, tenant=b.id)
    event_b = submit(relay, b)
    own = lease_until(relay, dedicated_b, event_b)
    event_a = submit(relay, a)
    theirs = lease_until(relay, shared, event_a)
    forged = dict(result_for(theirs), lease_id=own["lease_id"])
    r = results_post(relay, dedicated_b, forged)
    assert r.status_code == 200
    assert r.json() == {"stored": [], "duplicates": [], "acked": 0, "refused": [event_a]}
    assert status(relay, a, event_a) == "queued" and result_rows(relay, event_a) == 0
    # Its own entry carries another event: it was not acked with A's result.
    assert pending_holder(relay, own["lease_id"]) == dedicated_b.id
    # The worker that was given A's event still writes it.
    assert results_post(relay, shared, result_for(theirs)).json()["stored"] == [event_a]


def test_a_worker_cannot_ack_another_workers_entry(relay: RelayServer) -> None:
    a = make_tenant(relay.url)
    holder, thief = enroll_worker(relay.url), enroll_worker(relay.url)
    event_id = submit(relay, a)
    ev = lease_until(relay, holder, event_id)
    depth = redis.Redis.from_url(relay.settings.redis_url).xlen(keys.stream(a.id, "standard"))
    r = results_post(relay, thief, result_for(ev))
    assert r.json() == {"stored": [], "duplicates": [], "acked": 0, "refused": [event_id]}
    assert pending_holder(relay, ev["lease_id"]) == holder.id
    assert redis.Redis.from_url(relay.settings.redis_url).xlen(keys.stream(a.id, "standard")) == depth
    # Once a result is stored, a duplicate naming the holder's lease still acks nothing for the thief...
    assert results_post(relay, holder, dict(result_for(ev), lease_id=None)).json()["stored"] == [event_id]
    assert results_post(relay, thief, result_for(ev)).json()["acked"] == 0
    assert pending_holder(relay, ev["lease_id"]) == holder.id
    # ...while the holder's own retry is a duplicate that acks its entry.
    assert results_post(relay, holder, result_for(ev)).json() == {
        "stored": [],
        "duplicates": [event_id],
        "acked": 1,
    }
    assert pending_holder(relay, ev["lease_id"]) is None


def test_a_shared_worker_cannot_store_or_backfill_an_event_it_was_never_given(relay: RelayServer) -> None:
    a = make_tenant(relay.url)
    given, stranger = enroll_worker(relay.url), enroll_worker(relay.url)
    event_id = submit(relay, a)
    ev = lease_until(relay, given, event_id)
    unleased = dict(result_for(ev), lease_id=None)
    assert results_post(relay, stranger, unleased).json()["refused"] == [event_id]
    assert result_rows(relay, event_id) == 0
    assert results_post(relay, given, result_for(ev, k=2)).json()["stored"] == [event_id]
    # A back-fill from the stranger (larger k) would forge the verdict: refused, the result stays.
    forged = dict(result_for(ev, k=3), lease_id=None, backfill=True, model="forged")
    assert results_post(relay, stranger, forged).json()["refused"] == [event_id]
    assert stored_k(relay, event_id) == 2
    # The worker that reviewed it may back-fill.
    backfill = dict(result_for(ev, k=3), lease_id=None, backfill=True)
    assert results_post(relay, given, backfill).json()["stored"] == [event_id]
    assert stored_k(relay, event_id) == 3


def test_a_lapsed_leases_late_result_is_welcome_and_the_first_write_wins(relay: RelayServer) -> None:
    a = make_tenant(relay.url)
    slow, fast = enroll_worker(relay.url), enroll_worker(relay.url)
    event_id = submit(relay, a)
    ev = lease_until(relay, slow, event_id)
    time.sleep(relay.settings.lease_idle_s + 0.2)
    again = lease_until(relay, fast, event_id)
    assert again["lease_id"] == ev["lease_id"] and again["deliveries"] == 2
    late = results_post(relay, slow, result_for(ev)).json()
    assert late == {"stored": [event_id], "duplicates": [], "acked": 0}  # no longer its entry to ack
    assert results_post(relay, fast, result_for(again)).json() == {
        "stored": [],
        "duplicates": [event_id],
        "acked": 1,
    }
    assert result_rows(relay, event_id) == 1


def test_backfill_rights_outlive_the_short_lived_delivery_record(relay: RelayServer) -> None:
    a = make_tenant(relay.url)
    given, stranger = enroll_worker(relay.url), enroll_worker(relay.url)
    event_id = submit(relay, a)
    ev = lease_until(relay, given, event_id)
    assert results_post(relay, given, result_for(ev, k=1)).json()["acked"] == 1
    redis.Redis.from_url(relay.settings.redis_url).delete(keys.delivered(event_id))  # expired
    backfill = dict(result_for(ev, k=3), lease_id=None, backfill=True)
    assert results_post(relay, stranger, backfill).json()["refused"] == [event_id]
    assert results_post(relay, given, backfill).json()["stored"] == [event_id]
    assert stored_k(relay, event_id) == 3
    # Its late retry of the first result is a duplicate, not a refusal: the stored result names it.
    assert results_post(relay, given, dict(result_for(ev, k=1), lease_id=None)).json()["duplicates"] == [event_id]


def test_delivery_records_survive_a_relay_restart(services, relay_db: str) -> None:
    from insane.devkit.relay import relay_settings

    settings = relay_settings(services, relay_db, lease_idle_s=30.0)
    with RelayServer(settings, background=False) as first:
        a = make_tenant(first.url)
        worker = enroll_worker(first.url)
        event_id = submit(first, a)
        ev = lease_until(first, worker, event_id)
    with RelayServer(settings, background=False) as second:
        assert results_post(second, worker, result_for(ev)).json() == {
            "stored": [event_id],
            "duplicates": [],
            "acked": 1,
        }


@pytest.mark.parametrize("field", ["event_id", "lease_id"])
def test_a_result_that_names_nothing_real_is_refused_not_stored(relay: RelayServer, field: str) -> None:
    a = make_tenant(relay.url)
    worker = enroll_worker(relay.url)
    event_id = submit(relay, a)
    ev = lease_until(relay, worker, event_id)
    bogus = dict(result_for(ev))
    bogus[field] = "standard:1-0" if field == "lease_id" else "00000000-0000-4000-8000-000000000000"
    body = results_post(relay, worker, bogus).json()
    if field == "event_id":
        assert body["refused"] == [bogus["event_id"]] and body["acked"] == 0
        assert pending_holder(relay, ev["lease_id"]) == worker.id
    else:
        # Delivered to it, so stored; the bogus lease acks nothing.
        assert body == {"stored": [event_id], "duplicates": [], "acked": 0}


def test_a_lan_worker_writes_what_it_leased_from_redis_and_nothing_else(relay: RelayServer) -> None:
    """LAN workers lease straight from Redis under their ACL user: the relay learns of their deliveries
    from the lease they hold (and their heartbeats), so their late results are welcome too."""
    from core.protocol import EventResult, Heartbeat
    from core.streams import acl_rules
    from core.worker.redis_source import RedisLeaseSource

    a = make_tenant(relay.url)
    lan_creds, stranger = enroll_worker(relay.url, name="lan"), enroll_worker(relay.url)
    admin = redis.Redis.from_url(relay.settings.redis_url)
    name, password = f"lan-{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", *acl_rules(name, password))
    host_db = relay.settings.redis_url.split("://", 1)[1]
    first, second = submit(relay, a), submit(relay, a)

    async def scenario() -> tuple:
        source = RedisLeaseSource(f"redis://{name}:{password}@{host_db}", relay.url, lan_creds.secret, min_idle_s=60)
        try:
            got = {}
            for _ in range(20):
                for ev in (await source.lease(64, 0.1)).events:
                    got[str(ev.event_id)] = ev
                if first in got and second in got:
                    break
            one, two = got[first], got[second]
            # The stranger was given neither: refused, nothing acked.
            async with httpx.AsyncClient(base_url=relay.url, headers=stranger.headers) as client:
                r = await client.post("/v1/worker/results", json={"results": [result_for(one.model_dump(mode="json"))]})
            refused = r.json()
            # The LAN worker's heartbeat lists the second lease: the relay records that delivery.
            await source.heartbeat(Heartbeat(leases=[two.lease_id]))
            stored = await source.post_results([EventResult.model_validate(result_for(one.model_dump(mode="json")))])
            return two, refused, stored
        finally:
            await source.aclose()

    try:
        two, refused, stored = run_sync(scenario())
    finally:
        admin.execute_command("ACL", "DELUSER", name)
    assert refused["refused"] == [first] and refused["acked"] == 0
    assert [str(e) for e in stored.stored] == [first] and stored.acked == 1
    assert admin.sismember(keys.delivered(second), lan_creds.id)
    # Its lease on the second event lapses to another worker; its late result is still welcome.
    _, lane, entry_id = parse_lease_id(two.lease_id)
    admin.xclaim(keys.stream(a.id, lane), GROUP, stranger.id, 0, [entry_id])
    late = results_post(relay, lan_creds, result_for(two.model_dump(mode="json")))
    assert late.json() == {"stored": [second], "duplicates": [], "acked": 0}
