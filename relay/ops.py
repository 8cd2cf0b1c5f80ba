"""Operations endpoints: /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

import logging

import asyncpg
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core import keys
from core.protocol import LANES
from relay import openapi
from relay.db import UNAVAILABLE, DatabaseUnavailable, system_tx
from relay.state import state

log = logging.getLogger(__name__)

_DOC: dict | None = None


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    relay = state(request)
    checks = {}
    try:
        async with relay.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
        checks["postgres"] = f"unreachable: {exc}"
    try:
        await relay.redis.ping()
        checks["redis"] = "ok"
    except (OSError, RedisError) as exc:
        checks["redis"] = f"unreachable: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    relay = state(request)
    m = relay.metrics
    try:
        # Counted by the census (core/queue.py), not here: a scrape never walks every tenant's lanes.
        raw = await relay.redis.hgetall(keys.DEPTH)
        census = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        for lane in LANES:
            depth, pending = census.get(lane, 0), census.get(f"pending:{lane}", 0)
            m.depth.labels(lane).set(depth)
            m.pending.labels(lane).set(pending)
            m.lag.labels(lane).set(max(0, depth - pending))
            m.pool_depth.labels(lane).set(census.get(f"pool:{lane}", 0))
        m.tenants_waiting.set(census.get("tenants", 0))
    except (RedisError, OSError) as exc:
        log.warning("metrics: redis unavailable: %s", exc)
    try:
        async with system_tx(relay.pool) as conn:
            online = await conn.fetchval(
                "SELECT count(*) FROM workers WHERE last_seen > now() - interval '60 seconds' AND revoked_at IS NULL"
            )
            m.workers_online.set(online)
    except DatabaseUnavailable as exc:
        log.warning("metrics: database unavailable: %s", exc)
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi_json(request: Request) -> JSONResponse:
    global _DOC
    if _DOC is None:
        _DOC = openapi.build()
    return JSONResponse(_DOC)
