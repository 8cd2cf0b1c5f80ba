"""A lease long-poll blocks in Redis longer than redis-py's default socket timeout; it must not fail."""

from __future__ import annotations

import time

from core.redisconn import MAX_BLOCK_S, READ_TIMEOUT_S, redis_client


async def test_a_blocking_read_outlasts_the_default_socket_timeout(services) -> None:
    client = redis_client(services.redis_url)
    try:
        await client.xgroup_create("test:redisconn", "g", id="0", mkstream=True)
        start = time.monotonic()
        # 6 s is past redis-py 8's 5-second default: without our timeout this raises TimeoutError.
        got = await client.xreadgroup("g", "c", {"test:redisconn": ">"}, count=1, block=6000)
        assert got == [] or got is None
        assert time.monotonic() - start >= 5.9
        assert READ_TIMEOUT_S > MAX_BLOCK_S
    finally:
        await client.delete("test:redisconn")
        await client.aclose()
