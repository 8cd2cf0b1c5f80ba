"""core.streams against a real Redis: a tenant's lanes, Pro first, reclaiming, acks, dead letters, LAN ACLs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, ResponseError

from core import keys
from core.streams import GROUP, StreamError, Streams, acl_rules, is_legacy_lease_id, parse_lease_id
from insane.devkit.relay import fresh_redis_url


def event(tenant: str, lane: str = "standard") -> tuple[str, str]:
    event_id = str(uuid.uuid4())
    return event_id, json.dumps(
        {
            "event_id": event_id,
            "tenant_id": tenant,
            "lane": lane,
            "camera": "c",
            "created_at": datetime.now(UTC).isoformat(),
            "moments": [{"index": 0, "url": "https://x.example/a.jpg"}],
        }
    )


@pytest.fixture
async def streams(services) -> AsyncIterator[Streams]:
    client = aioredis.from_url(fresh_redis_url(services))
    yield Streams(client)
    await client.aclose()


@pytest.fixture
def tenant_id() -> str:
    """A tenant's id only (no relay here; the root ``tenant`` fixture is a relay's tenant)."""
    return str(uuid.uuid4())


async def add(streams: Streams, tenant: str, lane: str = "standard", routing_ms: int = 0) -> str:
    event_id, body = event(tenant, lane)
    await streams.add(tenant, lane, event_id, body, routing_ms)
    return event_id


async def test_pro_is_taken_before_standard(streams: Streams, tenant_id: str) -> None:
    std = await add(streams, tenant_id, "standard")
    pro = await add(streams, tenant_id, "pro")
    first = await streams.take(tenant_id, "w1", 1, 60_000)
    assert [e.event_id for e in first.entries] == [pro] and first.depth == {"pro": 1, "standard": 1}
    leased = first.entries[0].leased()
    assert leased.lane == "pro" and leased.deliveries == 1 and leased.lease_id.startswith(f"{tenant_id}:pro:")
    second = await streams.take(tenant_id, "w1", 5, 60_000)
    assert [e.event_id for e in second.entries] == [std]
    assert await streams.depth(tenant_id) == {"pro": 1, "standard": 1}
    # Nothing new, two in flight: the next chance is when one of them could be reclaimed.
    third = await streams.take(tenant_id, "w1", 5, 60_000)
    assert third.entries == [] and third.next_due_ms is not None


async def test_another_tenants_lanes_are_another_world(streams: Streams, tenant_id: str) -> None:
    other = str(uuid.uuid4())
    await add(streams, other)
    assert (await streams.take(tenant_id, "w", 8, 0)).entries == []
    assert (await streams.take(tenant_id, "w", 8, 0)).next_due_ms is None


async def test_idle_entries_are_reclaimed_with_their_delivery_count_and_acks_delete(
    streams: Streams, tenant_id: str
) -> None:
    event_id = await add(streams, tenant_id)
    (taken,) = (await streams.take(tenant_id, "dead-worker", 1, 60_000)).entries
    assert (await streams.take(tenant_id, "w2", 1, 60_000)).entries == []
    (again,) = (await streams.take(tenant_id, "w2", 1, 0)).entries  # idle past a zero deadline
    assert again.event_id == event_id and again.deliveries == 2 and again.lease_id == taken.lease_id
    assert await streams.ack(taken.lease_id, "dead-worker", event_id) == 0  # no longer its lease: no-op
    assert await streams.ack(again.lease_id, "w2", str(uuid.uuid4())) == 0  # its lease, another event
    assert await streams.depth(tenant_id) == {"pro": 0, "standard": 1}
    assert await streams.ack(again.lease_id, "w2", event_id) == 1
    assert await streams.ack(again.lease_id, "w2", event_id) == 0  # once
    assert await streams.depth(tenant_id) == {"pro": 0, "standard": 0}


async def test_held_events_name_only_the_holders_leases(streams: Streams, tenant_id: str) -> None:
    event_id = await add(streams, tenant_id, "pro")
    (got,) = (await streams.take(tenant_id, "w1", 1, 60_000)).entries
    missing = f"{tenant_id}:pro:1-0"
    assert await streams.held_events("w1", [got.lease_id, missing]) == {got.lease_id: event_id}
    assert await streams.held_events("w2", [got.lease_id]) == {}
    assert await streams.held_events("w1", [f"{uuid.uuid4()}:pro:1-0"]) == {}  # a tenant_id with no lanes


async def test_dead_letter_moves_the_entry_atomically(streams: Streams, tenant_id: str) -> None:
    event_id = await add(streams, tenant_id, "pro")
    await streams.take(tenant_id, "w", 1, 60_000)
    pending = await streams.pending(tenant_id, "pro")
    assert pending[0]["consumer"] == "w" and pending[0]["times_delivered"] == 1
    entry = await streams.claim(tenant_id, "pro", pending[0]["message_id"], "reaper", 0)
    assert entry is not None and await streams.claim(tenant_id, "pro", entry.entry_id, "other", 60_000) is None
    assert not await streams.dead_letter(entry, "poison", "someone-else")  # only the holder moves it
    assert not await streams.dead_letter(entry, "poison", "reaper", min_deliveries=3)  # delivered twice
    assert await streams.dead_letter(entry, "poison", "reaper")
    assert not await streams.dead_letter(entry, "poison", "reaper")  # once
    dead = await streams.redis.xrange(keys.dead(tenant_id))
    assert len(dead) == 1 and dead[0][1][b"id"].decode() == event_id and dead[0][1][b"reason"] == b"poison"
    assert dead[0][1][b"deliveries"] == b"2" and dead[0][1][b"lane"] == b"pro"
    assert await streams.pending(tenant_id, "pro") == [] and await streams.depth(tenant_id) == {"pro": 0, "standard": 0}


async def test_renewing_keeps_a_held_lease_from_being_reclaimed(streams: Streams, tenant_id: str) -> None:
    for _ in range(2):
        await add(streams, tenant_id)
    slow = (await streams.take(tenant_id, "slow", 2, 60_000)).entries
    await asyncio.sleep(0.3)
    # One lease renewed by its holder; a stranger's renewal, an unknown and a malformed id change nothing.
    unknown = f"{tenant_id}:standard:1-0"
    assert await streams.renew("slow", [slow[0].lease_id, unknown, "bogus"]) == [slow[0].event_id]
    assert await streams.renew("thief", [slow[1].lease_id]) == []
    reclaimed = (await streams.take(tenant_id, "other", 2, 200)).entries
    assert [e.event_id for e in reclaimed] == [slow[1].event_id]  # idle 300 ms; the renewed one is not
    assert reclaimed[0].deliveries == 2
    pending = {p["message_id"]: p for p in await streams.pending(tenant_id, "standard")}
    renewed = pending[slow[0].entry_id]
    assert renewed["consumer"] == "slow" and renewed["times_delivered"] == 1  # renewing is not a delivery
    assert await streams.renew("slow", [slow[1].lease_id]) == []  # no longer its lease


async def test_blobs_live_under_their_tenant_and_the_scan_finds_queued_ids(streams: Streams, tenant_id: str) -> None:
    event_id = await add(streams, tenant_id)
    pipe = streams.redis.pipeline(transaction=False)
    streams.put_blobs_on(pipe, tenant_id, {"b1": b"\xff\xd8jpeg"}, ttl_s=30)
    await pipe.execute()
    assert await streams.get_blob(tenant_id, "b1") == b"\xff\xd8jpeg"
    assert await streams.get_blob(str(uuid.uuid4()), "b1") is None
    assert 0 < await streams.redis.ttl(keys.blob(tenant_id, "b1")) <= 30
    assert await streams.queued_event_ids(tenant_id, "standard", batch=1) == {event_id}


async def test_a_lost_group_is_recreated(streams: Streams, tenant_id: str) -> None:
    event_id = await add(streams, tenant_id, "pro")
    await streams.redis.xgroup_destroy(keys.stream(tenant_id, "pro"), GROUP)  # Redis came back without it
    assert [e.event_id for e in (await streams.take(tenant_id, "w", 1, 0)).entries] == [event_id]


async def test_an_entry_naming_another_tenant_is_malformed(streams: Streams, tenant_id: str) -> None:
    _, body = event(str(uuid.uuid4()))
    await streams.add(tenant_id, "standard", "x", body)
    (got,) = (await streams.take(tenant_id, "w", 1, 0)).entries
    with pytest.raises(StreamError, match="another tenant"):
        got.leased()


def test_lease_ids_are_checked() -> None:
    tenant = str(uuid.uuid4())
    assert parse_lease_id(f"{tenant}:pro:17-0") == (tenant, "pro", "17-0")
    bad = [
        f"{tenant}:gold:1-0",
        f"{tenant}:pro:abc",
        f"{tenant}:pro:",
        f"{tenant}:standard:1-x",
        "",
        f"{tenant}:pro:18446744073709551616-0",
        f"{tenant}:pro:１-0",
        f"{tenant.upper()}:pro:1-0",
        "not-a-uuid:pro:1-0",
        "pro:17-0",
    ]
    for value in bad:
        with pytest.raises(StreamError):
            parse_lease_id(value)
    assert is_legacy_lease_id("pro:17-0") and not is_legacy_lease_id(f"{tenant}:pro:17-0")


async def lan_client(streams: Streams, name: str) -> aioredis.Redis:
    kw = streams.redis.connection_pool.connection_kwargs
    return aioredis.Redis(host=kw["host"], port=kw["port"], db=kw.get("db", 0), username=name, password="pw-123456")


async def test_a_dedicated_lan_workers_acl_covers_its_tenant_only(streams: Streams, tenant_id: str) -> None:
    name = f"lan-{uuid.uuid4().hex[:6]}"
    other = str(uuid.uuid4())
    await streams.redis.execute_command("ACL", "SETUSER", *acl_rules(name, "pw-123456", tenant_id))
    try:
        own, theirs = keys.stream(tenant_id, "pro"), keys.stream(other, "pro")
        allowed = [
            ["XREADGROUP", "GROUP", "workers", "c", "STREAMS", own, ">"],
            ["XAUTOCLAIM", own, "workers", "c", "0", "0"],
            ["XPENDING", own, "workers"],
            ["GET", keys.blob(tenant_id, "x")],
            ["XLEN", own],
        ]
        for cmd in allowed:
            assert await streams.redis.execute_command("ACL", "DRYRUN", name, *cmd) == b"OK", cmd
        denied = [
            ["XREADGROUP", "GROUP", "workers", "c", "STREAMS", theirs, ">"],
            ["GET", keys.blob(other, "x")],
            ["XRANGE", keys.dead(other), "-", "+"],
            ["ZRANGEBYSCORE", keys.READY["pro"], "-inf", "+inf"],
            ["XACK", own, "workers", "1-0"],
            ["XDEL", own, "1-0"],
            ["XTRIM", own, "MAXLEN", "0"],
            ["XGROUP", "DESTROY", own, "workers"],
            ["EVAL", "return 1", "0"],
            ["KEYS", "*"],
            ["XADD", own, "*", "a", "b"],
            ["FLUSHALL"],
            ["CONFIG", "GET", "*"],
            ["GET", keys.rate(tenant_id)],
            ["SMEMBERS", keys.delivered("e")],
        ]
        for cmd in denied:
            assert await streams.redis.execute_command("ACL", "DRYRUN", name, *cmd) != b"OK", cmd
        # And for real, logged in as that user: its take runs; another tenant_id's is refused; no ack.
        event_id = await add(streams, tenant_id, "pro")
        await add(streams, other, "pro")
        lan = await lan_client(streams, name)
        try:
            (got,) = (await Streams(lan).take(tenant_id, "lan-worker", 8, 60_000)).entries
            assert got.event_id == event_id
            with pytest.raises((NoPermissionError, ResponseError)):
                await Streams(lan).take(other, "lan-worker", 8, 60_000)
            with pytest.raises((NoPermissionError, ResponseError)):
                await Streams(lan).ack(got.lease_id, "lan-worker", event_id)
            assert await Streams(lan).get_blob(tenant_id, "nothing") is None
        finally:
            await lan.aclose()
    finally:
        await streams.redis.execute_command("ACL", "DELUSER", name)
