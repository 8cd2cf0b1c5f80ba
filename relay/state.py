"""What the relay's request handlers share: settings, pool, Redis, caches, metrics; and who is calling.

relay = state(request)
tenant = await relay.tenant(request)     # Tenant, or Problem(401) (DatabaseUnavailable: the app answers 503)
worker = await relay.worker(request)     # WorkerIdentity, or Problem(401)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import redis.asyncio as aioredis
from starlette.requests import Request

from core.protocol import Lane
from core.queue import Queue
from core.settings import Settings
from core.streams import Streams
from core.wakeups import WorkSignals
from relay import tenants
from relay.auth import API_KEY_PREFIX, WORKER_PREFIX, CredentialCache, parse_secret, verify
from relay.blobs import Room
from relay.db import DatabaseUnavailable, system_tx
from relay.metrics import RelayMetrics
from relay.problems import Problem
from relay.ratelimit import RateLimiter

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    lane: Lane  # the tiers table allows only these (CHECK in 001_init.sql)
    daily_deep_reviews: int | None
    deep_min_moments: int
    rate_per_s: float | None
    burst: int
    max_k: int
    allow_private_hosts: tuple[str, ...]
    routing: str = "shared"
    shared_after_s: float | None = None
    allow_ports: tuple[int, ...] = ()
    vision_rate_per_s: float = 1.0  # the DeepStack API's own bucket (relay/vision.py)
    vision_burst: int = 10


@dataclass(frozen=True)
class WorkerIdentity:
    """The worker a token authenticates as (the engine that runs on the PC is core.worker.Worker)."""

    id: uuid.UUID
    dedicated_tenant: uuid.UUID | None

    @property
    def consumer(self) -> str:
        return str(self.id)


@dataclass
class RelayState:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    queue: Queue
    signals: WorkSignals
    limiter: RateLimiter
    metrics: RelayMetrics
    keys: CredentialCache = field(init=False)
    workers: CredentialCache = field(init=False)
    webhooks_due: asyncio.Event = field(default_factory=asyncio.Event)
    blob_room: Room = field(default_factory=Room)
    # Set when the server starts to shut down: long-polls and result streams end at once instead of
    # holding the shutdown until uvicorn's graceful timeout cancels them.
    draining: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.keys = CredentialCache(self.settings.key_cache_s)
        self.workers = CredentialCache(self.settings.key_cache_s)

    @property
    def streams(self) -> Streams:
        return self.queue.streams

    def routing_ms(self, tenant: Tenant) -> int:
        """The tenant's routing as the shared pool reads it (-1: never; else ms before it may)."""
        return tenants.routing_ms(tenant.routing, tenant.shared_after_s, self.settings.routing_shared_after_s)

    def webhook_wakeup(self) -> None:
        self.webhooks_due.set()

    async def unless_draining(self, awaitable: Awaitable[T], drained: T) -> T:
        """``await awaitable``, or ``drained`` as soon as the relay starts to drain (the awaitable is cancelled)."""
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.draining.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()  # draining, or this request itself was cancelled
        if task.cancelled() or not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return drained
        return task.result()

    def forget_credentials(self) -> None:
        """After an admin change (revocation, tier) this process stops trusting its cache at once."""
        self.keys.clear()
        self.workers.clear()

    async def tenant(self, request: Request) -> Tenant:
        return await self.tenant_for(request.headers.get("authorization"))

    async def tenant_for(self, credential: str | None) -> Tenant:
        """The tenant of an API key (``ik_...``, with or without ``Bearer``), or Problem(401)."""
        secret = parse_secret(API_KEY_PREFIX, credential)
        cached = self.keys.get(secret.id)
        if cached is None:
            async with system_tx(self.pool) as conn:
                row = await tenants.lookup_key(conn, secret.id)
            live = row is not None and row["revoked_at"] is None
            cached = (row["secret_sha256"] if row is not None and live else None, _tenant(row))
            self.keys.put(secret.id, cached, found=live)
        digest, tenant = cached
        if not verify(secret, digest):
            raise Problem(401, "unauthenticated", "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        return tenant

    async def worker(self, request: Request) -> WorkerIdentity:
        secret = parse_secret(WORKER_PREFIX, request.headers.get("authorization"))
        cached = self.workers.get(secret.id)
        if cached is None:
            try:
                async with system_tx(self.pool) as conn:
                    row = await tenants.lookup_worker(conn, secret.id)
            except DatabaseUnavailable:
                # While PostgreSQL is down a worker this process already knew keeps leasing, fetching
                # blobs and renewing its leases (Redis only); otherwise its held leases would lapse and be
                # reviewed twice once the database is back. A revocation waits for the database too.
                cached = self.workers.get(secret.id, stale=True)
                if cached is None:
                    raise
                return self._check_worker(secret, cached)
            if row is not None and row["revoked_at"] is None:
                ok, cached = True, (row["token_sha256"], WorkerIdentity(row["id"], row["dedicated_tenant"]))
            else:
                ok, cached = False, (None, None)
            self.workers.put(secret.id, cached, found=ok)
        return self._check_worker(secret, cached)

    @staticmethod
    def _check_worker(secret, cached: tuple) -> WorkerIdentity:
        digest, worker = cached
        if not verify(secret, digest):
            raise Problem(
                401, "unauthenticated", "unknown or revoked worker token", headers={"WWW-Authenticate": "Bearer"}
            )
        return worker


def _tenant(row: asyncpg.Record | None) -> Tenant | None:
    if row is None:
        return None
    return Tenant(
        row["tenant_id"],
        row["lane"],
        row["daily_deep_reviews"],
        row["deep_min_moments"],
        row["rate_per_s"],
        row["burst"],
        row["max_k"],
        tuple(row["allow_private_hosts"]),
        row["routing"],
        row["shared_after_s"],
        tuple(row["allow_ports"]),
        row["vision_rate_per_s"],
        row["vision_burst"],
    )


def state(request: Request) -> RelayState:
    return request.app.state.relay
