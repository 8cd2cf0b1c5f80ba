"""Leases straight from Redis Streams, for workers inside the operator's own network.

Leases and uploaded blobs come from Redis (under the least-privilege ACL user of
:func:`core.streams.acl_rules`); results and heartbeats still go to the relay's HTTP API, so only
the relay acks an entry, after its result is durable.

    source = RedisLeaseSource("redis://lan-worker:pw@10.0.0.5:6379/0", relay_url, token, consumer="pc-1")
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from core.protocol import EventResult, Heartbeat, HeartbeatResponse, LeasedEvent, LeaseResponse, ResultsResponse
from core.redisconn import redis_client
from core.streams import StreamError, Streams
from core.worker.http_source import HttpLeaseSource
from core.worker.ports import RelayUnavailable, RequestRejected, TokenRejected

log = logging.getLogger(__name__)


class RedisLeaseSource:
    def __init__(
        self,
        redis_url: str,
        relay_url: str,
        token: str,
        *,
        consumer: str | None = None,
        min_idle_s: float = 60.0,
        http: HttpLeaseSource | None = None,
    ) -> None:
        self.consumer = consumer or f"lan-{socket.gethostname()}"
        self.min_idle_ms = int(min_idle_s * 1000)
        self._redis = redis_client(redis_url)
        self._streams = Streams(self._redis)
        self._http = http or HttpLeaseSource(relay_url, token)

    @classmethod
    def from_settings(cls, settings, token: str) -> RedisLeaseSource:
        return cls(settings.redis_url, settings.relay_url, token, min_idle_s=settings.lease_idle_s)

    async def lease(self, max_events: int, wait_s: float) -> LeaseResponse:
        try:
            entries = await self._streams.lease(self.consumer, max_events, int(wait_s * 1000), self.min_idle_ms)
            depth = await self._streams.depth()
        except (AuthenticationError, NoPermissionError) as exc:
            raise TokenRejected(f"Redis refused this worker: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise RelayUnavailable(f"Redis unreachable: {exc}") from exc
        events = []
        for entry in entries:
            try:
                events.append(entry.leased())
            except StreamError as exc:
                # Left pending: the relay's own lease path dead-letters it once it is reclaimed there.
                log.error("skipping a malformed stream entry: %s", exc)
        return LeaseResponse(events=events, queue_depth=depth)

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
