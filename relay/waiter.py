"""Wake a request up when its event's result lands: one pattern subscription per relay process.

    waiter = ResultWaiter(redis)                 # created in the app's lifespan, closed with it
    done = await waiter.register(event_id)       # a future, set when insane:done:<tenant> names the id
    ...queue the event..., await done (with a deadline), then read the result from PostgreSQL
    waiter.forget(event_id)
    await waiter.aclose()

Whichever relay stores a result publishes its event id on ``insane:done:<tenant>`` (relay/workers.py);
``PSUBSCRIBE insane:done:*`` on one connection serves every waiting request of this process, however
many, where a subscription per request would hold a Redis connection each. A message can be lost (the
connection drops): callers also look at PostgreSQL now and then, so a lost message costs a poll
interval, never the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import keys

log = logging.getLogger(__name__)

RETRY_S = 1.0


class ResultWaiter:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._futures: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()
        self._closed = False

    async def register(self, event_id: str, ready_s: float = 1.0) -> asyncio.Future:
        """A future for ``event_id``; waits (up to ``ready_s``) until the subscription is live, so a result
        published after this returns is not missed."""
        if self._closed:
            raise RuntimeError("the result waiter is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="result-waiter")
        future = asyncio.get_running_loop().create_future()
        self._futures[event_id] = future
        if not self._subscribed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), ready_s)
        return future

    def forget(self, event_id: str) -> None:
        future = self._futures.pop(event_id, None)
        if future is not None and not future.done():
            future.cancel()

    @property
    def waiting(self) -> int:
        return len(self._futures)

    async def _listen(self) -> None:
        while not self._closed:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(keys.DONE_PATTERN)
                self._subscribed.set()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg is not None:
                        self._deliver(msg.get("data"))
            except (RedisError, OSError) as exc:
                log.warning("result notifications interrupted (%s); requests poll PostgreSQL meanwhile", exc)
            finally:
                self._subscribed.clear()
                await asyncio.shield(pubsub.aclose())
            await asyncio.sleep(RETRY_S)

    def _deliver(self, data: object) -> None:
        event_id = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        future = self._futures.get(event_id)
        if future is not None and not future.done():
            future.set_result(None)

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        for future in self._futures.values():
            if not future.done():
                future.cancel()
        self._futures.clear()
