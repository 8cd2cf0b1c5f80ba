"""The worker API (contract: core/protocol.py): enroll, lease, blobs, results, heartbeat.

Only the relay touches Redis on the internet side. A result is written to PostgreSQL (first write
wins, keyed by event id) and committed before its entry is acked, so a worker that dies anywhere in
between costs a redelivery, never a lost or doubled result.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime

from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from core.protocol import (
    DeadLetterRequest,
    DeadLetterResponse,
    EnrollRequest,
    EnrollResponse,
    EventResult,
    Heartbeat,
    HeartbeatResponse,
    LeaseRequest,
    LeaseResponse,
    ResultsPost,
    ResultsResponse,
)
from core.streams import StreamError, parse_lease_id
from relay import tenants
from relay.db import DatabaseUnavailable, system_tx
from relay.params import parse_body
from relay.problems import Problem, unavailable
from relay.reconciler import dead_letter
from relay.state import Worker, state

log = logging.getLogger(__name__)

MAX_K = 100_000  # k is an int column; the contract itself sets no upper bound


def _model_response(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


async def enroll(request: Request) -> Response:
    relay = state(request)
    body = await parse_body(request, EnrollRequest)
    try:
        async with system_tx(relay.pool) as conn:
            got = await tenants.enroll(conn, body.code, body.name)
    except DatabaseUnavailable as exc:
        raise unavailable("the database") from exc
    if got is None:
        raise Problem(403, "invalid-enroll-code", "unknown, used or expired enrollment code")
    log.info("worker %s enrolled as %r", got["worker_id"], body.name)
    return _model_response(EnrollResponse(**got))


def _hold_key(blob: str) -> str:
    return f"insane:hold:{blob}"


async def lease(request: Request) -> Response:
    relay = state(request)
    worker = await relay.worker(request)
    body = await parse_body(request, LeaseRequest)
    settings = relay.settings
    try:
        # A shutdown ends the long-poll with no events; the worker asks the next relay.
        entries = await relay.unless_draining(
            relay.streams.lease(
                worker.consumer, body.max_events, int(body.wait_s * 1000), int(settings.lease_idle_s * 1000)
            ),
            [],
        )
        events, holds = [], {}
        for entry in entries:
            reason = None
            if entry.deliveries > settings.max_deliveries:
                reason = f"delivered {entry.deliveries - 1} times without a result"
            else:
                try:
                    leased = entry.leased()
                except StreamError as exc:
                    reason = str(exc)
            if reason is not None:
                try:
                    await dead_letter(relay, entry, reason, worker.consumer)
                except DatabaseUnavailable as exc:
                    # Not handed out and not moved: it is tried again when it is next reclaimed.
                    log.warning("cannot dead-letter event %s now: %s", entry.event_id, exc)
                continue
            events.append(leased)
            holds.update({m.blob: worker.consumer for m in leased.moments if m.blob})
        if holds:
            # Blobs are served only to the worker that holds the lease (re-leasing moves the hold).
            pipe = relay.redis.pipeline(transaction=False)
            for blob, consumer in holds.items():
                pipe.set(_hold_key(blob), consumer, ex=int(settings.lease_idle_s * 2) + 60)
            await pipe.execute()
        depth = await relay.streams.depth()
    except (RedisError, OSError) as exc:
        log.warning("lease for worker %s failed: %r", worker.consumer, exc)
        raise unavailable("the queue") from exc
    return _model_response(LeaseResponse(events=events, queue_depth=depth))


async def blob(request: Request) -> Response:
    relay = state(request)
    worker = await relay.worker(request)
    blob_id = request.path_params["blob"]
    if len(blob_id) != 32 or not all(c in "0123456789abcdef" for c in blob_id):
        raise Problem(404, "not-found", "no such blob")
    try:
        pipe = relay.redis.pipeline(transaction=False)
        pipe.get(_hold_key(blob_id))
        pipe.get(f"insane:blob:{blob_id}")
        holder, data = await pipe.execute()
    except (RedisError, OSError) as exc:
        raise unavailable("the blob store") from exc
    if holder is None or holder.decode() != worker.consumer or data is None:
        raise Problem(404, "not-found", "no such blob, or this worker holds no lease on its event")
    return Response(data, media_type="image/jpeg")


STORE_SQL = """
WITH ev AS (
    SELECT id, tenant_id, created_at FROM events WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)
), ins AS (
    INSERT INTO results (event_id, tenant_id, worker_id, k, moments, verdict, timings_ms, model, provider)
    SELECT id, tenant_id, $3, $4, $5, $6, $7, $8, $9 FROM ev
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, tenant_id
), upd AS (
    UPDATE events e SET status = 'done', done_at = now(), error = NULL FROM ins WHERE e.id = ins.event_id
    RETURNING e.id
), hook AS (
    INSERT INTO webhook_deliveries (tenant_id, event_id)
    SELECT ins.tenant_id, ins.event_id FROM ins JOIN tenants t ON t.id = ins.tenant_id WHERE t.webhook_url IS NOT NULL
    ON CONFLICT (event_id) DO NOTHING
)
SELECT ev.tenant_id, ev.created_at, EXISTS (SELECT 1 FROM ins) AS stored FROM ev
"""

BACKFILL_SQL = """
UPDATE results SET k = $3, moments = $4, verdict = $5, timings_ms = $6, model = $7, provider = $8, updated_at = now()
WHERE event_id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND k < $3
RETURNING tenant_id
"""


def _columns(result: EventResult) -> tuple:
    dump = result.model_dump(mode="json")
    return (result.k, dump["moments"], dump["verdict"], dump["timings_ms"], result.model, result.provider)


async def _store_one(
    conn,
    worker: Worker,
    result: EventResult,
    scope: uuid.UUID | None,
) -> tuple[str, uuid.UUID | None, datetime | None]:
    """('stored' | 'duplicate' | 'unknown', tenant id, event created_at); ``scope``: only this tenant's events."""
    if result.backfill:
        tenant_id = await conn.fetchval(BACKFILL_SQL, result.event_id, scope, *_columns(result))
        if tenant_id is not None:
            return "stored", tenant_id, None
    row = await conn.fetchrow(STORE_SQL, result.event_id, scope, worker.id, *_columns(result))
    if row is None:
        return "unknown", None, None
    return ("stored" if row["stored"] else "duplicate"), row["tenant_id"], row["created_at"]


async def _result_scopes(relay, worker: Worker, results: list[EventResult]) -> dict[uuid.UUID, uuid.UUID | None]:
    """Whose events each result may land on. A shared worker: any event. A dedicated worker leases from
    the shared lanes too, so it may answer any event whose lease it holds; otherwise (a back-fill, a lapsed
    lease) only its own tenant's."""
    scopes: dict[uuid.UUID, uuid.UUID | None] = {r.event_id: worker.dedicated_tenant for r in results}
    if worker.dedicated_tenant is None:
        return scopes
    try:
        for r in results:
            held = await relay.streams.holder(r.lease_id) if r.lease_id is not None else None
            if held is not None and held[0] == worker.consumer:
                scopes[r.event_id] = None
    except (RedisError, OSError) as exc:
        raise unavailable("the queue") from exc
    return scopes


async def results(request: Request) -> Response:
    relay = state(request)
    worker = await relay.worker(request)
    body = await parse_body(request, ResultsPost)
    for r in body.results:
        if r.k > MAX_K:
            raise Problem(422, "invalid-body", f"k: at most {MAX_K}")
        if r.lease_id is not None:
            try:
                parse_lease_id(r.lease_id)
            except StreamError as exc:
                raise Problem(422, "invalid-body", str(exc)) from None
    scopes = await _result_scopes(relay, worker, body.results)
    outcomes = []
    try:
        async with system_tx(relay.pool) as conn:
            for r in body.results:
                outcomes.append((r, *await _store_one(conn, worker, r, scopes[r.event_id])))
    except DatabaseUnavailable as exc:
        # Nothing was acked: the worker keeps its results and retries.
        raise unavailable("the database") from exc
    stored, duplicates, acked = [], [], 0
    now = datetime.now(UTC)
    try:
        pipe = relay.redis.pipeline(transaction=False)
        for r, outcome, tenant_id, created_at in outcomes:
            relay.metrics.results.labels(outcome).inc()
            if outcome == "stored":
                stored.append(r.event_id)
                pipe.publish(f"insane:done:{tenant_id}", str(r.event_id))
                if created_at is not None:
                    relay.metrics.latency.observe((now - created_at).total_seconds())
            elif outcome == "duplicate":
                duplicates.append(r.event_id)
        await pipe.execute()
        for r, outcome, _, _ in outcomes:
            if r.lease_id is not None and outcome != "unknown":
                acked += await relay.streams.ack(r.lease_id)
    except (RedisError, OSError) as exc:
        # The results are durable; an entry left unacked is redelivered and then answered as a duplicate.
        log.warning("results stored but not acked: %s", exc)
    if stored:
        relay.webhook_wakeup()
    return _model_response(ResultsResponse(stored=stored, duplicates=duplicates, acked=acked))


async def heartbeat(request: Request) -> Response:
    relay = state(request)
    worker = await relay.worker(request)
    body = await parse_body(request, Heartbeat)
    try:
        # Renew first: it needs only Redis, and a PostgreSQL outage must not get held leases reclaimed.
        renewed = await relay.streams.renew(worker.consumer, body.leases) if body.leases else 0
        depth = await relay.streams.depth()
    except (RedisError, OSError) as exc:
        log.warning("lease for worker %s failed: %r", worker.consumer, exc)
        raise unavailable("the queue") from exc
    try:
        async with system_tx(relay.pool) as conn:
            await conn.execute(
                "UPDATE workers SET last_seen = now(), paused = $2, provider = $3, model = $4, "
                "metrics = $5 WHERE id = $1",
                worker.id,
                body.paused,
                body.provider,
                body.model,
                dict(body.metrics, at=time.time()),
            )
    except DatabaseUnavailable as exc:
        raise unavailable("the database") from exc
    return _model_response(HeartbeatResponse(queue_depth=depth, renewed=renewed))


async def dead_letter_held(request: Request) -> Response:
    """A LAN worker's report of entries it reclaimed from Redis and will not review: past the delivery
    limit, or malformed. Its Redis user cannot move them itself; only entries it holds are moved."""
    relay = state(request)
    worker = await relay.worker(request)
    body = await parse_body(request, DeadLetterRequest)
    for lease_id in body.lease_ids:
        try:
            parse_lease_id(lease_id)
        except StreamError as exc:
            raise Problem(422, "invalid-body", str(exc)) from None
    limit = relay.settings.max_deliveries
    moved = []
    try:
        for lease_id in body.lease_ids:
            entry = await relay.streams.entry(lease_id)
            held = await relay.streams.holder(lease_id)
            if entry is None or held is None or held[0] != worker.consumer:
                continue
            try:
                entry.leased()
                malformed = False
            except StreamError:
                malformed = True
            if not malformed and held[1] <= limit:
                continue  # a worker may not dead-letter an entry that still has deliveries left
            reason = (
                f"malformed entry: {body.reason}"
                if malformed
                else f"delivered {held[1] - 1} times without a result ({body.reason})"
            )
            if await dead_letter(relay, entry, reason, worker.consumer, 0 if malformed else limit + 1):
                moved.append(lease_id)
    except (RedisError, OSError) as exc:
        raise unavailable("the queue") from exc
    except DatabaseUnavailable as exc:
        raise unavailable("the database") from exc
    return _model_response(DeadLetterResponse(moved=moved))
