"""PostgreSQL is the truth, Redis the transport: the reconciler makes the two agree.

Each pass (one relay at a time, under a Redis lock):
- an entry pending past the lease deadline that was delivered ``max_deliveries`` times goes to its
  tenant's dead-letter stream and its event is marked failed (the lease path does the same when it
  reclaims);
- an event still queued after ``requeue_after_s`` whose entry is in none of its tenant's lanes (Redis
  lost it in a restart, or it was never added) is added again. A duplicate entry is harmless: results
  are keyed by event id. The routing of every tenant with such events is written to Redis again, and
  the tenant is put back where the pool looks, so nothing waits forever on a lost key.

The census (every ``census_interval_s``, also one relay at a time) counts what waits for lease answers
and /metrics, and repairs the pool's ready sets (core/queue.py: Queue.census).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from core import keys
from core.protocol import LANES
from core.streams import Entry
from relay import blobs, legacy, routing, tenants
from relay.db import DatabaseUnavailable, system_tx

if TYPE_CHECKING:
    from relay.state import RelayState

log = logging.getLogger(__name__)

CONSUMER = "relay-reconciler"


async def dead_letter(relay: RelayState, entry: Entry, reason: str, consumer: str, min_deliveries: int = 0) -> bool:
    """Mark the event failed, then move its entry to the dead-letter stream if ``consumer`` still holds it.

    PostgreSQL first: when it is down this raises DatabaseUnavailable and nothing moves (the entry is
    tried again when it is next reclaimed). Moved first, a failed update would leave the event queued
    and the reconciler would queue the poison again, for another N deliveries. Returns whether it moved.
    """
    event_id = _uuid(entry.event_id)
    if event_id is not None:
        async with system_tx(relay.pool) as conn:
            await conn.execute(
                "UPDATE events SET status = 'failed', error = $2, done_at = now() WHERE id = $1 AND status = 'queued'",
                event_id,
                reason[:500],
            )
            # A failed event is never reviewed again: its uploaded images go with it.
            await conn.execute("DELETE FROM blobs WHERE event_id = $1", event_id)
    moved = await relay.streams.dead_letter(entry, reason, consumer, min_deliveries)
    if moved:
        relay.metrics.dead.inc()
    return moved


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # a malformed entry: nothing in PostgreSQL to mark


async def _active_tenants(relay: RelayState) -> list[str]:
    return sorted(t.decode() if isinstance(t, bytes) else t for t in await relay.redis.smembers(keys.ACTIVE))


async def sweep_dead(relay: RelayState) -> int:
    settings = relay.settings
    idle_ms = int(settings.lease_idle_s * 1000)
    moved = 0
    for tenant in await _active_tenants(relay):
        for lane in LANES:
            for row in await relay.streams.pending(tenant, lane, count=500, min_idle_ms=idle_ms):
                if row["times_delivered"] < settings.max_deliveries:
                    continue
                # XCLAIM with the idle bound: of several relays, exactly one takes it.
                entry = await relay.streams.claim(tenant, lane, row["message_id"], CONSUMER, idle_ms)
                reason = f"delivered {row['times_delivered']} times without a result"
                if entry is not None and await dead_letter(relay, entry, reason, CONSUMER):
                    moved += 1
    return moved


REQUEUE_SQL = """
SELECT e.id, e.tenant_id, e.lane, e.camera, e.hint, e.created_at, n.allow_private_hosts, n.allow_ports,
       array_agg(m.url ORDER BY m.idx) AS urls, array_agg(m.blob ORDER BY m.idx) AS blobs
FROM events e JOIN tenants n ON n.id = e.tenant_id JOIN moments m ON m.event_id = e.id
WHERE e.status = 'queued' AND e.queued_at < now() - make_interval(secs => $1)
GROUP BY e.id, n.allow_private_hosts, n.allow_ports
ORDER BY e.queued_at LIMIT $2
"""


def _entry_json(row) -> str:
    moments = [
        {"index": i, "url": u} if u is not None else {"index": i, "blob": b}
        for i, (u, b) in enumerate(zip(row["urls"], row["blobs"], strict=True))
    ]
    event = {
        "event_id": str(row["id"]),
        "tenant_id": str(row["tenant_id"]),
        "lane": row["lane"],
        "camera": row["camera"],
        "hint": row["hint"],
        "created_at": row["created_at"].isoformat(),
        "moments": moments,
        "allow_private_hosts": list(row["allow_private_hosts"]),
    }
    if row["allow_ports"]:
        event["allow_ports"] = list(row["allow_ports"])  # left out when empty, as in relay.events.entry_json
    return json.dumps(event)


async def requeue_lost(relay: RelayState, limit: int = 1000) -> int:
    async with system_tx(relay.pool) as conn:
        rows = await conn.fetch(REQUEUE_SQL, relay.settings.requeue_after_s, limit)
        chosen = await tenants.effective_routing(conn, list({r["tenant_id"] for r in rows})) if rows else {}
    if not rows:
        return 0
    routing_ms = {
        str(t): tenants.routing_ms(r, after, relay.settings.routing_shared_after_s) for t, (r, after) in chosen.items()
    }
    await routing.sync_routing(relay.redis, routing_ms)
    present: set[str] = set()
    for tenant, lane in {(str(r["tenant_id"]), r["lane"]) for r in rows}:
        present |= await relay.streams.queued_event_ids(tenant, lane)
    touched = [row["id"] for row in rows]
    missing = [row["id"] for row in rows if str(row["id"]) not in present]
    still: set = set()
    if missing:
        # A result may have landed (and its entry been acked and deleted) since the first query: such
        # an event is missing from the lanes for the right reason. Queue only those still queued now.
        async with system_tx(relay.pool) as conn:
            still = {
                r["id"]
                for r in await conn.fetch("SELECT id FROM events WHERE id = ANY($1) AND status = 'queued'", missing)
            }
    requeued = []
    for row in rows:
        if str(row["id"]) in present or row["id"] not in still:
            continue
        tenant = str(row["tenant_id"])
        await relay.queue.enqueue(tenant, row["lane"], str(row["id"]), _entry_json(row), routing_ms.get(tenant, -1))
        requeued.append(row["id"])
    async with system_tx(relay.pool) as conn:
        # Checked again only after another deadline; a re-queue is counted on the event.
        await conn.execute(
            "UPDATE events SET queued_at = now(), requeues = requeues + (id = ANY($2))::int "
            "WHERE id = ANY($1) AND status = 'queued'",
            touched,
            requeued,
        )
    if requeued:
        relay.metrics.requeued.inc(len(requeued))
        log.warning("re-queued %d events whose stream entries were missing", len(requeued))
    return len(requeued)


async def reconcile_once(relay: RelayState) -> dict[str, int]:
    """One pass; returns {"dead": n, "requeued": n}. Skips (zeros) when another relay holds the lock."""
    got = await relay.redis.set(keys.RECONCILER_LOCK, "1", nx=True, ex=max(5, int(relay.settings.reconcile_interval_s)))
    if not got:
        return {"dead": 0, "requeued": 0}
    try:
        await legacy.move_lanes(relay)
        await routing.sync_active(relay)
        counts = {"dead": await sweep_dead(relay), "requeued": await requeue_lost(relay)}
        await blobs.sweep(relay)
        return counts
    finally:
        await relay.redis.delete(keys.RECONCILER_LOCK)


async def run(relay: RelayState) -> None:
    """The background loop, started in the lifespan; survives Redis and PostgreSQL outages."""
    while True:
        await asyncio.sleep(relay.settings.reconcile_interval_s)
        try:
            await reconcile_once(relay)
        except (RedisError, OSError, DatabaseUnavailable) as exc:
            log.warning("reconciler pass skipped: %s", exc)


async def census_once(relay: RelayState) -> dict[str, int] | None:
    """One census, unless another relay took this round (None)."""
    interval = relay.settings.census_interval_s
    if not await relay.redis.set(keys.CENSUS_LOCK, "1", nx=True, px=max(100, int(interval * 900))):
        return None
    return await relay.queue.census(int(relay.settings.lease_idle_s * 1000))


async def run_census(relay: RelayState) -> None:
    while True:
        try:
            await census_once(relay)
        except (RedisError, OSError) as exc:
            log.warning("census skipped: %s", exc)
        await asyncio.sleep(relay.settings.census_interval_s)
