"""The Pro token bucket: GCRA in one Lua script, on the Redis server's clock.

    allowed, retry_after_s = await limiter.take(tenant_id, rate_per_s, burst)

GCRA keeps one number per tenant (the theoretical arrival time), so a burst of ``burst`` requests
passes at once and then one per ``1/rate`` seconds. The script reads TIME itself: relays whose
clocks disagree still share one bucket.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from core import keys

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
return {1, 0}
"""


def bucket_key(tenant_id: str) -> str:
    return keys.rate(tenant_id)


class RateLimiter:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.script = redis.register_script(_GCRA)

    def take_args(self, tenant_id: str, rate_per_s: float, burst: int) -> tuple[list[str], list[int]]:
        return [bucket_key(tenant_id)], [max(1, int(1_000_000 / rate_per_s)), max(1, burst)]

    @staticmethod
    def outcome(reply: list[int]) -> tuple[bool, float]:
        """(allowed, seconds until the next request would pass) from the script's reply."""
        return bool(int(reply[0])), int(reply[1]) / 1_000_000

    async def take(self, tenant_id: str, rate_per_s: float, burst: int) -> tuple[bool, float]:
        keys, args = self.take_args(tenant_id, rate_per_s, burst)
        return self.outcome(await self.script(keys=keys, args=args))
