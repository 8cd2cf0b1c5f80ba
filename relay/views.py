"""How an event looks to its tenant: the bodies of the events API (GET /v1/events/{id}, GET /v1/events,
POST /v1/events, GET /v1/workers), SSE messages and webhooks, as pydantic models; /openapi.json is built
from these same models.

    view = await event_view(conn, tenant_id, event_id)     # EventView, or None
    return json_response(view, exclude={"queue"})           # the JSON a client has always read

Times are ISO 8601 as Python writes them (``2026-12-01T09:14:02.123456+00:00``), and numbers that come
from PostgreSQL's jsonb (verdicts, detections, timings) are written as they were stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from starlette.responses import JSONResponse

from core.protocol import Lane
from relay.tenants import Routing

EventStatus = Literal["queued", "done", "failed"]
STATUSES: tuple[str, ...] = get_args(EventStatus)
IsoTime = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str, when_used="json")]

EVENT_SQL = """
SELECT e.id, e.camera, e.occurred_at, e.hint, e.status, e.lane, e.error, e.created_at, e.done_at, e.n_moments,
       r.k, r.moments AS result_moments, r.verdict, r.timings_ms, r.model, r.provider
FROM events e LEFT JOIN results r ON r.event_id = e.id
WHERE e.id = $1 AND e.tenant_id = $2
"""


class _View(BaseModel):
    """An answer of the relay: every field is always written (None as null) unless its handler leaves it out."""

    model_config = ConfigDict(frozen=True)


def json_response(
    body: BaseModel, status: int = 200, headers: dict[str, str] | None = None, exclude: set[str] | None = None
) -> JSONResponse:
    """``body`` as Starlette's JSONResponse writes a dict: the same bytes the API answered before its models."""
    return JSONResponse(body.model_dump(mode="json", exclude=exclude), status_code=status, headers=headers)


class EventSummary(_View):
    """One event in GET /v1/events (and, with ``k``, an SSE message)."""

    id: uuid.UUID
    camera: str
    time: IsoTime = Field(description="when the event happened")
    hint: str | None
    status: EventStatus
    lane: Lane
    n_moments: int
    error: str | None
    created_at: IsoTime = Field(description="when the relay accepted it")
    done_at: IsoTime | None
    verdict: list[dict[str, Any]] | None = Field(description="per class seen: label, moments, best, median")

    @classmethod
    def of(cls, row: asyncpg.Record) -> EventSummary:
        return cls(
            id=row["id"],
            camera=row["camera"],
            time=row["occurred_at"],
            hint=row["hint"],
            status=row["status"],
            lane=row["lane"],
            n_moments=row["n_moments"],
            error=row["error"],
            created_at=row["created_at"],
            done_at=row["done_at"],
            verdict=row["verdict"],
        )


class ResultMessage(EventSummary):
    """The ``data`` of an SSE ``result`` message."""

    k: int | None = Field(description="how many moments were reviewed")


class EventMoment(_View):
    index: int
    url: str | None = Field(description="the moment's URL; null for an uploaded JPEG")
    uploaded: bool
    reviewed: bool
    detections: list[dict[str, Any]] = Field(description="label, class_id, confidence, box (x1, y1, x2, y2)")
    width: int | None
    height: int | None
    error: str | None = Field(description="why this moment could not be reviewed")


class QueueView(_View):
    """Where a queued event waits, and for whom (relay/waiting.py)."""

    position: int | None = Field(description="among the tenant's own events in its lane, from 1")
    state: str = Field(description="waiting, in review, not queued, or unknown (the queue is unreachable)")
    routing: Routing
    waiting_for: str = Field(description="your workers, the shared pool, or both in turn")
    your_workers_online: int
    your_workers_last_seen: str | None = Field(description="the last heartbeat of your own workers (ISO 8601)")
    note: str = Field(description="a sentence on what the event waits for")


class EventView(EventSummary):
    """GET /v1/events/{id}, and the ``event`` of a webhook."""

    moments: list[EventMoment]
    k: int | None = Field(description="how many moments were reviewed")
    timings_ms: dict[str, int | float] | None = Field(description="per stage: fetch, decode, infer, total")
    model: str | None
    provider: str | None
    queue: QueueView | None = Field(None, description="only while queued: where the event waits, and for whom")


class EventList(_View):
    """GET /v1/events: newest first."""

    events: list[EventSummary]
    next_cursor: str | None = Field(description="the cursor of the next page; null on the last")


class EventAccepted(_View):
    """POST /v1/events: 202 stored and queued, or 200 for a retry of an event already stored (``replayed``)."""

    id: uuid.UUID
    status: EventStatus
    lane: Lane
    queue_position: int | None = Field(description="among the tenant's own events in its lane")
    waiting_for: str | None = Field(
        None, description="your workers, the shared pool, or both in turn (left out of a replayed answer)"
    )
    replayed: bool


class OwnWorker(_View):
    id: uuid.UUID
    name: str
    online: bool
    last_seen: str | None = Field(description="its last heartbeat (ISO 8601)")
    paused: bool
    provider: str
    model: str
    revoked: bool


class OwnWorkers(_View):
    """GET /v1/workers: the tenant's own (dedicated) workers."""

    routing: Routing
    workers: list[OwnWorker]


async def event_view(conn: asyncpg.Connection, tenant_id: uuid.UUID, event_id: uuid.UUID) -> EventView | None:
    row = await conn.fetchrow(EVENT_SQL, event_id, tenant_id)
    if row is None:
        return None
    refs = await conn.fetch(
        "SELECT idx, url, blob FROM moments WHERE event_id = $1 AND tenant_id = $2 ORDER BY idx", event_id, tenant_id
    )
    reviewed = {m["index"]: m for m in (row["result_moments"] or [])}
    moments = []
    for ref in refs:
        got = reviewed.get(ref["idx"])
        moments.append(
            EventMoment(
                index=ref["idx"],
                url=ref["url"],
                uploaded=ref["blob"] is not None,
                reviewed=got is not None,
                detections=got.get("detections", []) if got else [],
                width=got.get("width") if got else None,
                height=got.get("height") if got else None,
                error=got.get("error") if got else None,
            )
        )
    return EventView(
        **dict(EventSummary.of(row)),
        moments=moments,
        k=row["k"],
        timings_ms=row["timings_ms"],
        model=row["model"],
        provider=row["provider"],
    )
