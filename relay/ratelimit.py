"""The Pro token bucket: GCRA in one Lua script, on the Redis server's clock.

    allowed, retry_after_s = await limiter.take(tenant_id, rate_per_s, burst)
    allowed, retry_after_s = await limiter.take_all([(key_a, 1.0, 10), (key_b, 5.0, 20)])   # all or none

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


# A second script takes from several buckets at once, only if every one has room; the tenant id is the
# hash tag so a tenant's buckets share one Redis Cluster slot.
_GCRA_ALL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat + interval
  local allow_at = tats[i] - burst * interval
  if now < allow_at and allow_at - now > wait then wait = allow_at - now end
end
if wait > 0 then
  return {0, wait}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.floor((tats[i] - now) / 1000) + 1000)
end
return {1, 0}
"""


def bucket_key(tenant_id: str) -> str:
    return keys.rate(tenant_id)


def vision_bucket_key(tenant_id: str) -> str:
    """The DeepStack API's bucket (relay/vision.py), beside the Pro one (one hash tag: one Cluster slot)."""
    return keys.vision_rate(tenant_id)


class RateLimiter:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.script = redis.register_script(_GCRA)
        self.script_all = redis.register_script(_GCRA_ALL)

    def take_args(self, tenant_id: str, rate_per_s: float, burst: int) -> tuple[list[str], list[int]]:
        return [bucket_key(tenant_id)], [max(1, int(1_000_000 / rate_per_s)), max(1, burst)]

    @staticmethod
    def outcome(reply: list[int]) -> tuple[bool, float]:
        """(allowed, seconds until the next request would pass) from the script's reply."""
        return bool(int(reply[0])), int(reply[1]) / 1_000_000

    async def take(self, tenant_id: str, rate_per_s: float, burst: int) -> tuple[bool, float]:
        keys, args = self.take_args(tenant_id, rate_per_s, burst)
        return self.outcome(await self.script(keys=keys, args=args))

    async def take_all(self, buckets: list[tuple[str, float, int]]) -> tuple[bool, float]:
        """Take one request from every ``(key, rate_per_s, burst)`` bucket, or from none when any is empty."""
        keys = [key for key, _, _ in buckets]
        args = [v for _, rate, burst in buckets for v in (max(1, int(1_000_000 / rate)), max(1, burst))]
        return self.outcome(await self.script_all(keys=keys, args=args))
