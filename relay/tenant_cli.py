"""``insane tenant``: tenants, API keys, tiers, webhooks and worker enrollment codes.

Talks to PostgreSQL directly (INSANE_DATABASE_URL, as the relay's app role); the admin HTTP API
(INSANE_ADMIN_TOKEN) does the same over the network. Secrets are printed once and stored hashed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import asyncpg
from redis.exceptions import RedisError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tenant",
        help="manage tenants, API keys, tiers and worker enrollment codes",
        description="Manage the relay's tenants (needs INSANE_DATABASE_URL; run `insane relay migrate` first).",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    ops = p.add_subparsers(dest="tenant_command", metavar="OPERATION", required=True)
    c = ops.add_parser("create", help="create a tenant and its first API key")
    c.add_argument("name")
    c.add_argument("--tier", default="guardian", help="guardian (default) or pro; tiers live in the database")
    c.set_defaults(op=lambda a: ("create_tenant", a.name, a.tier))
    ls = ops.add_parser("list", help="list tenants")
    ls.set_defaults(op=lambda a: ("list_tenants",))
    key = ops.add_parser("key", help="add or revoke API keys").add_subparsers(dest="key_command", required=True)
    ka = key.add_parser("add", help="a new API key for TENANT (id or name)")
    ka.add_argument("tenant")
    ka.set_defaults(op=lambda a: ("add_key", a.tenant))
    kr = key.add_parser("revoke", help="revoke a key (its id, or the whole key)")
    kr.add_argument("key")
    kr.set_defaults(op=lambda a: ("revoke_key", a.key))
    t = ops.add_parser("tier", help="move TENANT to TIER")
    t.add_argument("tenant")
    t.add_argument("tier")
    t.set_defaults(op=lambda a: ("set_tier", a.tenant, a.tier))
    w = ops.add_parser("webhook", help="set the completion webhook URL of TENANT (prints its signing secret)")
    w.add_argument("tenant")
    w.add_argument(
        "url",
        nargs="?",
        help="http(s) URL on a public host, port 80, 443, 8080-8999 or one of the tenant's ports; "
        "leave out to remove the webhook",
    )
    w.set_defaults(op=lambda a: ("set_webhook", a.tenant, a.url))
    r = ops.add_parser(
        "routing",
        help="choose which workers may review TENANT's events",
        description="own: only workers dedicated to the tenant (events wait while none is online); shared: the "
        "operator's shared pool; own-then-shared: its own workers first, the pool after --after seconds; auto: "
        "own once the tenant has a dedicated worker, else shared (the default).",
    )
    r.add_argument("tenant")
    r.add_argument("routing", choices=["own", "shared", "own-then-shared", "auto"])
    r.add_argument("--after", type=float, help="own-then-shared: seconds before the pool may take an event")
    r.set_defaults(op=lambda a: ("set_routing", a.tenant, None if a.routing == "auto" else a.routing, a.after))
    pt = ops.add_parser(
        "ports", help="set the ports TENANT's URLs (moments, webhook) may use besides 80, 443 and 8080-8999"
    )
    pt.add_argument("tenant")
    pt.add_argument("ports", nargs="*", type=int, metavar="PORT", help="1 to 65535; none clears the list")
    pt.set_defaults(op=lambda a: ("set_ports", a.tenant, a.ports))
    e = ops.add_parser("enroll-code", help="a one-time code a worker exchanges for its token (POST /v1/worker/enroll)")
    e.add_argument("--tenant", help="make the worker dedicated to this tenant (default: a shared worker)")
    e.add_argument("--ttl", type=int, default=3600, help="seconds the code stays valid (default 3600)")
    e.set_defaults(op=lambda a: ("make_enroll_code", a.tenant, a.ttl))
    p.set_defaults(func=tenant_command)


def tenant_command(args: argparse.Namespace, settings) -> int:
    from relay import db, tenants

    if not settings.database_url:
        print("insane tenant: set INSANE_DATABASE_URL", file=sys.stderr)
        return 2
    name, *op_args = args.op(args)

    if name == "set_routing" and not settings.redis_url:
        # The pool reads the routing from Redis; without it a change would wait for the reconciler.
        print("insane tenant routing: set INSANE_REDIS_URL too (the relay's Redis)", file=sys.stderr)
        return 2

    async def run():
        conn = await asyncpg.connect(db.app_url(settings))
        try:
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", db.SYSTEM)
                result = await getattr(tenants, name)(conn, *op_args)
                if name == "set_routing":
                    result = await _mirror_routing(conn, result, settings)
                return result
        finally:
            await conn.close()

    try:
        result = asyncio.run(run())
    except tenants.TenantError as exc:
        print(f"insane tenant: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"insane tenant: database error: {exc}", file=sys.stderr)
        return 1
    except RedisError as exc:
        print(f"insane tenant: Redis error (nothing was changed): {exc}", file=sys.stderr)
        return 1
    if args.json or isinstance(result, dict | list):
        print(json.dumps(result, indent=None if args.json else 2, default=str))
    elif result is not None:
        print(result)
    else:
        print("ok")
    return 0


async def _mirror_routing(conn: asyncpg.Connection, tenant_id, settings) -> dict:
    """Push the routing now in effect into the relay's Redis, where the shared pool reads it."""
    from core.redisconn import redis_client
    from relay import tenants
    from relay.routing import sync_routing

    routing, after = (await tenants.effective_routing(conn, [tenant_id]))[tenant_id]
    client = redis_client(settings.redis_url)
    try:
        await sync_routing(
            client, {str(tenant_id): tenants.routing_ms(routing, after, settings.routing_shared_after_s)}
        )
    finally:
        await client.aclose()
    return {"tenant": str(tenant_id), "routing": routing, "shared_after_s": after}
