"""Who takes which tenant's work: enqueue, a tenant's own workers, and the shared pool's fair share.

Each tenant has its own lanes (core/streams.py). A worker dedicated to a tenant takes only from that
tenant. The operator's shared pool never scans ten thousand streams: per lane, a sorted set
(``keys.READY``) holds the tenants whose work the pool may take, scored by when it may (Unix ms). A pool
worker pops the tenants that are due, oldest first, takes an even share from each, and puts each back
with the time its next work is due. That is round robin across tenants in due order: a tenant with a
thousand events waiting gets one turn like a tenant with one, so one tenant's flood cannot starve the
others. Pro lanes are served before standard ones.

A tenant's routing decides what the pool may see (``routing_ms``): -1 never (policy ``own``), 0 at once
(``shared``), n after n ms with no worker of its own taking it (``own-then-shared``). The pool reads it
from the tenant's routing key inside the take itself, so a change applies to the next take.

    queue = Queue(redis)
    entry_id, position = await queue.enqueue(tenant, "standard", event_id, event_json, routing_ms=0)
    got = await queue.take_shared("worker-2", count=8, min_idle_ms=60000)      # the operator's pool
    got = await queue.take_own(tenant, "worker-1", count=8, min_idle_ms=60000)  # a dedicated worker
    got = await wait_for_work(lambda: queue.take_own(...), signals, tenant, wait_s=10)   # long-poll
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from core import keys
from core.protocol import LANES, Lane
from core.streams import Entry, Streams
from core.wakeups import WorkSignals

# Take the tenants of a ready set that are due (score <= now), oldest due first, and answer with the
# next due time left in the set (-1: none). KEYS: the ready set; ARGV: how many.
_POP_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, first[2] or '-1'}
"""

# Put a served tenant back at its next due time; when that is now, at the tail of the tenants already
# due (a microsecond past the last one), so that it never ties with those still waiting their turn:
# Redis orders equal scores by member, and a tenant served in the millisecond it became due could
# otherwise lap them. KEYS: the ready set; ARGV: the tenant, its next due time (Unix ms).
_PUT_BACK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = tonumber(ARGV[2])
if score <= now then
  local tail = redis.call('ZREVRANGEBYSCORE', KEYS[1], now + 1, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if tail[2] and tonumber(tail[2]) >= score then score = tonumber(tail[2]) + 0.001 end
end
redis.call('ZADD', KEYS[1], 'LT', score, ARGV[1])
return tostring(score)
"""

MAX_ROUNDS = 4  # per lane and take: pops of due tenants that all turned out to have nothing ripe


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Take:
    """Entries taken, and the earliest time more may be there (Unix ms; None: wait for a signal)."""

    entries: list[Entry] = field(default_factory=list)
    next_due_ms: int | None = None
    depth: dict[Lane, int] = field(default_factory=dict)

    def due(self, ms: int | None) -> None:
        if ms is not None and (self.next_due_ms is None or ms < self.next_due_ms):
            self.next_due_ms = ms


class Queue:
    def __init__(self, redis: aioredis.Redis, streams: Streams | None = None) -> None:
        self.redis = redis
        self.streams = streams or Streams(redis)
        self._pop_due = redis.register_script(_POP_DUE)
        self._put_back = redis.register_script(_PUT_BACK)

    async def enqueue(
        self,
        tenant_id: str,
        lane: Lane,
        event_id: str,
        event_json: str,
        routing_ms: int,
        blobs: dict[str, bytes] | None = None,
        blob_ttl_s: int = 3600,
    ) -> tuple[str, int]:
        """Store the blobs, append the entry, tell the pool (if the tenant's routing lets it see the event)
        and wake a long-poll on every relay: one round trip. Returns (entry id, the tenant's lane length)."""
        pipe = self.redis.pipeline(transaction=False)
        self.streams.put_blobs_on(pipe, tenant_id, blobs or {}, blob_ttl_s)
        await self.streams.add_to(pipe, tenant_id, lane, event_id, event_json, routing_ms)
        pipe.sadd(keys.ACTIVE, tenant_id)
        pool_due = None if routing_ms < 0 else now_ms() + routing_ms
        if pool_due is not None:
            pipe.zadd(keys.READY[lane], {tenant_id: pool_due}, lt=True)
        pipe.publish(keys.WORK_CHANNEL, f"{tenant_id}|{pool_due if pool_due is not None else '-'}")
        replies = await pipe.execute()
        entry_id, length = replies[len(blobs or {})]
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id, int(length)

    async def remind(self, tenant_id: str, routing_ms: int) -> None:
        """Look at a tenant again: its own workers now, the pool when its routing lets it (after a routing
        change, or a repair). A reminder for a tenant with nothing ripe costs one empty turn."""
        pool_due = None if routing_ms < 0 else now_ms() + routing_ms
        pipe = self.redis.pipeline(transaction=False)
        if pool_due is not None:
            for lane in LANES:
                pipe.zadd(keys.READY[lane], {tenant_id: pool_due}, lt=True)
        else:
            for lane in LANES:
                pipe.zrem(keys.READY[lane], tenant_id)
        pipe.publish(keys.WORK_CHANNEL, f"{tenant_id}|{pool_due if pool_due is not None else '-'}")
        await pipe.execute()

    async def take_own(self, tenant_id: str, consumer: str, count: int, min_idle_ms: int) -> Take:
        """A dedicated worker's take: idle entries of its tenant first, then new ones, Pro first."""
        turn = await self.streams.take(tenant_id, consumer, count, min_idle_ms)
        return Take(turn.entries, turn.next_due_ms, turn.depth)

    async def take_shared(self, consumer: str, count: int, min_idle_ms: int) -> Take:
        """The shared pool's take: an even share from each due tenant, Pro lanes first."""
        take = Take()
        for lane in LANES:
            for _ in range(MAX_ROUNDS):
                want = count - len(take.entries)
                if want <= 0:
                    return take
                raw, first = await self._pop_due(keys=[keys.READY[lane]], args=[want])
                take.due(int(float(first)) if float(first) >= 0 else None)
                tenants = [t.decode() if isinstance(t, bytes) else t for t in raw]
                if not tenants:
                    break
                took = await self._turns(lane, tenants, consumer, want, min_idle_ms, take)
                if took == 0 and len(tenants) < want:
                    break  # every due tenant was a false alarm and none is left due
        return take

    async def _turns(
        self, lane: Lane, tenants: list[str], consumer: str, want: int, min_idle_ms: int, take: Take
    ) -> int:
        """One turn on each tenant (``want`` spread evenly), then each back in the set at its next due time
        (behind the tenants already due: see _PUT_BACK)."""
        base, extra = divmod(want, len(tenants))
        pipe = self.redis.pipeline(transaction=False)
        for n, tenant in enumerate(tenants):
            await self.streams.take_on(pipe, tenant, consumer, base + (n < extra), min_idle_ms, (lane,), pool=True)
        replies = await pipe.execute()
        back = self.redis.pipeline(transaction=False)
        took = 0
        held = {e.lease_id for e in take.entries}
        for tenant, reply in zip(tenants, replies, strict=True):
            turn = Streams.turn(tenant, (lane,), reply)
            fresh = [e for e in turn.entries if e.lease_id not in held]  # a reclaim of its own take
            take.entries += fresh
            took += len(fresh)
            if turn.next_due_ms is not None:
                await self._put_back(keys=[keys.READY[lane]], args=[tenant, turn.next_due_ms], client=back)
                take.due(turn.next_due_ms)
        if len(back):
            await back.execute()
        return took

    async def census(self, min_idle_ms: int) -> dict[str, int]:
        """Count what waits, per lane and for the pool, into ``keys.DEPTH`` (lease answers and /metrics
        read it), forget tenants whose lanes are empty, and put back in the ready sets any pool tenant
        with work that a crash took out of them. Returns the counts. Run by one relay at a time."""
        tenants = sorted(t.decode() if isinstance(t, bytes) else t for t in await self.redis.smembers(keys.ACTIVE))
        counts = {name: 0 for lane in LANES for name in (lane, f"pool:{lane}", f"pending:{lane}")}
        counts["tenants"] = 0
        now = now_ms()
        for start in range(0, len(tenants), 500):
            chunk = tenants[start : start + 500]
            pipe = self.redis.pipeline(transaction=False)
            for tenant in chunk:
                pipe.get(keys.routing(tenant))
                for lane in LANES:
                    pipe.xlen(keys.stream(tenant, lane))
                    pipe.xinfo_groups(keys.stream(tenant, lane))
            replies = await pipe.execute(raise_on_error=False)
            fix = self.redis.pipeline(transaction=False)
            width = 1 + 2 * len(LANES)
            for n, tenant in enumerate(chunk):
                row = replies[n * width : (n + 1) * width]
                routing = int(row[0]) if isinstance(row[0], bytes | str) else -1
                total = 0
                for i, lane in enumerate(LANES):
                    length = row[1 + 2 * i] if isinstance(row[1 + 2 * i], int) else 0
                    groups = row[2 + 2 * i] if isinstance(row[2 + 2 * i], list) else []
                    pending = sum(int(g["pending"]) for g in groups if g["name"] in (keys.GROUP, keys.GROUP.encode()))
                    total += length
                    counts[lane] += length
                    counts[f"pending:{lane}"] += pending
                    if routing >= 0:
                        counts[f"pool:{lane}"] += length
                        if length > pending:
                            fix.zadd(keys.READY[lane], {tenant: now + routing}, nx=True)
                        elif length:
                            fix.zadd(keys.READY[lane], {tenant: now + min_idle_ms}, nx=True)
                if total == 0:
                    fix.srem(keys.ACTIVE, tenant)
                else:
                    counts["tenants"] += 1
            if len(fix):
                await fix.execute()
        # redis-py types mapping as Mapping[<union of field types>, ...]: no dict[str, int] fits its invariant key.
        await self.redis.hset(keys.DEPTH, mapping={**counts, "at": now})  # type: ignore[dict-item]
        return counts

    async def pool_depth(self) -> dict[Lane, int]:
        """Entries the shared pool may take, per lane, as of the relay's last census."""
        raw = await self.redis.hgetall(keys.DEPTH)
        got = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return {lane: got.get(f"pool:{lane}", 0) for lane in LANES}


async def wait_for_work(
    take: Callable[[], Awaitable[Take]], signals: WorkSignals, key: str, wait_s: float, poll_s: float = 5.0
) -> Take:
    """Take; while nothing comes, wait for a work signal under ``key`` (a tenant id, or
    ``core.wakeups.POOL``), the next due time, or ``poll_s``, until ``wait_s`` has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        with signals.waiting(key) as woken:
            got = await take()
            left = deadline - loop.time()
            if got.entries or left <= 0:
                return got
            pause = min(left, poll_s)
            if got.next_due_ms is not None:
                pause = min(pause, max(0.05, (got.next_due_ms - now_ms()) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), pause)
