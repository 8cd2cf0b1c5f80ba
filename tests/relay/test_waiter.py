"""One pattern subscription wakes every waiting request of a relay process (real Redis)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from core import keys
from insane.devkit.relay import fresh_redis_url, run_sync
from relay.waiter import ResultWaiter


def test_a_published_result_wakes_exactly_its_request(services) -> None:
    async def go() -> None:
        redis = aioredis.from_url(fresh_redis_url(services))
        waiter = ResultWaiter(redis)
        try:
            a = await waiter.register("event-a")
            b = await waiter.register("event-b")
            await redis.publish(keys.done_channel("tenant-1"), "event-a")
            await asyncio.wait_for(a, 5)
            await asyncio.sleep(0.05)
            assert not b.done()
            waiter.forget("event-b")
            assert b.cancelled() and waiter.waiting == 1
            await redis.publish(keys.done_channel("tenant-2"), "event-b")  # forgotten: nobody to wake, no error
            await asyncio.sleep(0.05)
        finally:
            await waiter.aclose()
            await redis.aclose()

    run_sync(go())


def test_with_redis_unreachable_register_still_returns(services) -> None:
    async def go() -> bool:
        redis = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        waiter = ResultWaiter(redis)
        try:
            future = await waiter.register("event-x", ready_s=0.3)
            return future.done()
        finally:
            await waiter.aclose()
            await redis.aclose()

    assert run_sync(go()) is False  # the request then polls PostgreSQL until its deadline
