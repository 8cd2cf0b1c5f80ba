"""Relays before per-tenant routing kept every tenant's events in two global lanes: move what they left.

When a relay of this version starts (and on each reconciler pass, should Redis or PostgreSQL have been
down at start), under a lock: each entry of the old lanes is added to its tenant's lane with the
tenant's routing, the workers its pending entries were delivered to are recorded (so the results they
are still reviewing are taken), and the old lane streams are deleted. Nothing queued before the
upgrade is lost; an entry that was in flight is delivered again (results stay one per event). The old
dead-letter stream (``insane:{lane}:dead``) is left as it is, for the record.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING

from redis.exceptions import RedisError, ResponseError

from core import keys
from core.protocol import LANES, Lane
from core.streams import text
from relay import tenants
from relay.db import DatabaseUnavailable, system_tx

if TYPE_CHECKING:
    from relay.state import RelayState

log = logging.getLogger(__name__)

PAGE = 1000


async def _pending(relay: RelayState, key: str) -> dict[str, str]:
    """{entry id: consumer} of the old lane's pending entries."""
    out: dict[str, str] = {}
    start = "-"
    while True:
        try:
            rows = await relay.redis.xpending_range(key, keys.GROUP, min=start, max="+", count=PAGE)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return out
            raise
        for row in rows:
            out[text(row["message_id"])] = text(row["consumer"])
        if len(rows) < PAGE:
            return out
        start = "(" + text(rows[-1]["message_id"])


async def _move_lane(relay: RelayState, lane: Lane) -> int:
    key = keys.legacy_stream(lane)
    pending = await _pending(relay, key)
    rows: list[tuple[bytes | str | None, dict[bytes | str, bytes | str] | None]] = []
    start = "-"
    while True:
        page = await relay.redis.xrange(key, min=start, max="+", count=PAGE) or []
        rows += page
        if len(page) < PAGE:
            break
        start = "(" + text(page[-1][0])
    found: list[tuple[str, str, str, str | None]] = []  # (tenant, event id, event json, consumer)
    for entry_id, fields in rows:
        flat = {text(k): text(v) for k, v in (fields or {}).items()}
        try:
            tenant = str(uuid.UUID(json.loads(flat["event"])["tenant_id"]))
        except (KeyError, ValueError, TypeError):
            log.error("old lane %s: entry %s is malformed; left out of the move", lane, text(entry_id))
            continue
        found.append((tenant, flat.get("id", ""), flat["event"], pending.get(text(entry_id))))
    async with system_tx(relay.pool) as conn:
        routing = await tenants.effective_routing(conn, list({uuid.UUID(t) for t, *_ in found}))
    after = relay.settings.routing_shared_after_s
    for tenant, event_id, event_json, consumer in found:
        chosen = routing.get(uuid.UUID(tenant))
        if chosen is None:
            continue  # the tenant is gone, and its events with it
        await relay.queue.enqueue(tenant, lane, event_id, event_json, tenants.routing_ms(*chosen, after))
        if consumer is not None:
            await relay.redis.sadd(keys.delivered(event_id), consumer)
            await relay.redis.expire(keys.delivered(event_id), relay.settings.delivery_record_s)
    await relay.redis.delete(key)
    log.warning("moved %d events from the old global %s lane into their tenants' lanes", len(found), lane)
    return len(found)


async def move_lanes(relay: RelayState) -> int:
    """Move the old lanes' entries, once; returns how many. Another relay holding the lock does it."""
    old = [keys.legacy_stream(lane) for lane in LANES]
    if not await relay.redis.exists(*old):
        return 0
    if not await relay.redis.set(keys.LEGACY_LOCK, "1", nx=True, ex=300):
        return 0
    try:
        return sum([await _move_lane(relay, lane) for lane in LANES])
    finally:
        await relay.redis.delete(keys.LEGACY_LOCK)


async def move_lanes_or_later(relay: RelayState) -> None:
    """At start: move them now, or leave it to the reconciler when Redis or PostgreSQL is not there yet."""
    try:
        await move_lanes(relay)
    except (RedisError, OSError, DatabaseUnavailable) as exc:
        log.warning("the old lanes will be moved later: %s", exc)
