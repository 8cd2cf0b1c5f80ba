"""``insane relay``: run the relay (uvicorn), or one of its operator commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import uuid

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
    p.add_argument("--migrate", action="store_true", help="apply database migrations before serving")
    p.set_defaults(func=serve_command, settings_overrides=lambda a: {"relay_host": a.host, "relay_port": a.port})
    ops = p.add_subparsers(dest="relay_command", metavar="OPERATION")
    m = ops.add_parser(
        "migrate",
        help="apply the database migrations (as the owner, INSANE_DATABASE_URL)",
        description="Apply relay/migrations/*.sql not yet applied, each in a transaction, and "
        "create the insane_app role the relay connects as.",
    )
    m.set_defaults(func=migrate_command)
    a = ops.add_parser(
        "worker-acl",
        help="print (or create) a least-privilege Redis user for a LAN worker",
        description="A worker on the operator's own network may lease straight from Redis. Its "
        "user may read the lanes (XREADGROUP/XAUTOCLAIM/XPENDING/XRANGE/XLEN, the take as a Lua script "
        "under its own key permissions) and GET blobs, nothing else (no XACK, XADD, XDEL, XTRIM, XGROUP, "
        "EVAL of a body, KEYS). With --tenant its keys are that tenant's only. Results still go over the "
        "relay's API.",
    )
    a.add_argument("name", help="the Redis user name, e.g. worker-garage")
    a.add_argument("--tenant", help="a worker dedicated to this tenant id: only its keys (default: the shared pool)")
    a.add_argument("--password", help="its password (default: a new random one, printed)")
    a.add_argument("--apply", action="store_true", help="run ACL SETUSER on INSANE_REDIS_URL instead of printing")
    a.set_defaults(func=worker_acl_command)


def serve_command(args: argparse.Namespace, settings) -> int:
    if not settings.database_url or not settings.redis_url:
        print("insane relay: set INSANE_DATABASE_URL and INSANE_REDIS_URL (or run `insane demo`)", file=sys.stderr)
        return 2
    if args.migrate:
        settings = settings.model_copy(update={"relay_migrate_on_start": True})
    try:
        import uvloop  # what `uvicorn` itself would pick; about a third less CPU per request
    except ImportError:
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))


def migrate_command(args: argparse.Namespace, settings) -> int:
    from relay.db import migrate

    if not settings.database_url:
        print("insane relay migrate: set INSANE_DATABASE_URL (the database owner's URL)", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(migrate(settings.database_url))
    except (OSError, ConnectionError) as exc:
        print(f"insane relay migrate: cannot reach PostgreSQL: {exc}", file=sys.stderr)
        return 1
    print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")
    return 0


def worker_acl_command(args: argparse.Namespace, settings) -> int:
    import secrets

    from core.streams import acl_command, acl_rules

    password = args.password or secrets.token_urlsafe(24)
    if args.tenant is not None:
        try:
            args.tenant = str(uuid.UUID(args.tenant))
        except ValueError:
            print(f"insane relay worker-acl: --tenant takes a tenant id, not {args.tenant!r}", file=sys.stderr)
            return 2
    if not args.apply:
        print(acl_command(args.name, password, args.tenant))
        if not args.password:
            print(f"# password: {password}", file=sys.stderr)
        return 0
    if not settings.redis_url:
        print("insane relay worker-acl --apply: set INSANE_REDIS_URL", file=sys.stderr)
        return 2

    async def apply() -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.redis_url)
        try:
            await client.execute_command("ACL", "SETUSER", *acl_rules(args.name, password, args.tenant))
        finally:
            await client.aclose()

    asyncio.run(apply())
    print(f"created Redis user {args.name}; password: {password}")
    return 0


async def serve(settings) -> int:
    import uvicorn

    from relay.app import create_app
    from relay.server import DrainingServer

    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    # it a keep-alive response written in two parts waits ~40 ms for the client's delayed ACK.
    family = socket.AF_INET6 if ":" in settings.relay_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.relay_host, settings.relay_port))
    host, port = sock.getsockname()[:2]
    sock.listen(2048)  # connections made right after the line below queue instead of being refused
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = DrainingServer(config)
    log.info("relay listening on http://%s:%d", host, port)
    print(f"relay listening on http://{host}:{port}", flush=True)
    # uvicorn drains and shuts down on SIGINT/SIGTERM, then re-raises the signal to the handler that was
    # in place before it: make that one a no-op so a requested shutdown exits 0 rather than by the signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    await server.serve(sockets=[sock])
    return 0 if server.started else 1
