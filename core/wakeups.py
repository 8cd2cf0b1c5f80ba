"""Wake the long-polls that new work may be for: one pub/sub subscription per process.

Every enqueue publishes ``<tenant>|<pool due ms or ->`` on ``keys.WORK_CHANNEL`` (core/pool.py). Each
relay (and each LAN worker) subscribes once and wakes, per message, one long-poll waiting for that
tenant's own work and, when the pool may take it (now, or at its due time), one long-poll of the shared
pool. No long-poll holds a Redis connection while it waits, so a thousand idle workers cost a thousand
sleeping coroutines, not a thousand blocked clients. A lost message (a Redis restart) costs at most one
poll interval: waiters also look again on their own.

    signals = WorkSignals(redis)
    task = asyncio.create_task(signals.run())
    with signals.waiting(own_tenant or POOL) as woken:
        ...take...; await asyncio.wait_for(woken.wait(), timeout)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import keys

log = logging.getLogger(__name__)

POOL = "*pool*"  # the waiting key of shared workers (tenant ids are UUIDs, so it cannot clash)


class WorkSignals:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._waiters: dict[str, deque[asyncio.Event]] = {}
        self.connected = asyncio.Event()

    @contextlib.contextmanager
    def waiting(self, key: str) -> Iterator[asyncio.Event]:
        """Register before looking for work, so a signal that comes while looking is not missed."""
        event = asyncio.Event()
        queue = self._waiters.setdefault(key, deque())
        queue.append(event)
        try:
            yield event
        finally:
            with contextlib.suppress(ValueError):
                queue.remove(event)
            if not queue:
                self._waiters.pop(key, None)

    def wake(self, key: str) -> bool:
        """Wake the longest-waiting poll registered under ``key``; False when none waits."""
        queue = self._waiters.get(key)
        while queue:
            event = queue.popleft()
            if not event.is_set():
                event.set()
                return True
        return False

    def notify(self, tenant: str, pool_due_ms: int | None) -> None:
        self.wake(tenant)
        if pool_due_ms is None:
            return
        delay = (pool_due_ms - time.time() * 1000) / 1000
        if delay <= 0:
            self.wake(POOL)
        else:
            asyncio.get_running_loop().call_later(delay, self.wake, POOL)

    def on_message(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        tenant, _, due = text.partition("|")
        try:
            self.notify(tenant, None if due in ("", "-") else int(due))
        except ValueError:
            log.warning("ignored a malformed work signal %r", text[:100])

    async def run(self, retry_s: float = 1.0) -> None:
        """Listen until cancelled; survives Redis restarts (waiters poll meanwhile)."""
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(keys.WORK_CHANNEL)
                self.connected.set()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30.0)
                    if msg is not None and msg.get("type") == "message":
                        self.on_message(msg["data"])
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("work signals lost (%s); long-polls look on their own until they are back", exc)
                await asyncio.sleep(retry_s)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await asyncio.shield(pubsub.aclose())
