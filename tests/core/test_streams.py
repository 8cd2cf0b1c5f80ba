"""core.streams against a real Redis: lanes, Pro first, reclaiming, acks, dead letters and the LAN-worker ACL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, ResponseError

from core.streams import DEAD_KEY, StreamError, Streams, acl_rules, parse_lease_id, stream_key
from insane.devkit.relay import fresh_redis_url


def event(lane: str) -> tuple[str, str]:
    event_id = str(uuid.uuid4())
    return event_id, json.dumps(
        {
            "event_id": event_id,
            "tenant_id": str(uuid.uuid4()),
            "lane": lane,
            "camera": "c",
            "created_at": datetime.now(UTC).isoformat(),
            "moments": [{"index": 0, "url": "https://x.example/a.jpg"}],
        }
    )


@pytest.fixture
async def streams(services) -> AsyncIterator[Streams]:
    client = aioredis.from_url(fresh_redis_url(services))
    s = Streams(client)
    await s.ensure_groups()
    await s.ensure_groups()  # idempotent
    yield s
    await client.aclose()


async def test_pro_is_leased_before_standard(streams: Streams) -> None:
    std_id, std = event("standard")
    pro_id, pro = event("pro")
    await streams.add("standard", std_id, std)
    await streams.add("pro", pro_id, pro)
    first = await streams.lease("w1", count=1, block_ms=None, min_idle_ms=60_000)
    assert [e.event_id for e in first] == [pro_id]
    leased = first[0].leased()
    assert leased.lane == "pro" and leased.deliveries == 1 and leased.lease_id.startswith("pro:")
    second = await streams.lease("w1", count=5, block_ms=None, min_idle_ms=60_000)
    assert [e.event_id for e in second] == [std_id]
    assert await streams.depth() == {"pro": 1, "standard": 1}


async def test_idle_entries_are_reclaimed_with_their_delivery_count_and_acks_delete(streams: Streams) -> None:
    event_id, body = event("standard")
    await streams.add("standard", event_id, body)
    (taken,) = await streams.lease("dead-worker", 1, None, 60_000)
    assert await streams.lease("w2", 1, None, 60_000) == []
    (again,) = await streams.lease("w2", 1, None, 0)  # idle past a zero deadline
    assert again.event_id == event_id and again.deliveries == 2 and again.lease_id == taken.lease_id
    assert await streams.ack(taken.lease_id, "dead-worker", event_id) == 0  # no longer its lease: no-op
    assert await streams.ack(again.lease_id, "w2", str(uuid.uuid4())) == 0  # its lease, another event
    assert await streams.depth() == {"pro": 0, "standard": 1}
    assert await streams.ack(again.lease_id, "w2", event_id) == 1
    assert await streams.ack(again.lease_id, "w2", event_id) == 0  # once
    assert await streams.depth() == {"pro": 0, "standard": 0}


async def test_held_events_name_only_the_holders_leases(streams: Streams) -> None:
    event_id, body = event("pro")
    await streams.add("pro", event_id, body)
    (got,) = await streams.lease("w1", 1, None, 60_000)
    assert await streams.held_events("w1", [got.lease_id, "pro:1-0"]) == {got.lease_id: event_id}
    assert await streams.held_events("w2", [got.lease_id]) == {}


async def test_dead_letter_moves_the_entry_atomically(streams: Streams) -> None:
    event_id, body = event("pro")
    await streams.add("pro", event_id, body)
    await streams.lease("w", 1, None, 60_000)
    pending = await streams.pending("pro")
    assert pending[0]["consumer"] == "w" and pending[0]["times_delivered"] == 1
    entry = await streams.claim("pro", pending[0]["message_id"], "reaper", 0)
    assert entry is not None and await streams.claim("pro", entry.entry_id, "other", 60_000) is None
    assert not await streams.dead_letter(entry, "poison", "someone-else")  # only the holder moves it
    assert not await streams.dead_letter(entry, "poison", "reaper", min_deliveries=3)  # delivered twice
    assert await streams.dead_letter(entry, "poison", "reaper")
    assert not await streams.dead_letter(entry, "poison", "reaper")  # once
    dead = await streams.redis.xrange(DEAD_KEY)
    assert len(dead) == 1 and dead[0][1][b"id"].decode() == event_id and dead[0][1][b"reason"] == b"poison"
    assert dead[0][1][b"deliveries"] == b"2" and dead[0][1][b"lane"] == b"pro"
    assert await streams.pending("pro") == [] and await streams.redis.xlen(stream_key("pro")) == 0


async def test_renewing_keeps_a_held_lease_from_being_reclaimed(streams: Streams) -> None:
    ids = []
    for _ in range(2):
        event_id, body = event("standard")
        await streams.add("standard", event_id, body)
        ids.append(event_id)
    slow = await streams.lease("slow", 2, None, 60_000)
    await asyncio.sleep(0.3)
    # One lease renewed by its holder; a stranger's renewal, an unknown and a malformed id change nothing.
    assert await streams.renew("slow", [slow[0].lease_id, "standard:1-0", "bogus"]) == [slow[0].event_id]
    assert await streams.renew("thief", [slow[1].lease_id]) == []
    reclaimed = await streams.lease("other", 2, None, 200)
    assert [e.event_id for e in reclaimed] == [slow[1].event_id]  # idle 300 ms; the renewed one is not
    assert reclaimed[0].deliveries == 2
    pending = {p["message_id"]: p for p in await streams.pending("standard")}
    renewed = pending[slow[0].entry_id]
    assert renewed["consumer"] == "slow" and renewed["times_delivered"] == 1  # renewing is not a delivery
    assert await streams.renew("slow", [slow[1].lease_id]) == []  # no longer its lease


async def test_blobs_expire_and_the_scan_finds_queued_ids(streams: Streams) -> None:
    event_id, body = event("standard")
    _, depth = await streams.add("standard", event_id, body, {"b1": b"\xff\xd8jpeg"}, blob_ttl_s=30)
    assert depth == 1 and await streams.get_blob("b1") == b"\xff\xd8jpeg"
    assert 0 < await streams.redis.ttl("insane:blob:b1") <= 30
    assert await streams.queued_event_ids("standard", batch=1) == {event_id}


async def test_a_lost_group_is_recreated(streams: Streams) -> None:
    await streams.redis.delete(stream_key("pro"), stream_key("standard"))
    assert await streams.lease("w", 1, None, 0) == []
    event_id, body = event("pro")
    await streams.add("pro", event_id, body)
    assert [e.event_id for e in await streams.read("w", 1)] == [event_id]


def test_lease_ids_are_checked() -> None:
    assert parse_lease_id("pro:17-0") == ("pro", "17-0")
    for bad in ("gold:1-0", "pro:abc", "pro:", "standard:1-x", "", "pro:18446744073709551616-0", "pro:１-0"):
        with pytest.raises(StreamError):
            parse_lease_id(bad)


async def test_lan_worker_acl_allows_leasing_and_denies_everything_else(streams: Streams) -> None:
    name = f"lan-{uuid.uuid4().hex[:6]}"
    await streams.redis.execute_command("ACL", "SETUSER", *acl_rules(name, "pw-123456"))
    try:
        allowed = [
            ["XREADGROUP", "GROUP", "workers", "c", "STREAMS", stream_key("pro"), ">"],
            ["XAUTOCLAIM", stream_key("pro"), "workers", "c", "0", "0"],
            ["XPENDING", stream_key("pro"), "workers"],
            ["GET", "insane:blob:x"],
            ["XLEN", stream_key("pro")],
        ]
        for cmd in allowed:
            assert await streams.redis.execute_command("ACL", "DRYRUN", name, *cmd) == b"OK", cmd
        denied = [
            ["XACK", stream_key("pro"), "workers", "1-0"],
            ["XDEL", stream_key("pro"), "1-0"],
            ["XTRIM", stream_key("pro"), "MAXLEN", "0"],
            ["XGROUP", "DESTROY", stream_key("pro"), "workers"],
            ["EVAL", "return 1", "0"],
            ["KEYS", "*"],
            ["XADD", stream_key("pro"), "*", "a", "b"],
            ["SET", "insane:blob:x", "y"],
            ["FLUSHALL"],
            ["CONFIG", "GET", "*"],
            ["GET", "insane:rate:x"],
            ["XREADGROUP", "GROUP", "workers", "c", "STREAMS", DEAD_KEY, ">"],
        ]
        for cmd in denied:
            answer = await streams.redis.execute_command("ACL", "DRYRUN", name, *cmd)
            assert answer != b"OK", cmd
        # And for real, logged in as that user.
        pool_kwargs = streams.redis.connection_pool.connection_kwargs
        lan = aioredis.Redis(
            host=pool_kwargs["host"],
            port=pool_kwargs["port"],
            db=pool_kwargs.get("db", 0),
            username=name,
            password="pw-123456",
        )
        try:
            event_id, body = event("pro")
            await streams.add("pro", event_id, body)
            (got,) = await Streams(lan).lease("lan-worker", 1, None, 60_000)
            assert got.event_id == event_id
            with pytest.raises((NoPermissionError, ResponseError)):
                await Streams(lan).ack(got.lease_id, "lan-worker", event_id)
        finally:
            await lan.aclose()
    finally:
        await streams.redis.execute_command("ACL", "DELUSER", name)
