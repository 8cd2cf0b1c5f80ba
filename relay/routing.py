"""Which workers may review a tenant's events: the routing in effect, mirrored from PostgreSQL to Redis.

PostgreSQL holds each tenant's choice (``own``, ``shared``, ``own-then-shared``, or automatic: ``own``
once it has a dedicated worker, else ``shared``; relay/tenants.py). The shared pool's take reads a
tenant's routing from Redis (core/keys.routing), so every change is pushed there at once — an admin
change, a tenant's first dedicated worker — and the reconciler writes it again for every tenant with
waiting events, should Redis have lost it.

    await push_routing(relay, [tenant_id])       # after a change in PostgreSQL
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import keys
from core.queue import Queue
from relay import tenants
from relay.db import system_tx

if TYPE_CHECKING:
    from relay.state import RelayState

log = logging.getLogger(__name__)


async def push_routing(relay: RelayState, tenant_ids: list) -> dict:
    """Mirror the routing in effect for these tenants into Redis, where the pool's take reads it, and let
    their waiting work be looked at again. Returns {tenant id: (routing, shared_after_s)}."""
    async with system_tx(relay.pool) as conn:
        effective = await tenants.effective_routing(conn, tenant_ids)
    after = relay.settings.routing_shared_after_s
    try:
        await sync_routing(relay.redis, {str(t): tenants.routing_ms(r, a, after) for t, (r, a) in effective.items()})
    except (RedisError, OSError) as exc:
        # Stored in PostgreSQL; the reconciler writes it into Redis on its next pass.
        log.warning("routing of %d tenants not pushed to Redis yet: %s", len(effective), exc)
    return effective


async def sync_routing(redis: aioredis.Redis, routing_ms: dict[str, int]) -> int:
    """Write these tenants' routing into Redis and make them active; where it changed (or was missing),
    let their waiting work be looked at again: by the pool when it now may, by their own workers always.
    Returns how many changed."""
    if not routing_ms:
        return 0
    tenant_ids = list(routing_ms)
    before = await redis.mget([keys.routing(t) for t in tenant_ids])
    pipe = redis.pipeline(transaction=False)
    for tenant in tenant_ids:
        pipe.set(keys.routing(tenant), routing_ms[tenant])
        pipe.sadd(keys.ACTIVE, tenant)
    await pipe.execute()
    changed = [t for t, old in zip(tenant_ids, before, strict=True) if old is None or int(old) != routing_ms[t]]
    queue = Queue(redis)
    for tenant in changed:
        await queue.remind(tenant, routing_ms[tenant])
    return len(changed)


async def sync_active(relay: RelayState) -> int:
    """The reconciler's pass: the routing of every tenant with entries in its lanes, from PostgreSQL."""
    active = [t.decode() if isinstance(t, bytes) else t for t in await relay.redis.smembers(keys.ACTIVE)]
    ids = []
    for tenant in active:
        try:
            ids.append(uuid.UUID(tenant))
        except ValueError:
            continue
    if not ids:
        return 0
    async with system_tx(relay.pool) as conn:
        effective = await tenants.effective_routing(conn, ids)
    after = relay.settings.routing_shared_after_s
    return await sync_routing(relay.redis, {str(t): tenants.routing_ms(r, a, after) for t, (r, a) in effective.items()})
