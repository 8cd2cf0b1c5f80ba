"""Posts results to the relay, in batches, and keeps every result until the relay has stored it.

While the relay is unreachable the poster retries with backoff and jitter; the lease is acked by the
relay only after the result is durable, so a result is never lost by posting it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from core.protocol import EventResult
from core.worker.backoff import Backoff
from core.worker.config import WorkerConfig
from core.worker.ports import LeaseSource, RelayUnavailable, RequestRejected, TokenRejected

log = logging.getLogger(__name__)

MAX_POST = 64  # ResultsPost.results max_length


class Poster:
    def __init__(
        self,
        source: LeaseSource,
        config: WorkerConfig,
        on_posted: Callable[[EventResult, Any, bool], None],
        on_error: Callable[[str, str | None], None],
    ) -> None:
        self.source = source
        self.on_posted = on_posted
        self.on_error = on_error
        self._backoff = Backoff(config.retry_min_s, config.retry_max_s)
        self._queue: deque[tuple[EventResult, Any]] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def lease_ids(self) -> list[str]:
        """The leases of the results not yet stored (the worker keeps renewing them)."""
        return [r.lease_id for r, _ in self._queue if r.lease_id is not None]

    def put(self, result: EventResult, context: Any = None) -> None:
        self._queue.append((result, context))
        self._idle.clear()
        self._ready.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="results")

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            batch = [self._queue[i] for i in range(min(MAX_POST, len(self._queue)))]
            await self._post(batch)
            for _ in batch:
                self._queue.popleft()

    async def _post(self, batch: list[tuple[EventResult, Any]]) -> None:
        while True:
            try:
                resp = await self.source.post_results([r for r, _ in batch])
            except (RelayUnavailable, TokenRejected) as exc:
                self.on_error("results", f"results not delivered yet ({len(self._queue)} waiting): {exc}")
                await asyncio.sleep(self._backoff.next(getattr(exc, "retry_after", None)))
                continue
            except RequestRejected as exc:
                if len(batch) > 1:
                    # One bad result must not keep the others from being stored.
                    for item in batch:
                        await self._post([item])
                    return
                result = batch[0][0]
                log.error("the relay refused the result of event %s for good: %s", result.event_id, exc)
                self.on_error("results", None)
                return
            self._backoff.reset()
            self.on_error("results", None)
            if resp.duplicates:
                log.info("%d results were already stored (re-delivery)", len(resp.duplicates))
            for event_id in resp.refused:
                # Not ours to write (a lease that moved on before this worker ever held it, or an event
                # that is gone): retrying would be refused again.
                log.warning("the relay did not take the result of event %s: not delivered to this worker", event_id)
            duplicates = set(resp.duplicates)
            for result, context in batch:
                self.on_posted(result, context, result.event_id in duplicates)
            return

    async def close(self, drain: bool, wait_s: float) -> None:
        if drain and self._queue:
            try:
                await asyncio.wait_for(self._idle.wait(), wait_s)
            except TimeoutError:
                log.warning("stopping with %d results not delivered; the relay will re-deliver them", self.pending)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
