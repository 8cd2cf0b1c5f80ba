"""Where a queued event is waiting, and for whom: the ``queue`` part of GET /v1/events/{id}, and
GET /v1/workers (a tenant's own workers and their last heartbeat).

    queue = await waiting_view(relay, tenant, event_id, lane)     # a QueueView, written as
    # {"position": 3, "state": "waiting", "routing": "own", "waiting_for": "your workers",
    #  "your_workers_online": 0, "your_workers_last_seen": "2026-12-01T09:14:02+00:00",
    #  "note": "waiting for your workers: none is online (last heartbeat 2026-12-01T09:14:02+00:00)"}
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from core import keys
from core.streams import GROUP
from relay.db import tenant_tx
from relay.state import Tenant, state
from relay.views import OwnWorker, OwnWorkers, QueueView, json_response

if TYPE_CHECKING:
    from relay.state import RelayState

ONLINE_S = 60  # a worker with a heartbeat this recent is online (heartbeats come every few seconds)
SCAN_LIMIT = 10_000  # entries of a lane looked through for a position

WORKERS_SQL = f"""
SELECT id, name, last_seen, paused, provider, model, revoked_at IS NOT NULL AS revoked,
       last_seen > now() - interval '{ONLINE_S} seconds' AND revoked_at IS NULL AS online
FROM workers WHERE dedicated_tenant = $1 ORDER BY created_at
"""

WAITING_FOR = {
    "own": "your workers",
    "shared": "the shared pool",
    "own-then-shared": "your workers, then the shared pool",
}


async def _position(relay: RelayState, tenant: Tenant, event_id: uuid.UUID, lane: str) -> tuple[int | None, str]:
    """(1-based position among the tenant's entries of that lane, "waiting" | "in review" | "not queued")."""
    key = keys.stream(str(tenant.id), lane)
    rows = await relay.redis.xrange(key, min="-", max="+", count=SCAN_LIMIT) or []
    for n, (entry_id, fields) in enumerate(rows, start=1):
        if entry_id is not None and fields is not None and fields.get(b"id") == str(event_id).encode():
            pending = await relay.redis.xpending_range(key, GROUP, min=entry_id, max=entry_id, count=1)
            return n, ("in review" if pending else "waiting")
    return None, "not queued"


async def _own_workers(relay: RelayState, tenant: Tenant) -> list[OwnWorker]:
    async with tenant_tx(relay.pool, tenant.id) as conn:
        rows = await conn.fetch(WORKERS_SQL, tenant.id)
    return [
        OwnWorker(
            id=r["id"],
            name=r["name"],
            online=bool(r["online"]),
            last_seen=r["last_seen"].isoformat() if r["last_seen"] else None,
            paused=r["paused"],
            provider=r["provider"],
            model=r["model"],
            revoked=r["revoked"],
        )
        for r in rows
    ]


def _note(routing: str, state_: str, position: int | None, workers: list[OwnWorker], after_s: float) -> str:
    if state_ == "in review":
        return "a worker is reviewing it"
    if state_ == "not queued":
        return "not in a queue right now; the relay queues it again shortly"
    live = [w for w in workers if w.online and not w.paused]
    ahead = f"{position - 1} of your events ahead of it" if position and position > 1 else "next in line"
    if routing == "shared" or live:
        return f"waiting for {WAITING_FOR[routing]}: {ahead}"
    seen = max((w.last_seen for w in workers if w.last_seen), default=None)
    last = f" (last heartbeat {seen})" if seen else " (none has ever sent a heartbeat)"
    if not workers:
        why = "you have no worker of your own: enroll one, or choose shared routing"
    elif any(w.online for w in workers):
        why = "your workers are paused"
    else:
        why = f"none of your {len(workers)} workers is online{last}"
    if routing == "own-then-shared":
        return f"waiting for your workers ({why}); the shared pool may take it after {after_s:g} s"
    return f"waiting for your workers: {why}"


async def waiting_view(relay: RelayState, tenant: Tenant, event_id: uuid.UUID, lane: str) -> QueueView:
    try:
        position, state_ = await _position(relay, tenant, event_id, lane)
    except (RedisError, OSError):
        position, state_ = None, "unknown (the queue is unreachable)"
    workers = await _own_workers(relay, tenant)
    after_s = relay.settings.routing_shared_after_s if tenant.shared_after_s is None else tenant.shared_after_s
    seen = max((w.last_seen for w in workers if w.last_seen), default=None)
    return QueueView(
        position=position,
        state=state_,
        routing=tenant.routing,
        waiting_for=WAITING_FOR[tenant.routing],
        your_workers_online=sum(1 for w in workers if w.online),
        your_workers_last_seen=seen,
        note=_note(tenant.routing, state_, position, workers, after_s),
    )


async def list_own_workers(request: Request) -> JSONResponse:
    """GET /v1/workers: the tenant's own (dedicated) workers, with their last heartbeat."""
    relay = state(request)
    tenant = await relay.tenant(request)
    return json_response(OwnWorkers(routing=tenant.routing, workers=await _own_workers(relay, tenant)))
