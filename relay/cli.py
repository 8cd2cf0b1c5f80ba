"""``insane relay``: run the relay (uvicorn), or one of its operator commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "relay",
        help="run the hosted relay (events API, worker API, results)",
        description="Run the relay's HTTP service. It needs INSANE_DATABASE_URL (PostgreSQL) and "
        "INSANE_REDIS_URL (Redis); `insane services up` gives throwaway ones.",
    )
    p.add_argument("--host", help="interface to listen on (INSANE_RELAY_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port, 0 for any free one (INSANE_RELAY_PORT, default 8787)")
    p.set_defaults(func=serve_command, settings_overrides=lambda a: {"relay_host": a.host, "relay_port": a.port})


def serve_command(args: argparse.Namespace, settings) -> int:
    if not settings.database_url or not settings.redis_url:
        print("insane relay: set INSANE_DATABASE_URL and INSANE_REDIS_URL (or run `insane demo`)", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings))


async def serve(settings) -> int:
    import uvicorn

    from relay.app import create_app

    sock = socket.socket(socket.AF_INET6 if ":" in settings.relay_host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.relay_host, settings.relay_port))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(settings), log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    log.info("relay listening on http://%s:%d", host, port)
    print(f"relay listening on http://{host}:{port}", flush=True)
    # uvicorn drains and shuts down on SIGINT/SIGTERM, then re-raises the signal to the handler that was
    # in place before it: make that one a no-op so a requested shutdown exits 0 rather than by the signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    await server.serve(sockets=[sock])
    return 0 if server.started else 1
