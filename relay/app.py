"""The relay's Starlette application. Resources live in the lifespan, never at import time.

app = create_app(settings)                 # uvicorn runs it; `insane relay` does exactly that
app = create_app(settings, webhook_guard=SsrfGuard(frozenset({"127.0.0.1"})))   # tests on loopback
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from core.queue import Queue
from core.redisconn import redis_client
from core.settings import Settings
from core.ssrf import SsrfGuard
from core.wakeups import WorkSignals
from relay import admin, db, events, legacy, ops, reconciler, sse, vision, waiting, webhooks, workers
from relay.metrics import RelayMetrics
from relay.problems import (
    DEPENDENCIES,
    Problem,
    dependency_handler,
    http_exception_handler,
    problem_handler,
    problem_index,
    problem_page,
)
from relay.ratelimit import RateLimiter
from relay.state import RelayState

log = logging.getLogger(__name__)

ROUTES = [
    Route("/healthz", ops.healthz),
    Route("/readyz", ops.readyz),
    Route("/metrics", ops.metrics),
    Route("/openapi.json", ops.openapi_json),
    Route("/problems", problem_index, methods=["GET"]),
    Route("/problems/{slug}", problem_page, methods=["GET"]),
    Route("/v1/events", events.post_event, methods=["POST"]),
    Route("/v1/events", events.list_events, methods=["GET"]),
    Route("/v1/events/stream", sse.stream_events, methods=["GET"]),
    Route("/v1/events/{event_id}", events.get_event, methods=["GET"]),
    Route("/v1/workers", waiting.list_own_workers, methods=["GET"]),
    Route("/v1/vision/detection", vision.detection, methods=["POST"]),
    Route("/v1/vision/custom/list", vision.custom_list, methods=["POST", "GET"]),
    Route("/v1/vision/custom/{model}", vision.custom, methods=["POST"]),
    Route("/v1/server/status/ping", vision.ping, methods=["GET"]),
    Route("/v1/worker/enroll", workers.enroll, methods=["POST"]),
    Route("/v1/workers/enroll", workers.enroll, methods=["POST"]),  # its first path, kept for older workers
    Route("/v1/worker/lease", workers.lease, methods=["POST"]),
    Route("/v1/worker/blobs/{blob}", workers.blob, methods=["GET"]),
    Route("/v1/worker/results", workers.results, methods=["POST"]),
    Route("/v1/worker/heartbeat", workers.heartbeat, methods=["POST"]),
    Route("/v1/worker/dead-letter", workers.dead_letter_held, methods=["POST"]),
    Route("/admin/tenants", admin.list_tenants, methods=["GET"]),
    Route("/admin/tenants", admin.create_tenant, methods=["POST"]),
    Route("/admin/tenants/{tenant}/keys", admin.add_key, methods=["POST"]),
    Route("/admin/tenants/{tenant}/tier", admin.set_tier, methods=["PUT"]),
    Route("/admin/tenants/{tenant}/webhook", admin.set_webhook, methods=["PUT"]),
    Route("/admin/tenants/{tenant}/private-hosts", admin.set_private_hosts, methods=["PUT"]),
    Route("/admin/tenants/{tenant}/routing", admin.set_routing, methods=["PUT"]),
    Route("/admin/tenants/{tenant}/ports", admin.set_ports, methods=["PUT"]),
    Route("/admin/keys/{key_id}", admin.revoke_key, methods=["DELETE"]),
    Route("/admin/enroll-codes", admin.enroll_code, methods=["POST"]),
    Route("/admin/workers", admin.list_workers, methods=["GET"]),
]


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Problem(500, "internal-error", "the relay failed; the error is logged").response(request.url.path)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client closed the connection before its body had arrived (a worker killed mid-request, a camera
    # that gave up): nothing was done, and nobody reads this answer.
    log.debug("%s %s: the client left before its body arrived", request.method, request.url.path)
    return Response(status_code=400)


# Our typed errors, Starlette's own and a failed dependency (503 with Retry-After) as problem+json; the rest a
# logged 500. Handlers raise these and never map them themselves.
EXCEPTION_HANDLERS = {
    Problem: problem_handler,
    HTTPException: http_exception_handler,
    ClientDisconnect: _client_gone,
    **dict.fromkeys(DEPENDENCIES, dependency_handler),
    Exception: _server_error,
}


def create_app(settings: Settings, webhook_guard: SsrfGuard | None = None, background: bool = True) -> Starlette:
    """``background=False`` leaves out the reconciler and webhook loops (tests drive them by hand)."""
    database_url, redis_url = settings.database_url, settings.redis_url
    if not database_url or not redis_url:
        raise ValueError("the relay needs INSANE_DATABASE_URL and INSANE_REDIS_URL")
    guard = webhook_guard or SsrfGuard()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.relay_migrate_on_start:
            await db.migrate(database_url)
        pool = await db.create_pool(settings)
        redis = redis_client(redis_url, max_connections=settings.redis_max_connections)
        client = webhooks.guarded_client(guard)
        tasks: list[asyncio.Task] = []
        try:
            signals = WorkSignals(redis)
            relay = RelayState(settings, pool, redis, Queue(redis), signals, RateLimiter(redis), RelayMetrics())
            app.state.relay = relay
            await legacy.move_lanes_or_later(relay)
            # Serving leases needs the work signals and the census (queue depth), also in tests.
            tasks = [
                asyncio.create_task(signals.run(), name="work-signals"),
                asyncio.create_task(reconciler.run_census(relay), name="census"),
            ]
            app.state.vision = vision.VisionState(relay)
            if background:
                tasks += [
                    asyncio.create_task(reconciler.run(relay), name="reconciler"),
                    asyncio.create_task(webhooks.run(relay, client, guard), name="webhooks"),
                ]
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if getattr(app.state, "vision", None) is not None:
                await app.state.vision.aclose()
            await client.aclose()
            await redis.aclose()
            await pool.close()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.webhook_guard = guard  # set_webhook checks URLs by the rules delivery applies
    return app
