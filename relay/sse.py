"""GET /v1/events/stream: Server-Sent Events of the tenant's results as they land, resumable.

    curl -N $RELAY/v1/events/stream -H "Authorization: Bearer $KEY"                 # live, from now on
    curl -N $RELAY/v1/events/stream -H "Last-Event-ID: $ID" -H "Authorization: ..."  # replay, then live
    curl -N "$RELAY/v1/events/stream?cursor=$ID" -H "Authorization: ..."           # the same, for clients
                                                                                  # that cannot set headers
Results are announced on the Redis channel ``insane:done:<tenant id>`` by whichever relay stored
them, so a stream on one relay sees results posted to another. Each message is ``event: result``
with the event's summary and ``k`` as ``data`` and an opaque cursor as ``id``; a comment line every
``keepalive_s`` keeps proxies open. Once connected (and after a replay) the stream sends a bare
``id:`` with the current position, so a client that sees no result still has a cursor to resume from.

A resumed stream first replays, oldest first, the results stored since the cursor (PostgreSQL is the
source of truth), then goes on live. Results are ordered by when their transaction started, which is
not always the order they were committed in, so a replay starts ``REPLAY_OVERLAP_S`` before the
cursor: it may repeat results the client has seen. Drop repeats by event id and ``k`` (a back-fill
repeats an event with a larger k).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import StreamingResponse

from core import keys
from relay.db import UNAVAILABLE, DatabaseUnavailable, tenant_tx
from relay.problems import Problem, unavailable
from relay.state import RelayState, Tenant, state
from relay.views import EventSummary, ResultMessage

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
REPLAY_OVERLAP_S = 30.0
REPLAY_PAGE = 200
REMEMBER_REPLAYED = 10_000  # replayed results a live announcement queued meanwhile is checked against
_DRAINED = object()
_NIL = uuid.UUID(int=0)

_RESULT_SQL = """
SELECT e.id, e.camera, e.occurred_at, e.hint, e.status, e.lane, e.error, e.created_at, e.done_at, e.n_moments,
       r.verdict, r.k, r.updated_at
FROM results r JOIN events e ON e.id = r.event_id
WHERE r.tenant_id = $1 AND e.tenant_id = $1
"""
ONE_SQL = _RESULT_SQL + "AND r.event_id = $2"
SINCE_SQL = _RESULT_SQL + "AND (r.updated_at, r.event_id) > ($2, $3) ORDER BY r.updated_at, r.event_id LIMIT $4"


def encode_cursor(updated_at: datetime, event_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{updated_at.isoformat()}|{event_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[datetime, uuid.UUID] | uuid.UUID:
    """(stored at, event id); a bare event id is what this stream sent as ``id`` before it had cursors."""
    raw = raw.strip()
    if len(raw) > 200:
        raise Problem(400, "invalid-cursor", "Last-Event-ID / cursor: at most 200 characters")
    try:
        return uuid.UUID(raw)
    except ValueError:
        pass
    try:
        at, _, ident = base64.urlsafe_b64decode(raw.encode() + b"==").decode().partition("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("no time zone")
        return when, uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            400, "invalid-cursor", "Last-Event-ID / cursor: pass the id of the last message received, unchanged"
        ) from None


def _message(row: asyncpg.Record) -> str:
    data = ResultMessage(**dict(EventSummary.of(row)), k=row["k"]).model_dump(mode="json")
    return f"id: {encode_cursor(row['updated_at'], row['id'])}\nevent: result\ndata: {json.dumps(data)}\n\n"


async def _start_of(relay: RelayState, tenant: Tenant, cursor: tuple[datetime, uuid.UUID] | uuid.UUID):
    """Where a replay starts, or None (an old-style id whose result is unknown: live only)."""
    if isinstance(cursor, tuple):
        at = cursor[0]
    else:
        async with tenant_tx(relay.pool, tenant.id) as conn:
            row = await conn.fetchrow(ONE_SQL, tenant.id, cursor)
        if row is None:
            return None
        at = row["updated_at"]
    return at - timedelta(seconds=REPLAY_OVERLAP_S), _NIL


async def _now(relay: RelayState) -> datetime | None:
    try:
        return await relay.pool.fetchval("SELECT clock_timestamp()")
    except UNAVAILABLE as exc:
        log.warning("result stream: no position to send: %s", exc)
        return None


async def _replay(relay: RelayState, tenant: Tenant, after: tuple[datetime, uuid.UUID], sent: OrderedDict):
    while True:
        async with tenant_tx(relay.pool, tenant.id) as conn:
            rows = await conn.fetch(SINCE_SQL, tenant.id, after[0], after[1], REPLAY_PAGE)
        for row in rows:
            sent[row["id"]] = row["updated_at"]
            if len(sent) > REMEMBER_REPLAYED:
                sent.popitem(last=False)
            yield _message(row)
        if len(rows) < REPLAY_PAGE:
            return
        after = (rows[-1]["updated_at"], rows[-1]["id"])


async def stream_events(request: Request) -> StreamingResponse:
    relay = state(request)
    tenant = await relay.tenant(request)
    raw_cursor = request.headers.get("last-event-id") or request.query_params.get("cursor")
    cursor = decode_cursor(raw_cursor) if raw_cursor else None
    pubsub = relay.redis.pubsub()
    try:
        # Subscribed before the replay reads PostgreSQL, so a result stored in between is not missed.
        await pubsub.subscribe(keys.done_channel(str(tenant.id)))
    except (RedisError, OSError) as exc:
        await pubsub.aclose()
        raise unavailable("the result stream") from exc

    async def messages() -> AsyncIterator[str]:
        sent: OrderedDict[uuid.UUID, datetime] = OrderedDict()
        try:
            yield ": connected\n\n"
            if cursor is not None:
                try:
                    start = await _start_of(relay, tenant, cursor)
                    if start is not None:
                        async for chunk in _replay(relay, tenant, start, sent):
                            yield chunk
                except DatabaseUnavailable as exc:
                    log.warning("result stream for tenant %s: replay failed: %s", tenant.id, exc)
                    return  # the client reconnects with the last cursor it received
            position = await _now(relay)
            if position is not None:
                yield f"id: {encode_cursor(position, _NIL)}\n\n"  # where to resume if no result comes
            while True:
                try:
                    msg = await relay.unless_draining(
                        pubsub.get_message(ignore_subscribe_messages=True, timeout=KEEPALIVE_S), _DRAINED
                    )
                except (RedisError, OSError) as exc:
                    log.warning("result stream for tenant %s ended: %s", tenant.id, exc)
                    return
                if msg is _DRAINED:
                    return  # the relay is shutting down: the client reconnects (to another relay)
                if msg is None:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                try:
                    event_id = uuid.UUID(msg["data"].decode())
                    async with tenant_tx(relay.pool, tenant.id) as conn:
                        row = await conn.fetchrow(ONE_SQL, tenant.id, event_id)
                except (ValueError, DatabaseUnavailable) as exc:
                    log.warning("result stream skipped a message: %s", exc)
                    continue
                if row is not None and sent.get(row["id"]) != row["updated_at"]:
                    yield _message(row)
        finally:
            await asyncio.shield(pubsub.aclose())

    return StreamingResponse(
        messages(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
