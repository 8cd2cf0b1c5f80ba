"""The tenant-facing events API: POST /v1/events, GET /v1/events/{id}, GET /v1/events.

A post is checked (auth, limits, backlog, Pro rate) before anything is stored; then one PostgreSQL
round trip stores the event (idempotency and the Guardian quota included), and only then is it
queued in Redis. A post that could not be stored is answered 503 or 4xx, never 202.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from core import keys
from relay import blobs
from relay.db import UNAVAILABLE, DatabaseUnavailable, connection, tenant_tx
from relay.intake import Incoming, read_event
from relay.params import decode_cursor, encode_cursor, query_choice, query_int, query_text, query_time
from relay.problems import Problem
from relay.state import RelayState, Tenant, state
from relay.views import STATUSES, EventAccepted, EventList, EventSummary, event_view, json_response
from relay.waiting import WAITING_FOR, waiting_view

log = logging.getLogger(__name__)

QUOTA_SQLSTATE = "IQ001"
ACCEPT_SQL = "SELECT * FROM accept_event($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
# Insufficient resources (disk full, out of memory, a configured limit): the store cannot take it now.
FULL_SQLSTATES = ("53100", "53200", "53400")


def _reject(relay: RelayState, reason: str, problem: Problem) -> Problem:
    relay.metrics.rejected.labels(reason).inc()
    return problem


async def _admit(relay: RelayState, tenant: Tenant) -> None:
    """Backlog bound and Pro token bucket, in one Redis round trip, before anything is stored."""
    pipe = relay.redis.pipeline(transaction=False)
    pipe.xlen(keys.stream(str(tenant.id), tenant.lane))
    if tenant.rate_per_s:
        rate_keys, args = relay.limiter.take_args(str(tenant.id), tenant.rate_per_s, tenant.burst)
        await relay.limiter.script(keys=rate_keys, args=args, client=pipe)  # queued on the pipeline
    try:
        replies = await pipe.execute()
    except (RedisError, OSError):
        relay.metrics.rejected.labels("queue-unavailable").inc()
        raise  # the app answers 503 (relay.problems.DEPENDENCIES)
    if int(replies[0]) >= relay.settings.lane_backlog_max:
        raise _reject(
            relay,
            "overloaded",
            Problem(
                503,
                "overloaded",
                f"your {tenant.lane} lane has {replies[0]} events waiting; retry later",
                retry_after=30,
            ),
        )
    if tenant.rate_per_s:
        allowed, retry_after = relay.limiter.outcome(replies[1])
        if not allowed:
            raise _reject(
                relay,
                "rate",
                Problem(
                    429,
                    "rate-limited",
                    f"over {tenant.rate_per_s:g} events/s (burst {tenant.burst})",
                    retry_after=retry_after,
                ),
            )


def _seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


async def _store(relay: RelayState, tenant: Tenant, incoming: Incoming, event_id: uuid.UUID) -> asyncpg.Record:
    body = incoming.body
    urls = list(body.moments) + [None] * len(incoming.blobs)
    blobs = [None] * len(body.moments) + list(incoming.blobs)
    try:
        async with connection(relay.pool) as conn:
            row = await conn.fetchrow(
                ACCEPT_SQL,
                tenant.id,
                event_id,
                body.camera,
                body.time,
                body.hint,
                incoming.idem_key,
                tenant.lane,
                urls,
                blobs,
                tenant.daily_deep_reviews,
                tenant.deep_min_moments,
                list(incoming.blobs.values()),
            )
        assert row is not None  # accept_event() returns one row or raises
        return row
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == QUOTA_SQLSTATE:
            raise _reject(
                relay,
                "quota",
                Problem(
                    429,
                    "quota-exceeded",
                    str(exc.args[0] if exc.args else exc),
                    retry_after=_seconds_to_midnight(),
                ),
            ) from None
        if isinstance(exc, UNAVAILABLE) or exc.sqlstate in ("57P01", "57P02", "57P03", "08006", "08003"):
            relay.metrics.rejected.labels("database-unavailable").inc()
            raise DatabaseUnavailable(str(exc)) from exc
        if exc.sqlstate in FULL_SQLSTATES:
            log.error("the database cannot store event %s: %s", event_id, exc)
            raise _reject(
                relay,
                "store-full",
                Problem(503, "overloaded", "the relay's database is out of space; retry later", retry_after=60),
            ) from exc
        raise
    except UNAVAILABLE as exc:
        relay.metrics.rejected.labels("database-unavailable").inc()
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc


def entry_json(tenant: Tenant, event_id: uuid.UUID, incoming: Incoming, created_at: datetime) -> str:
    body = incoming.body
    moments = [{"index": i, "url": u} for i, u in enumerate(body.moments)]
    moments += [{"index": len(body.moments) + n, "blob": b} for n, b in enumerate(incoming.blobs)]
    entry: dict[str, Any] = {
        "event_id": str(event_id),
        "tenant_id": str(tenant.id),
        "lane": tenant.lane,
        "camera": body.camera,
        "hint": body.hint,
        "created_at": created_at.isoformat(),
        "moments": moments,
        "allow_private_hosts": list(tenant.allow_private_hosts),
    }
    if tenant.allow_ports:  # left out when empty: LAN workers older than allow_ports forbid unknown fields
        entry["allow_ports"] = list(tenant.allow_ports)
    return json.dumps(entry)


async def post_event(request: Request) -> JSONResponse:
    relay = state(request)
    tenant = await relay.tenant(request)
    try:
        incoming = await read_event(request, relay.settings, tenant.allow_private_hosts, tenant.allow_ports)
    except Problem as problem:
        raise _reject(relay, problem.slug, problem) from None
    await _admit(relay, tenant)
    if incoming.blobs:
        try:
            await blobs.check_room(relay)
        except Problem as problem:
            raise _reject(relay, "store-full", problem) from None
    row = await _store(relay, tenant, incoming, uuid.uuid4())
    event_id = row["event_id"]
    location = {"Location": f"/v1/events/{event_id}"}
    if not row["created"]:
        # A retry: its first request stored the event and its images in one statement, so there is
        # nothing to restore even if that request died before it reached Redis.
        replayed = EventAccepted(
            id=event_id, status=row["status"], lane=row["lane"], queue_position=None, replayed=True
        )
        return json_response(replayed, 200, location, exclude={"waiting_for"})
    position = None
    try:
        _, position = await relay.queue.enqueue(
            str(tenant.id),
            tenant.lane,
            str(event_id),
            entry_json(tenant, event_id, incoming, row["created_at"]),
            relay.routing_ms(tenant),
            incoming.blobs,
            relay.settings.blob_ttl_s,
        )
    except (RedisError, OSError) as exc:
        # Stored but not queued: the reconciler queues it after requeue_after_s. 202 stays true.
        log.warning("event %s stored but not queued (%s); the reconciler will queue it", event_id, exc)
    relay.metrics.accepted.labels(tenant.lane).inc()
    accepted = EventAccepted(
        id=event_id,
        status="queued",
        lane=tenant.lane,
        queue_position=position,
        waiting_for=WAITING_FOR[tenant.routing],
        replayed=False,
    )
    return json_response(accepted, 202, location)


def _uuid_or_404(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "not-found", "no such event") from None


async def get_event(request: Request) -> JSONResponse:
    relay = state(request)
    tenant = await relay.tenant(request)
    event_id = _uuid_or_404(request.path_params["event_id"])
    async with tenant_tx(relay.pool, tenant.id) as conn:
        view = await event_view(conn, tenant.id, event_id)
    if view is None:
        raise Problem(404, "not-found", "no such event")
    if view.status != "queued":
        return json_response(view, exclude={"queue"})
    return json_response(view.model_copy(update={"queue": await waiting_view(relay, tenant, event_id, view.lane)}))


async def list_events(request: Request) -> JSONResponse:
    relay = state(request)
    tenant = await relay.tenant(request)
    status = query_choice(request, "status", STATUSES)
    limit = query_int(request, "limit", 50, 1, 200)
    camera = query_text(request, "camera", 100)
    since, until = query_time(request, "since"), query_time(request, "until")
    cursor = decode_cursor(request.query_params.get("cursor"))
    sql = (
        "SELECT e.id, e.camera, e.occurred_at, e.hint, e.status, e.lane, e.error, e.created_at, e.done_at, "
        "e.n_moments, r.verdict FROM events e LEFT JOIN results r ON r.event_id = e.id "
        "WHERE e.tenant_id = $1 AND ($2::text IS NULL OR e.camera = $2) AND ($3::text IS NULL OR e.status = $3) "
        "AND ($4::timestamptz IS NULL OR e.occurred_at >= $4) AND ($5::timestamptz IS NULL OR e.occurred_at < $5) "
        "AND ($6::timestamptz IS NULL OR (e.created_at, e.id) < ($6, $7)) "
        "ORDER BY e.created_at DESC, e.id DESC LIMIT $8"
    )
    args = (
        tenant.id,
        camera,
        status,
        since,
        until,
        cursor[0] if cursor else None,
        cursor[1] if cursor else None,
        limit + 1,
    )
    async with tenant_tx(relay.pool, tenant.id) as conn:
        rows = await conn.fetch(sql, *args)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(last["created_at"], last["id"])
    return json_response(EventList(events=[EventSummary.of(r) for r in page], next_cursor=next_cursor))
