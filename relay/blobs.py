"""Uploaded JPEGs: durable in PostgreSQL with their event, cached in Redis for the workers.

A multipart event's images are written in the same statement as the event (``accept_event``), so the
202 comes only after the bytes are on disk, in the store every relay behind a load balancer shares.
Redis holds a copy with a TTL (what workers usually get); when Redis has lost it (a crash, a restart
without AOF, an eviction), the relay serves the image from PostgreSQL and caches it again.

    data = await load(relay, tenant_id, blob_id)      # Redis, else PostgreSQL (re-cached); None: gone
    await check_room(relay)                           # Problem(503 overloaded) when the store is full

They are removed when their event's result lands (at once after a full review; after ``blob_ttl_s``
when the review was shrunk and a back-fill may still want them) or when the event fails.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from relay.db import DatabaseUnavailable, system_tx
from relay.problems import Problem

if TYPE_CHECKING:
    from relay.state import RelayState

log = logging.getLogger(__name__)

ROOM_CHECK_S = 2.0  # how long the store's measured size is trusted
SIZE_SQL = "SELECT pg_total_relation_size('blobs')"
LOAD_SQL = "SELECT tenant_id, event_id, data FROM blobs WHERE id = $1"
OWNER_SQL = "SELECT tenant_id, event_id FROM blobs WHERE id = $1"

# The reconciler's sweep: images of events that failed, or whose result is older than the grace.
SWEEP_SQL = """
DELETE FROM blobs b USING events e
WHERE b.event_id = e.id
  AND (e.status = 'failed' OR (e.status = 'done' AND e.done_at < now() - make_interval(secs => $1)))
"""


@dataclass
class Room:
    """The blob store's size as this relay process last measured it (every few seconds, not per upload)."""

    bytes: int = 0
    at: float = 0.0


async def check_room(relay: RelayState) -> None:
    """Refuse new uploads (503 overloaded) while the store holds more than ``blob_store_max_mb``."""
    room = relay.blob_room
    if time.monotonic() - room.at > ROOM_CHECK_S:
        try:
            async with system_tx(relay.pool) as conn:
                room.bytes = int(await conn.fetchval(SIZE_SQL))
        except DatabaseUnavailable:
            return  # the insert will say so
        room.at = time.monotonic()
    limit = relay.settings.blob_store_max_mb * 1_000_000
    if room.bytes >= limit:
        raise Problem(
            503,
            "overloaded",
            f"the relay's upload store is full ({room.bytes // 1_000_000} MB of {limit // 1_000_000} MB); "
            "retry later, or send moments as URLs",
            retry_after=60,
        )


async def load(relay: RelayState, tenant_id: str, blob_id: str) -> bytes | None:
    """The image: from the Redis cache, else from PostgreSQL (and cached again). None: not stored."""
    try:
        data = await relay.streams.get_blob(tenant_id, blob_id)
    except (RedisError, OSError) as exc:
        log.warning("blob cache unreachable (%s); reading blob %s from the database", exc, blob_id)
        data = None
    if data is not None:
        return data
    async with system_tx(relay.pool) as conn:
        row = await conn.fetchrow(LOAD_SQL, blob_id)
    if row is None or str(row["tenant_id"]) != tenant_id:
        return None
    try:
        pipe = relay.redis.pipeline(transaction=False)
        relay.streams.put_blobs_on(pipe, tenant_id, {blob_id: row["data"]}, relay.settings.blob_ttl_s, nx=True)
        await pipe.execute()
    except (RedisError, OSError):
        pass  # served from the database; the cache fills next time
    log.info("blob %s was not in the cache: served from the database", blob_id)
    return bytes(row["data"])


async def owner(relay: RelayState, blob_id: str) -> tuple[str, uuid.UUID] | None:
    """(tenant id, event id) of a stored blob, or None."""
    async with system_tx(relay.pool) as conn:
        row = await conn.fetchrow(OWNER_SQL, blob_id)
    return (str(row["tenant_id"]), row["event_id"]) if row else None


async def sweep(relay: RelayState) -> int:
    """Remove the images no review will need again; returns how many."""
    async with system_tx(relay.pool) as conn:
        done = await conn.execute(SWEEP_SQL, float(relay.settings.blob_ttl_s))
    removed = int(done.split()[-1])
    if removed:
        log.info("removed %d uploaded images no review needs any more", removed)
    return removed
