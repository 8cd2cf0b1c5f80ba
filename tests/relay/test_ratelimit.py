"""GCRA buckets on a real Redis: one bucket, and several taken all at once or not at all."""

from __future__ import annotations

import redis.asyncio as aioredis

from insane.devkit.relay import fresh_redis_url, run_sync
from relay.ratelimit import RateLimiter, bucket_key, vision_bucket_key


def test_several_buckets_are_taken_all_or_none(services) -> None:
    async def go() -> list[tuple[bool, float]]:
        redis = aioredis.from_url(fresh_redis_url(services))
        try:
            limiter = RateLimiter(redis)
            roomy, tight = (vision_bucket_key("t1"), 0.01, 100), (bucket_key("t1"), 0.01, 1)
            out = [await limiter.take_all([roomy, tight]) for _ in range(2)]
            # The refusal took nothing from the roomy bucket: 99 more pass alone, the 100th does not.
            out += [await limiter.take_all([roomy]) for _ in range(100)]
            return out
        finally:
            await redis.aclose()

    got = run_sync(go())
    assert got[0] == (True, 0.0)
    assert got[1][0] is False and 99 < got[1][1] <= 100  # the tight bucket's 1/0.01 s
    assert all(ok for ok, _ in got[2:-1]) and len(got[2:-1]) == 99
    assert got[-1][0] is False


def test_a_tenants_buckets_share_one_cluster_slot() -> None:
    assert bucket_key("abc").endswith("{abc}") and vision_bucket_key("abc").endswith("{abc}")
