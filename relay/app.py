"""The relay's Starlette application. Resources live in the lifespan, never at import time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    if not settings.database_url or not settings.redis_url:
        raise ValueError("the relay needs INSANE_DATABASE_URL and INSANE_REDIS_URL")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=20)
        redis = aioredis.from_url(settings.redis_url)
        app.state.pool, app.state.redis = pool, redis
        try:
            yield
        finally:
            await redis.aclose()
            await pool.close()

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz)],
        lifespan=lifespan,
    )


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    checks = {}
    try:
        async with request.app.state.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except (OSError, asyncpg.PostgresError) as exc:
        checks["postgres"] = f"unreachable: {exc}"
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except (OSError, aioredis.RedisError) as exc:
        checks["redis"] = f"unreachable: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)
