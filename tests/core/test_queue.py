"""core.queue against a real Redis: routing, the shared pool's fair share, Pro first, repairs, long-polls."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from core import keys
from core.queue import Queue, wait_for_work
from core.wakeups import POOL, WorkSignals
from insane.devkit.relay import fresh_redis_url
from tests.core.test_streams import event

OWN, SHARED = -1, 0


@pytest.fixture
async def queue(services) -> AsyncIterator[Queue]:
    client = aioredis.from_url(fresh_redis_url(services))
    yield Queue(client)
    await client.aclose()


async def put(queue: Queue, tenant: str, lane: str = "standard", routing_ms: int = SHARED, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        event_id, body = event(tenant, lane)
        await queue.enqueue(tenant, lane, event_id, body, routing_ms)
        ids.append(event_id)
    return ids


def tenants(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


async def test_the_pool_never_sees_an_own_tenants_events_and_its_own_worker_does(queue: Queue) -> None:
    own, shared = tenants(2)
    mine = await put(queue, own, routing_ms=OWN, n=3)
    theirs = await put(queue, shared, n=2)
    got = await queue.take_shared("pool-1", 64, 60_000)
    assert sorted(e.event_id for e in got.entries) == sorted(theirs)
    assert {e.tenant_id for e in got.entries} == {shared}
    assert (await queue.take_shared("pool-2", 64, 0)).entries == []  # nor after a zero-idle reclaim
    own_take = await queue.take_own(own, "own-1", 64, 60_000)
    assert sorted(e.event_id for e in own_take.entries) == sorted(mine)
    # A dedicated worker takes only its own tenant's work, even with the pool's events waiting.
    await put(queue, shared, n=2)
    assert (await queue.take_own(own, "own-1", 64, 60_000)).entries == []


async def test_a_routing_change_applies_to_the_next_take(queue: Queue) -> None:
    (tenant,) = tenants(1)
    await put(queue, tenant, n=2)
    await queue.streams.set_routing(tenant, OWN)  # shared -> own: the pool stops at once
    assert (await queue.take_shared("pool", 8, 60_000)).entries == []
    await queue.streams.set_routing(tenant, SHARED)
    await queue.remind(tenant, SHARED)
    assert len((await queue.take_shared("pool", 8, 60_000)).entries) == 2


async def test_own_then_shared_waits_for_the_tenants_own_workers_first(queue: Queue) -> None:
    (tenant,) = tenants(1)
    early = await put(queue, tenant, routing_ms=400)
    nothing = await queue.take_shared("pool", 8, 60_000)
    assert nothing.entries == [] and nothing.next_due_ms is not None
    assert nothing.next_due_ms - time.time() * 1000 > 200  # due about 400 ms after the post
    await asyncio.sleep(0.45)
    late = await put(queue, tenant, routing_ms=400)  # posted now: not ripe for the pool yet
    got = await queue.take_shared("pool", 8, 60_000)
    assert [e.event_id for e in got.entries] == early
    assert got.next_due_ms is not None and got.next_due_ms > time.time() * 1000 + 200
    # Its own worker takes the fresh one at once.
    assert [e.event_id for e in (await queue.take_own(tenant, "own", 8, 60_000)).entries] == late


async def test_one_tenants_flood_does_not_starve_the_others(queue: Queue) -> None:
    flood, *quiet = tenants(5)
    await put(queue, flood, n=200)
    for t in quiet:
        await put(queue, t, n=2)
    order = []
    for _ in range(10):
        got = await queue.take_shared("pool", 1, 60_000)
        order += [e.tenant_id for e in got.entries]
    # Round robin in due order: within the first two rounds every quiet tenant had a turn, twice in all.
    counts = collections.Counter(order)
    assert all(counts[t] == 2 for t in quiet), counts
    assert counts[flood] == 2
    # A take of 8 spreads over the due tenants rather than draining one.
    await put(queue, quiet[0], n=2)
    spread = collections.Counter(e.tenant_id for e in (await queue.take_shared("pool", 8, 60_000)).entries)
    assert spread[quiet[0]] >= 1 and spread[flood] <= 7


async def test_pro_lanes_are_served_before_standard_ones(queue: Queue) -> None:
    a, b = tenants(2)
    std = await put(queue, a, "standard", n=3)
    pro = await put(queue, b, "pro", n=2)
    got = await queue.take_shared("pool", 3, 60_000)
    assert [e.event_id for e in got.entries][:2] == pro and got.entries[2].event_id in std


async def test_a_dead_workers_entries_come_back_to_the_pool(queue: Queue) -> None:
    (tenant,) = tenants(1)
    (event_id,) = await put(queue, tenant)
    assert len((await queue.take_shared("dies", 1, 300)).entries) == 1
    first = await queue.take_shared("other", 1, 300)
    assert first.entries == [] and first.next_due_ms is not None  # the reclaim is scheduled, not forgotten
    await asyncio.sleep(0.35)
    (again,) = (await queue.take_shared("other", 1, 300)).entries
    assert again.event_id == event_id and again.deliveries == 2


async def test_the_census_counts_and_puts_lost_tenants_back(queue: Queue) -> None:
    own, shared = tenants(2)
    await put(queue, own, routing_ms=OWN, n=2)
    await put(queue, shared, "pro", n=3)
    await queue.redis.delete(keys.READY["pro"])  # a crash between a pop and its put-back
    counts = await queue.census(60_000)
    assert counts["standard"] == 2 and counts["pro"] == 3 and counts["pool:pro"] == 3 and counts["pool:standard"] == 0
    assert await queue.pool_depth() == {"pro": 3, "standard": 0}
    assert len((await queue.take_shared("pool", 8, 60_000)).entries) == 3
    # Empty tenants leave the census.
    await queue.redis.delete(keys.stream(own, "standard"))
    await queue.census(60_000)
    assert not await queue.redis.sismember(keys.ACTIVE, own)


async def test_a_long_poll_wakes_on_the_signal_not_the_poll(queue: Queue) -> None:
    signals = WorkSignals(queue.redis)
    listener = asyncio.create_task(signals.run())
    await asyncio.wait_for(signals.connected.wait(), 5)
    (tenant,) = tenants(1)
    try:
        waiting = asyncio.create_task(
            wait_for_work(lambda: queue.take_shared("pool", 8, 60_000), signals, POOL, wait_s=10, poll_s=10)
        )
        own_waiting = asyncio.create_task(
            wait_for_work(lambda: queue.take_own(tenant, "own", 8, 60_000), signals, tenant, wait_s=10, poll_s=10)
        )
        await asyncio.sleep(0.2)
        start = time.monotonic()
        await put(queue, str(uuid.uuid4()))  # the pool's
        got = await asyncio.wait_for(waiting, 5)
        assert len(got.entries) == 1 and time.monotonic() - start < 2
        assert not own_waiting.done()  # another tenant's work does not wake a dedicated worker
        await put(queue, tenant, routing_ms=OWN)
        own_got = await asyncio.wait_for(own_waiting, 5)
        assert [e.tenant_id for e in own_got.entries] == [tenant]
        # With nothing coming, the long-poll answers empty when its wait is over.
        start = time.monotonic()
        empty = await wait_for_work(lambda: queue.take_shared("pool", 8, 60_000), signals, POOL, 0.3, 10)
        assert empty.entries == [] and 0.25 < time.monotonic() - start < 2
    finally:
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener
