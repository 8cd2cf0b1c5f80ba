"""Leases straight from Redis Streams, for workers inside the operator's own network.

Leases and uploaded blobs come from Redis (under the least-privilege ACL user of
:func:`core.streams.acl_rules`); results and heartbeats still go to the relay's HTTP API, so only
the relay acks an entry, after its result is durable.

    source = RedisLeaseSource("redis://lan-worker:pw@10.0.0.5:6379/0", relay_url, token)

The consumer name is the worker's id (from its token), as on the relay's own lease path: the relay
renews a lease (heartbeat), dead-letters an entry (past ``max_deliveries``, or malformed) and takes a
result only for the consumer that holds it or was given it, and this Redis user can do none of that
itself. A worker dedicated to a tenant (the relay says so) takes only that tenant's work, under an ACL
that covers only that tenant's keys (``insane relay worker-acl NAME --tenant T``); a shared LAN worker
takes the pool's fair share, as the relay's own lease path does (core/queue.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from core.protocol import EventResult, Heartbeat, HeartbeatResponse, LeasedEvent, LeaseResponse, ResultsResponse
from core.queue import Queue, Take, wait_for_work
from core.redisconn import redis_client
from core.streams import StreamError
from core.wakeups import POOL, WorkSignals
from core.worker.http_source import HttpLeaseSource
from core.worker.ports import RelayUnavailable, RequestRejected, TokenRejected

log = logging.getLogger(__name__)


def worker_id(token: str) -> str | None:
    """The worker id inside a token ``iw_<id>_<secret>`` (the relay's consumer name for it)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "iw":
        return None
    try:
        return str(uuid.UUID(hex=parts[1]))
    except ValueError:
        return None


class RedisLeaseSource:
    def __init__(
        self,
        redis_url: str,
        relay_url: str,
        token: str,
        *,
        min_idle_s: float = 60.0,
        max_deliveries: int = 5,
        http: HttpLeaseSource | None = None,
    ) -> None:
        consumer = worker_id(token)
        if consumer is None:
            # The relay takes a result only from the worker an event was delivered to, and it knows a LAN
            # worker's deliveries by this consumer name: it must be the id inside the token.
            raise TokenRejected("a LAN worker needs its worker token (iw_<id>_<secret>) to lease from Redis")
        self.consumer = consumer
        self.min_idle_ms = int(min_idle_s * 1000)
        self.max_deliveries = max_deliveries
        self._redis = redis_client(redis_url)
        self._queue = Queue(self._redis)
        self._signals = WorkSignals(self._redis)
        self._listener: asyncio.Task | None = None
        self._http = http or HttpLeaseSource(relay_url, token)
        self._tenant: str | None = None  # the tenant this worker is dedicated to (learnt from the relay)
        self._known = False

    @classmethod
    def from_settings(cls, settings, token: str) -> RedisLeaseSource:
        return cls(
            settings.redis_url,
            settings.relay_url,
            token,
            min_idle_s=settings.lease_idle_s,
            max_deliveries=settings.max_deliveries,
        )

    async def _mode(self) -> None:
        """Ask the relay once whether this worker is dedicated to a tenant: it then takes only that
        tenant's work (its ACL covers nothing else), else the shared pool's."""
        if self._known:
            return
        beat = await self._http.heartbeat(Heartbeat())
        self._tenant = str(beat.dedicated_tenant) if beat.dedicated_tenant else None
        self._known = True
        self._listener = asyncio.get_running_loop().create_task(self._signals.run(), name="work-signals")

    async def _take(self, max_events: int) -> Take:
        if self._tenant is not None:
            return await self._queue.take_own(self._tenant, self.consumer, max_events, self.min_idle_ms)
        return await self._queue.take_shared(self.consumer, max_events, self.min_idle_ms)

    async def lease(self, max_events: int, wait_s: float) -> LeaseResponse:
        await self._mode()
        try:
            got = await wait_for_work(
                lambda: self._take(max_events), self._signals, self._tenant or POOL, wait_s, poll_s=1.0
            )
            entries = got.entries
            depth = got.depth if self._tenant is not None else await self._queue.pool_depth()
        except (AuthenticationError, NoPermissionError) as exc:
            raise TokenRejected(f"Redis refused this worker: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise RelayUnavailable(f"Redis unreachable: {exc}") from exc
        events: dict[str, LeasedEvent] = {}
        refused: dict[str, str] = {}
        for entry in entries:
            try:
                leased = entry.leased()
            except StreamError as exc:
                log.error("a malformed stream entry: %s", exc)
                refused[entry.lease_id] = "malformed"
                continue
            events[entry.lease_id] = leased
            if entry.deliveries > self.max_deliveries:
                refused[entry.lease_id] = f"past {self.max_deliveries} deliveries"
        if refused:
            await self._dead_letter(refused, events)
        return LeaseResponse(events=list(events.values()), queue_depth=depth)

    async def _dead_letter(self, refused: dict[str, str], events: dict[str, LeasedEvent]) -> None:
        """Entries this worker will not review go to the relay's dead-letter route. Those it does not move
        (its limit is higher) are reviewed; those it cannot take now stay pending and come back later."""
        try:
            moved = set(await self._http.dead_letter(list(refused), "; ".join(sorted(set(refused.values())))))
        except (RelayUnavailable, TokenRejected, RequestRejected) as exc:
            log.warning("could not dead-letter %d entries now: %s", len(refused), exc)
            moved = set(refused)  # not reviewed here; reclaimed and reported again after the deadline
        for lease_id in refused:
            if lease_id in moved or lease_id not in events:
                events.pop(lease_id, None)

    async def fetch_blob(self, blob: str, event: LeasedEvent) -> bytes:
        """From the Redis cache; when Redis no longer has it, from the relay (which keeps every upload
        durably until its event is finished)."""
        try:
            data = await self._queue.streams.get_blob(str(event.tenant_id), blob)
        except (RedisError, OSError) as exc:
            raise RelayUnavailable(f"Redis unreachable: {exc}") from exc
        if data is None:
            return await self._http.fetch_blob(blob, event)
        return data

    async def post_results(self, results: Sequence[EventResult]) -> ResultsResponse:
        return await self._http.post_results(results)

    async def heartbeat(self, beat: Heartbeat) -> HeartbeatResponse:
        return await self._http.heartbeat(beat)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        try:
            await self._http.aclose()
        finally:
            await self._redis.aclose()
