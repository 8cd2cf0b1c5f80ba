"""Leases straight from Redis Streams, for workers inside the operator's own network.

Leases and uploaded blobs come from Redis (under the least-privilege ACL user of
:func:`core.streams.acl_rules`); results and heartbeats still go to the relay's HTTP API, so only
the relay acks an entry, after its result is durable.

    source = RedisLeaseSource("redis://lan-worker:pw@10.0.0.5:6379/0", relay_url, token)

The consumer name is the worker's id (from its token), as on the relay's own lease path: the relay
renews a lease (heartbeat) or dead-letters an entry (past ``max_deliveries``, or malformed) only for
the consumer that holds it, and this Redis user can do neither itself.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from core.protocol import EventResult, Heartbeat, HeartbeatResponse, LeasedEvent, LeaseResponse, ResultsResponse
from core.redisconn import redis_client
from core.streams import StreamError, Streams
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
        self._streams = Streams(self._redis)
        self._http = http or HttpLeaseSource(relay_url, token)

    @classmethod
    def from_settings(cls, settings, token: str) -> RedisLeaseSource:
        return cls(
            settings.redis_url,
            settings.relay_url,
            token,
            min_idle_s=settings.lease_idle_s,
            max_deliveries=settings.max_deliveries,
        )

    async def lease(self, max_events: int, wait_s: float) -> LeaseResponse:
        try:
            entries = await self._streams.lease(self.consumer, max_events, int(wait_s * 1000), self.min_idle_ms)
            depth = await self._streams.depth()
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
        try:
            data = await self._streams.get_blob(blob)
        except (RedisError, OSError) as exc:
            raise RelayUnavailable(f"Redis unreachable: {exc}") from exc
        if data is None:
            raise RequestRejected(f"blob {blob} has expired or never existed", 404)
        return data

    async def post_results(self, results: Sequence[EventResult]) -> ResultsResponse:
        return await self._http.post_results(results)

    async def heartbeat(self, beat: Heartbeat) -> HeartbeatResponse:
        return await self._http.heartbeat(beat)

    async def aclose(self) -> None:
        try:
            await self._http.aclose()
        finally:
            await self._redis.aclose()
