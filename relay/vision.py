"""The DeepStack / CodeProject.AI detection API on the relay, for NVRs and integrations that speak it.

    POST /v1/vision/detection          multipart image, min_confidence, api_key -> predictions
    POST /v1/vision/custom/{model}     the same, with a model the tenant's workers run
    POST /v1/vision/custom/list        the models the online workers run
    GET  /v1/server/status/ping        {"success": true}

The key: the ``api_key`` field, ``Authorization: Bearer KEY``, or HTTP Basic with the key as the password
(``https://key:KEY@relay/`` for a client that has a URL field only). A request is checked (key, image,
``min_confidence``, a worker online, the lane's backlog, this API's rate for the tier and the Pro rate),
then becomes a 1-moment event on the Pro lane, stored and listed like any event but never charged to the
Guardian quota, and is answered when its result is stored, or with an error past ``vision_deadline_s``.
Answers are the API's own JSON (core/lan/wire.py), errors included; never problem+json.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from core import keys
from core.lan.form import credential, read_form
from core.lan.wire import (
    ModelList,
    WireError,
    detection_body,
    encode,
    predictions,
)
from core.protocol import Detection
from relay import events
from relay.db import DatabaseUnavailable, system_tx, tenant_tx
from relay.intake import EventIn, Incoming, check_jpeg
from relay.problems import DEPENDENCIES, Problem, dependency_problem
from relay.ratelimit import bucket_key, vision_bucket_key
from relay.state import RelayState, Tenant, state
from relay.waiter import ResultWaiter

log = logging.getLogger(__name__)

CAMERA = "deepstack-api"  # the camera these events are listed under (GET /v1/events?camera=deepstack-api)
ONLINE_S = 30  # a worker heartbeats every 5 s at most: seen in the last 30 s is online
MODELS_CACHE_S = 2.0
POLL_S = 1.0  # a lost notification costs this much at most

RESULT_SQL = """
SELECT e.status, e.error, r.moments, r.timings_ms, r.model, r.provider
FROM events e LEFT JOIN results r ON r.event_id = e.id WHERE e.id = $1 AND e.tenant_id = $2
"""


class VisionState:
    """This relay process's waiter and its short cache of the models the workers a tenant may use run."""

    def __init__(self, relay: RelayState) -> None:
        self.relay = relay
        self.waiter = ResultWaiter(relay.redis)
        self._models: dict[tuple[uuid.UUID, bool], tuple[float, frozenset[str]]] = {}

    async def online_models(self, tenant: Tenant) -> frozenset[str]:
        """Models of the online workers that may review this tenant's events: its own, and the shared pool
        unless its routing is ``own``."""
        shared_ok = tenant.routing != "own"
        at, models = self._models.get((tenant.id, shared_ok), (0.0, frozenset()))
        if time.monotonic() - at < MODELS_CACHE_S:
            return models
        async with system_tx(self.relay.pool) as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT model FROM workers WHERE revoked_at IS NULL AND NOT paused "
                "AND last_seen > now() - make_interval(secs => $1) "
                "AND (dedicated_tenant = $2 OR (dedicated_tenant IS NULL AND $3))",
                float(ONLINE_S),
                tenant.id,
                shared_ok,
            )
        models = frozenset(r["model"] for r in rows)
        if len(self._models) > 10_000:
            self._models.clear()
        self._models[(tenant.id, shared_ok)] = (time.monotonic(), models)
        return models

    async def aclose(self) -> None:
        await self.waiter.aclose()


def vision_state(request: Request) -> VisionState:
    return request.app.state.vision


def _answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Response (not StreamingResponse): a body of known length, so always a Content-Length, never chunked.
    return Response(encode(body), status_code=status, media_type="application/json", headers=headers)


def _wire(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Errors in the API's own form: our WireError, and the relay's Problem (401, 429, 503...) mapped."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except WireError as exc:
            return _answer(exc.body(), exc.status, exc.headers())
        except Problem as exc:
            error = WireError(exc.status, exc.detail, exc.retry_after)
            return _answer(error.body(), exc.status, error.headers())
        except tuple(DEPENDENCIES) as exc:
            problem = dependency_problem(request, exc)
            error = WireError(problem.status, problem.detail, problem.retry_after)
            return _answer(error.body(), problem.status, error.headers())

    return run


# ----- the one place this module queues work ----------------------------------------------------


async def enqueue(relay: RelayState, tenant: Tenant, event_id: uuid.UUID, jpeg: bytes, hint: str | None) -> None:
    """``relay.events.post_event``'s storage and queue steps for one uploaded JPEG: the event and its moment
    in PostgreSQL (``accept_event``, with no quota: never charged), then the blob and the entry in Redis, on
    the Pro lane whatever the tenant's tier. Raises Problem, or DatabaseUnavailable when PostgreSQL is down."""
    pro = dataclasses.replace(tenant, lane="pro", daily_deep_reviews=None)
    incoming = Incoming(EventIn(camera=CAMERA, time=datetime.now(UTC), hint=hint), None, {uuid.uuid4().hex: jpeg})
    row = await events._store(relay, pro, incoming, event_id)
    try:
        await relay.queue.enqueue(
            str(pro.id),
            pro.lane,
            str(event_id),
            events.entry_json(pro, event_id, incoming, row["created_at"]),
            relay.routing_ms(pro),
            incoming.blobs,
            relay.settings.blob_ttl_s,
        )
    except (RedisError, OSError) as exc:
        # Stored but not queued: the reconciler queues it later, too late for this answer (503).
        log.warning("DeepStack-API event %s stored but not queued: %s", event_id, exc)
        raise
    relay.metrics.accepted.labels(pro.lane).inc()


# ----- admission ---------------------------------------------------------------------------------


async def _admit(relay: RelayState, tenant: Tenant) -> None:
    """The Pro lane's backlog bound, then this API's bucket for the tier and the Pro bucket, all or none."""
    buckets = [(vision_bucket_key(str(tenant.id)), tenant.vision_rate_per_s, tenant.vision_burst)]
    if tenant.rate_per_s:
        buckets.append((bucket_key(str(tenant.id)), tenant.rate_per_s, tenant.burst))
    depth = await relay.redis.xlen(keys.stream(str(tenant.id), "pro"))
    if depth >= relay.settings.lane_backlog_max:
        raise WireError(503, f"your priority lane has {depth} events waiting; retry later", retry_after=30)
    allowed, retry_after = await relay.limiter.take_all(buckets)
    if not allowed:
        relay.metrics.rejected.labels("vision-rate").inc()
        raise WireError(
            429,
            f"over {tenant.vision_rate_per_s:g} requests/s (burst {tenant.vision_burst}) for this API"
            + (f", or over the Pro rate of {tenant.rate_per_s:g}/s" if tenant.rate_per_s else ""),
            retry_after=retry_after,
        )


# ----- waiting for the result ---------------------------------------------------------------------


async def _result(relay: RelayState, tenant: Tenant, event_id: uuid.UUID) -> Any:
    try:
        async with tenant_tx(relay.pool, tenant.id) as conn:
            return await conn.fetchrow(RESULT_SQL, event_id, tenant.id)
    except DatabaseUnavailable:
        return None  # looked at again at the next poll; the deadline bounds it


async def _wait(relay: RelayState, tenant: Tenant, event_id: uuid.UUID, done: asyncio.Future, until: float) -> Any:
    while True:
        remaining = until - time.monotonic()
        if remaining <= 0:
            raise WireError(
                504,
                f"no result within {relay.settings.vision_deadline_s:g} s; the image stays queued "
                f"as event {event_id} and is reviewed when a worker is free",
            )
        if not done.done():
            await asyncio.wait([done], timeout=min(remaining, POLL_S))
        else:
            await asyncio.sleep(min(remaining, POLL_S))  # notified, yet not stored as done: poll
        row = await _result(relay, tenant, event_id)
        if row is not None and row["status"] != "queued":
            return row


def _response(row: Any, event_id: uuid.UUID, form: Any, command: str, started: float) -> Response:
    if row["status"] == "failed":
        raise WireError(500, f"error occurred on the server: {row['error'] or 'the review failed'}")
    moments = row["moments"] or []
    moment = moments[0] if moments else {}
    error = moment.get("error") or (None if moments else "no moment was reviewed")
    if error:
        status = 400 if error.startswith("image:") else 500
        raise WireError(status, f"invalid image file: {error}" if status == 400 else f"error occurred: {error}")
    detections = [Detection.model_validate(d) for d in moment.get("detections", [])]
    preds = predictions(
        detections, form.min_confidence, form.max_predictions, moment.get("width") or 0, moment.get("height") or 0
    )
    timings = row["timings_ms"] or {}
    body = detection_body(
        preds,
        inference_ms=timings.get("infer", 0.0),
        process_ms=timings.get("decode", 0.0) + timings.get("infer", 0.0),
        round_trip_ms=(time.monotonic() - started) * 1000.0,
        model=row["model"] or "",
        provider=row["provider"] or "",
        command=command,
        request_id=str(event_id),
    )
    return _answer(body)


# ----- the routes --------------------------------------------------------------------------------


async def _detect(request: Request, model: str | None) -> Response:
    started = time.monotonic()
    relay, vs = state(request), vision_state(request)
    form = await read_form(request, relay.settings.max_image_bytes)
    tenant = await relay.tenant_for(credential(form, request.headers.get("authorization")))
    jpeg = form.require_image()
    _ = form.min_confidence, form.max_predictions  # 400 now for a bad value, before anything is stored
    try:
        check_jpeg(jpeg, relay.settings, 0)
    except Problem as exc:
        raise WireError(400 if exc.status == 415 else exc.status, f"invalid image file: {exc.detail}") from None
    offered = await vs.online_models(tenant)
    if not offered:
        whose = "of your own " if tenant.routing == "own" else ""
        raise WireError(503, f"no worker {whose}is online to review the image; start one and retry", retry_after=10)
    if model is not None and model not in offered:
        raise WireError(400, f"no model {model[:100]!r}; the workers run {sorted(offered)}")
    await _admit(relay, tenant)
    event_id = uuid.uuid4()
    done = await vs.waiter.register(str(event_id))
    try:
        await enqueue(relay, tenant, event_id, jpeg, hint=model[:64] if model else None)
        row = await _wait(relay, tenant, event_id, done, started + relay.settings.vision_deadline_s)
    finally:
        vs.waiter.forget(str(event_id))
    return _response(row, event_id, form, "custom" if model else "detect", started)


@_wire
async def detection(request: Request) -> Response:
    return await _detect(request, None)


@_wire
async def custom(request: Request) -> Response:
    return await _detect(request, request.path_params["model"])


@_wire
async def custom_list(request: Request) -> Response:
    relay = state(request)
    form = await read_form(request, relay.settings.max_image_bytes)
    tenant = await relay.tenant_for(credential(form, request.headers.get("authorization")))
    return _answer(ModelList(models=sorted(await vision_state(request).online_models(tenant))))


async def ping(request: Request) -> Response:
    return _answer({"success": True})
