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
from typing import Any

from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from core import keys
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
from core.queue import Take, wait_for_work
from core.streams import StreamError, is_legacy_lease_id, parse_lease_id
from core.wakeups import POOL
from relay import blobs, tenants
from relay.db import DatabaseUnavailable, system_tx
from relay.params import parse_body
from relay.problems import Problem
from relay.reconciler import dead_letter
from relay.routing import push_routing
from relay.state import WorkerIdentity, state

log = logging.getLogger(__name__)

MAX_K = 100_000  # k is an int column; the contract itself sets no upper bound


def _model_response(model: BaseModel, status: int = 200, exclude: set[str] | None = None) -> Response:
    return Response(model.model_dump_json(exclude=exclude), status_code=status, media_type="application/json")


async def enroll(request: Request) -> Response:
    relay = state(request)
    body = await parse_body(request, EnrollRequest)
    async with system_tx(relay.pool) as conn:
        got = await tenants.enroll(conn, body.code, body.name)
    if got is None:
        raise Problem(403, "invalid-enroll-code", "unknown, used or expired enrollment code")
    log.info("worker %s enrolled as %r", got["worker_id"], body.name)
    if got["dedicated_tenant"] is not None:
        # A tenant's first worker of its own makes its automatic routing `own`.
        await push_routing(relay, [got["dedicated_tenant"]])
    return _model_response(EnrollResponse(**got))


async def lease(request: Request) -> Response:
    relay = state(request)
    worker = await relay.worker(request)
    body = await parse_body(request, LeaseRequest)
    # A shutdown ends the long-poll with no events; the worker asks the next relay.
    got = await relay.unless_draining(_take(relay, worker, body), Take())
    events = await _hand_out(relay, worker, got.entries)
    depth = got.depth if worker.dedicated_tenant is not None else await relay.queue.pool_depth()
    return _model_response(LeaseResponse(events=events, queue_depth=depth))


def _take(relay, worker: WorkerIdentity, body: LeaseRequest):
    """A dedicated worker waits for its own tenant's work only; a shared worker for the pool's."""
    idle_ms = int(relay.settings.lease_idle_s * 1000)
    if worker.dedicated_tenant is not None:
        tenant = str(worker.dedicated_tenant)

        def take():
            return relay.queue.take_own(tenant, worker.consumer, body.max_events, idle_ms)

        key = tenant
    else:

        def take():
            return relay.queue.take_shared(worker.consumer, body.max_events, idle_ms)

        key = POOL
    return wait_for_work(take, relay.signals, key, body.wait_s, relay.settings.lease_poll_s)


async def _hand_out(relay, worker: WorkerIdentity, entries: list) -> list:
    """The entries as LeasedEvents, recorded as delivered to ``worker``; an entry past the delivery limit, or
    malformed, goes to the dead-letter stream instead."""
    events, holds = [], {}
    for entry in entries:
        reason = None
        if entry.deliveries > relay.settings.max_deliveries:
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
        holds.update({m.blob: f"{worker.consumer}|{leased.tenant_id}" for m in leased.moments if m.blob})
    if events:
        await _record_deliveries(relay, worker, [e.event_id for e in events], holds)
    return events


async def blob(request: Request) -> Response:
    """An uploaded image, to a worker its event was given to: the holder of its lease (the fast path, Redis
    only), or, after Redis lost the lease's hold, a worker the event was delivered to or whose lease (the
    ``lease`` query parameter) carries it. From the Redis cache, else from the database."""
    relay = state(request)
    worker = await relay.worker(request)
    blob_id = request.path_params["blob"]
    if len(blob_id) != 32 or not all(c in "0123456789abcdef" for c in blob_id):
        raise Problem(404, "not-found", "no such blob")
    holder = await relay.redis.get(keys.hold(blob_id))
    held = holder.decode() if isinstance(holder, bytes) else holder or ""
    consumer, _, held_for = held.partition("|")
    tenant: str | None = held_for
    if consumer != worker.consumer:
        tenant = await _given(relay, worker, blob_id, request.query_params.get("lease"))
    data = await blobs.load(relay, tenant, blob_id) if tenant else None
    if data is None:
        log.info("refused blob %s to worker %s: not stored, or not its event's", blob_id, worker.consumer)
        raise Problem(404, "not-found", "no such blob, or its event was not given to this worker")
    # One line per picture served, naming whose picture went to which worker: the access log of blobs.
    log.debug("served blob %s of tenant %s to worker %s", blob_id, tenant, worker.consumer)
    return Response(data, media_type="image/jpeg")


async def _given(relay, worker: WorkerIdentity, blob_id: str, lease: str | None) -> str | None:
    """The blob's tenant when its event was given to ``worker`` (delivered, or its lease held), else None."""
    found = await blobs.owner(relay, blob_id)
    if found is None:
        return None
    tenant, event_id = found
    if await relay.redis.sismember(keys.delivered(str(event_id)), worker.consumer):
        return tenant
    if lease is not None:
        try:
            held = await relay.streams.held_events(worker.consumer, [lease])
        except StreamError:
            return None
        if held.get(lease) == str(event_id):
            return tenant
    return None


async def _record_deliveries(
    relay, worker: WorkerIdentity, event_ids: list, holds: dict[str, str] | None = None
) -> None:
    """Remember that these events were delivered to ``worker``: only their result is taken from it, also
    after the lease lapsed. Blobs are served only to the worker that holds the lease (re-leasing moves
    the hold)."""
    ttl = int(relay.settings.delivery_record_s)
    pipe = relay.redis.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.sadd(keys.delivered(str(event_id)), worker.consumer)
        pipe.expire(keys.delivered(str(event_id)), ttl)
    for blob_id, value in (holds or {}).items():
        pipe.set(keys.hold(blob_id), value, ex=int(relay.settings.lease_idle_s * 2) + 60)
    await pipe.execute()


STORE_SQL = """
WITH ev AS (
    SELECT id, tenant_id, created_at FROM events WHERE id = $1
), ins AS (
    INSERT INTO results (event_id, tenant_id, worker_id, k, moments, verdict, timings_ms, model, provider,
                         delivered_to)
    SELECT id, tenant_id, $2, $3, $4, $5, $6, $7, $8, $9 FROM ev
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, tenant_id
), upd AS (
    UPDATE events e SET status = 'done', done_at = now(), error = NULL FROM ins WHERE e.id = ins.event_id
    RETURNING e.id
), hook AS (
    INSERT INTO webhook_deliveries (tenant_id, event_id)
    SELECT ins.tenant_id, ins.event_id FROM ins JOIN tenants t ON t.id = ins.tenant_id WHERE t.webhook_url IS NOT NULL
    ON CONFLICT (event_id) DO NOTHING
), gc AS (
    -- A full review needs its uploaded images no more (a shrunk one keeps them for its back-fill).
    DELETE FROM blobs b USING ins, events e
    WHERE b.event_id = ins.event_id AND e.id = ins.event_id AND $3 >= e.n_moments
)
SELECT ev.tenant_id, ev.created_at, EXISTS (SELECT 1 FROM ins) AS stored FROM ev
"""

# A back-fill replaces a result only when it reviews more (k grows) and comes from a worker the event
# was delivered to: one the live record names ($9), or one kept with the result.
BACKFILL_SQL = """
WITH upd AS (
    UPDATE results SET k = $3, moments = $4, verdict = $5, timings_ms = $6, model = $7, provider = $8,
        delivered_to = ARRAY(SELECT DISTINCT unnest(delivered_to || $10::uuid[])), updated_at = now()
    WHERE event_id = $1 AND k < $3 AND ($9 OR $2 = ANY(delivered_to))
    RETURNING tenant_id, event_id
), gc AS (
    DELETE FROM blobs b USING upd, events e
    WHERE b.event_id = upd.event_id AND e.id = upd.event_id AND $3 >= e.n_moments
)
SELECT tenant_id FROM upd
"""

# A result this worker may not write (the live record does not name it): a duplicate if the stored
# result says the event was delivered to it, otherwise refused.
KNOWN_SQL = "SELECT $2 = ANY(delivered_to) FROM results WHERE event_id = $1"


def _columns(result: EventResult) -> tuple:
    dump = result.model_dump(mode="json")
    return (result.k, dump["moments"], dump["verdict"], dump["timings_ms"], result.model, result.provider)


def _worker_ids(members: set[str]) -> list[uuid.UUID]:
    out = []
    for member in members:
        try:
            out.append(uuid.UUID(member))
        except ValueError:
            continue  # a consumer name that is not a worker id holds no result rights
    return out


async def _store_one(conn, worker: WorkerIdentity, result: EventResult, delivered: set[str]) -> tuple[str, Any, Any]:
    """('stored' | 'duplicate' | 'refused', tenant id, event created_at). ``delivered``: the workers the live
    record says this event was delivered to (with this worker when it holds the result's lease)."""
    allowed = worker.consumer in delivered
    if result.backfill:
        tenant_id = await conn.fetchval(
            BACKFILL_SQL, result.event_id, worker.id, *_columns(result), allowed, _worker_ids(delivered)
        )
        if tenant_id is not None:
            return "stored", tenant_id, None
    if not allowed:
        known = await conn.fetchval(KNOWN_SQL, result.event_id, worker.id)
        return ("duplicate" if known else "refused"), None, None
    row = await conn.fetchrow(STORE_SQL, result.event_id, worker.id, *_columns(result), _worker_ids(delivered))
    if row is None:
        return "refused", None, None  # the event is gone (its tenant was deleted)
    return ("stored" if row["stored"] else "duplicate"), row["tenant_id"], row["created_at"]


async def _deliveries(relay, worker: WorkerIdentity, results: list[EventResult]) -> dict[uuid.UUID, set[str]]:
    """For each result's event, the workers it was delivered to: its delivery record, plus this worker when
    it holds the result's lease and that lease carries the event (a LAN worker leases from Redis itself,
    so the relay records its deliveries only when it sees them)."""
    pipe = relay.redis.pipeline(transaction=False)
    for r in results:
        pipe.smembers(keys.delivered(str(r.event_id)))
    records = await pipe.execute()
    out = {
        r.event_id: {m.decode() if isinstance(m, bytes) else m for m in members}
        for r, members in zip(results, records, strict=True)
    }
    leases = [r.lease_id for r in results if r.lease_id is not None and worker.consumer not in out[r.event_id]]
    if leases:
        held = await relay.streams.held_events(worker.consumer, leases)
        seen = [r.event_id for r in results if r.lease_id in held and held[r.lease_id] == str(r.event_id)]
        for event_id in seen:
            out[event_id].add(worker.consumer)
        if seen:
            await _record_deliveries(relay, worker, seen)
    return out


async def results(request: Request) -> Response:
    relay = state(request)
    worker = await relay.worker(request)
    body = await parse_body(request, ResultsPost)
    results = []
    for r in body.results:
        if r.k > MAX_K:
            raise Problem(422, "invalid-body", f"k: at most {MAX_K}")
        if r.lease_id is not None:
            try:
                parse_lease_id(r.lease_id)
            except StreamError as exc:
                if not is_legacy_lease_id(r.lease_id):
                    raise Problem(422, "invalid-body", str(exc)) from None
                # Leased from a global lane before this relay moved the lanes per tenant: the result is
                # still taken (the move recorded that delivery); there is no entry left to ack.
                r = r.model_copy(update={"lease_id": None})
        results.append(r)
    # Without the delivery records (Redis) no result can be checked, and without PostgreSQL none is stored:
    # either way nothing is acked (503); the worker keeps its results and retries.
    delivered = await _deliveries(relay, worker, results)
    outcomes = []
    async with system_tx(relay.pool) as conn:
        for r in results:
            outcomes.append((r, *await _store_one(conn, worker, r, delivered[r.event_id])))
    answer = await _announce_and_ack(relay, worker, outcomes)
    if answer.stored:
        relay.webhook_wakeup()
    return _model_response(answer, exclude={"refused"} if not answer.refused else None)


async def _announce_and_ack(relay, worker: WorkerIdentity, outcomes: list[tuple]) -> ResultsResponse:
    stored, duplicates, refused, acked = [], [], [], 0
    now = datetime.now(UTC)
    for r, outcome, _, created_at in outcomes:
        relay.metrics.results.labels(outcome).inc()
        if outcome == "stored":
            stored.append(r.event_id)
            if created_at is not None:
                relay.metrics.latency.observe((now - created_at).total_seconds())
        elif outcome == "duplicate":
            duplicates.append(r.event_id)
        else:
            refused.append(r.event_id)
            log.warning(
                "worker %s sent a result for event %s, which was never delivered to it: refused",
                worker.consumer,
                r.event_id,
            )
    try:
        pipe = relay.redis.pipeline(transaction=False)
        for r, outcome, tenant_id, _ in outcomes:
            if outcome == "stored" and tenant_id is not None:
                pipe.publish(keys.done_channel(str(tenant_id)), str(r.event_id))
        await pipe.execute()
        for r, outcome, _, _ in outcomes:
            if r.lease_id is not None and outcome != "refused":
                # Only an entry this worker holds, carrying this event, is acked.
                acked += await relay.streams.ack(r.lease_id, worker.consumer, str(r.event_id))
    except (RedisError, OSError) as exc:
        # The results are durable; an entry left unacked is redelivered and then answered as a duplicate.
        log.warning("results stored but not acked: %s", exc)
    return ResultsResponse(stored=stored, duplicates=duplicates, acked=acked, refused=refused)


async def heartbeat(request: Request) -> Response:
    relay = state(request)
    worker = await relay.worker(request)
    body = await parse_body(request, Heartbeat)
    # Renew first: it needs only Redis, and a PostgreSQL outage must not get held leases reclaimed.
    renewed = await relay.streams.renew(worker.consumer, body.leases) if body.leases else []
    if renewed:
        # A LAN worker's leases come from Redis itself: this is where the relay learns of them.
        await _record_deliveries(relay, worker, [e for e in renewed if e])
    if worker.dedicated_tenant is not None:
        depth = await relay.streams.depth(str(worker.dedicated_tenant))
    else:
        depth = await relay.queue.pool_depth()
    async with system_tx(relay.pool) as conn:
        await conn.execute(
            "UPDATE workers SET last_seen = now(), paused = $2, provider = $3, model = $4, metrics = $5 WHERE id = $1",
            worker.id,
            body.paused,
            body.provider,
            body.model,
            dict(body.metrics, at=time.time()),
        )
    return _model_response(
        HeartbeatResponse(queue_depth=depth, renewed=len(renewed), dedicated_tenant=worker.dedicated_tenant)
    )


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
    return _model_response(DeadLetterResponse(moved=moved))
