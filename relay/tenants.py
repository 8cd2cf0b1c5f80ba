"""Tenants, API keys, tiers and worker enrollment: the operations behind `insane tenant` and /admin.

Each function takes a connection inside :func:`relay.db.system_tx` and raises a :class:`TenantError`
with a user-facing message: :class:`NotFound` when the named thing does not exist, :class:`Invalid` when
a value is refused (a webhook URL outside the SSRF policy, a port out of range), the base class when the
change clashes with what exists.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterable
from typing import Any, Literal, get_args

import asyncpg

from core.ssrf import SsrfBlocked, SsrfGuard, allow_list_host
from relay.auth import API_KEY_PREFIX, WORKER_PREFIX, new_secret

MAX_LIST = 64  # entries in a tenant's private-host or port allow-list
_KEY_ID = re.compile(r"[A-Za-z0-9]{1,64}")


class TenantError(Exception):
    """A tenant, key, tier or code that cannot be changed that way; ``str()`` says why."""


class NotFound(TenantError):
    """The named tenant, key, tier or worker does not exist."""


class Invalid(TenantError):
    """A value the relay refuses to store."""


def storable_text(value: str) -> bool:
    """PostgreSQL text holds no NUL and only valid UTF-8 (a lone surrogate from argv or JSON is neither)."""
    if "\0" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


TIER_COLUMNS = (
    "t.name AS tier, t.lane, t.daily_deep_reviews, t.deep_min_moments, t.rate_per_s, t.burst, t.max_k, "
    "t.vision_rate_per_s, t.vision_burst"
)
Routing = Literal["own", "shared", "own-then-shared"]
ROUTINGS: tuple[str, ...] = get_args(Routing)
# The routing in effect: the tenant's own choice, else own once it has a dedicated worker, else shared.
ROUTING_COLUMNS = (
    "COALESCE(n.routing, CASE WHEN EXISTS (SELECT 1 FROM workers w WHERE w.dedicated_tenant = n.id "
    "AND w.revoked_at IS NULL) THEN 'own' ELSE 'shared' END) AS routing, n.shared_after_s"
)


def routing_ms(routing: str, shared_after_s: float | None, default_after_s: float) -> int:
    """The routing as the shared pool reads it (core/keys.routing): -1 never, else ms before it may."""
    if routing == "own":
        return -1
    if routing == "shared":
        return 0
    return int(1000 * (default_after_s if shared_after_s is None else shared_after_s))


async def _tenant_id(conn: asyncpg.Connection, tenant: str) -> uuid.UUID:
    try:
        row = await conn.fetchrow("SELECT id FROM tenants WHERE id = $1", uuid.UUID(tenant))
    except ValueError:
        ok = 0 < len(tenant) <= 100 and storable_text(tenant)
        row = await conn.fetchrow("SELECT id FROM tenants WHERE name = $1", tenant) if ok else None
    if row is None:
        raise NotFound(f"no tenant {tenant!r}")
    return row["id"]


async def create_tenant(conn: asyncpg.Connection, name: str, tier: str = "guardian") -> dict[str, Any]:
    """A new tenant and its first API key (shown once)."""
    if not name or len(name) > 100 or not storable_text(name) or not name.strip():
        raise Invalid("a tenant name has 1 to 100 characters, not all blank, and no NUL")
    await _check_tier(conn, tier)
    tenant_id = uuid.uuid4()
    try:
        await conn.execute("INSERT INTO tenants (id, name, tier) VALUES ($1, $2, $3)", tenant_id, name, tier)
    except asyncpg.UniqueViolationError:
        raise TenantError(f"a tenant named {name!r} exists already") from None
    key = await add_key(conn, str(tenant_id))
    return {"id": str(tenant_id), "name": name, "tier": tier, "api_key": key}


async def _check_tier(conn: asyncpg.Connection, tier: str) -> None:
    names = [r["name"] for r in await conn.fetch("SELECT name FROM tiers ORDER BY name")]
    if tier not in names:
        raise NotFound(f"no tier {tier!r}; tiers: {', '.join(names)}")


async def list_tenants(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT n.id, n.name, n.tier, n.created_at, n.webhook_url, n.allow_private_hosts, n.allow_ports, "
        "n.routing AS chosen, "
        + ROUTING_COLUMNS
        + ", (SELECT count(*) FROM api_keys k WHERE k.tenant_id = n.id AND k.revoked_at IS NULL) AS keys "
        "FROM tenants n ORDER BY n.created_at, n.name"
    )
    return [
        {
            "id": str(r["id"]),
            "name": r["name"],
            "tier": r["tier"],
            "keys": r["keys"],
            "webhook_url": r["webhook_url"],
            "allow_private_hosts": list(r["allow_private_hosts"]),
            "allow_ports": list(r["allow_ports"]),
            "routing": r["routing"],
            "routing_automatic": r["chosen"] is None,
            "shared_after_s": r["shared_after_s"],
            "created_at": r["created_at"].isoformat(),
        }
        for r in rows
    ]


async def add_key(conn: asyncpg.Connection, tenant: str) -> str:
    tenant_id = await _tenant_id(conn, tenant)
    key = new_secret(API_KEY_PREFIX)
    await conn.execute(
        "INSERT INTO api_keys (key_id, tenant_id, secret_sha256) VALUES ($1, $2, $3)", key.id, tenant_id, key.sha256
    )
    return key.full


async def revoke_key(conn: asyncpg.Connection, key: str) -> str:
    """Revoke by key id or by the whole key; returns the key id."""
    key_id = key.split("_")[1] if key.count("_") >= 2 else key
    done = None
    if _KEY_ID.fullmatch(key_id):
        done = await conn.fetchval(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING key_id", key_id
        )
    if done is None:
        raise NotFound(f"no active key {key_id!r}")
    return done


async def set_tier(conn: asyncpg.Connection, tenant: str, tier: str) -> None:
    tenant_id = await _tenant_id(conn, tenant)
    await _check_tier(conn, tier)
    await conn.execute("UPDATE tenants SET tier = $2 WHERE id = $1", tenant_id, tier)


async def set_webhook(
    conn: asyncpg.Connection, tenant: str, url: str | None, guard: SsrfGuard | None = None
) -> str | None:
    """Set (or clear, with None) the completion webhook; returns the new signing secret.

    The URL must pass the rules delivery applies (``guard``: the relay's webhook guard; by default the
    production one), with the tenant's allowed ports; its host name is resolved and judged at each delivery.
    """
    tenant_id = await _tenant_id(conn, tenant)
    if url is not None:
        ports = await conn.fetchval("SELECT allow_ports FROM tenants WHERE id = $1", tenant_id)
        check_webhook_url(url, ports, guard)
    secret = secrets.token_hex(32) if url else None
    await conn.execute("UPDATE tenants SET webhook_url = $2, webhook_secret = $3 WHERE id = $1", tenant_id, url, secret)
    return secret


def check_webhook_url(url: str, ports: Iterable[int] = (), guard: SsrfGuard | None = None) -> None:
    if len(url) > 2048 or not url.lower().startswith(("http://", "https://")):
        raise Invalid("a webhook URL is http(s) and at most 2048 characters")
    try:
        (guard or SsrfGuard()).with_lists((), ports).check_static(url)
    except SsrfBlocked as exc:
        raise Invalid(f"webhook URL refused: {exc}") from None


async def set_private_hosts(conn: asyncpg.Connection, tenant: str, hosts: list[str]) -> list[str]:
    """Replace the tenant's private-host allow-list; returns it normalised (lower case, IPv4 as dotted quads)."""
    tenant_id = await _tenant_id(conn, tenant)
    if len(hosts) > MAX_LIST:
        raise Invalid(f"at most {MAX_LIST} private hosts")
    try:
        normal = list(dict.fromkeys(allow_list_host(h) for h in hosts))
    except SsrfBlocked as exc:
        raise Invalid(f"private hosts: {exc}") from None
    await conn.execute("UPDATE tenants SET allow_private_hosts = $2 WHERE id = $1", tenant_id, normal)
    return normal


async def set_ports(conn: asyncpg.Connection, tenant: str, ports: list[int]) -> list[int]:
    """Replace the ports the tenant's URLs may use besides 80, 443 and 8080-8999; returns them sorted."""
    tenant_id = await _tenant_id(conn, tenant)
    if len(ports) > MAX_LIST or not all(isinstance(p, int) and 1 <= p <= 65535 for p in ports):
        raise Invalid(f"ports: at most {MAX_LIST} whole numbers from 1 to 65535")
    normal = sorted(set(ports))
    await conn.execute("UPDATE tenants SET allow_ports = $2 WHERE id = $1", tenant_id, normal)
    return normal


async def set_routing(
    conn: asyncpg.Connection, tenant: str, routing: str | None, shared_after_s: float | None = None
) -> uuid.UUID:
    """Choose the tenant's routing (None: automatic); returns the tenant id. The caller mirrors the
    routing in effect into Redis (:func:`effective_routing`)."""
    tenant_id = await _tenant_id(conn, tenant)
    if routing is not None and routing not in ROUTINGS:
        raise TenantError(f"no routing {routing!r}; routings: {', '.join(ROUTINGS)}")
    if shared_after_s is not None and not 0 <= shared_after_s <= 86400:
        raise TenantError("shared_after_s: seconds from 0 to 86400")
    await conn.execute(
        "UPDATE tenants SET routing = $2, shared_after_s = $3 WHERE id = $1", tenant_id, routing, shared_after_s
    )
    return tenant_id


async def effective_routing(
    conn: asyncpg.Connection, tenant_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, float | None]]:
    """{tenant id: (routing, shared_after_s)} in effect for these tenants."""
    rows = await conn.fetch("SELECT n.id, " + ROUTING_COLUMNS + " FROM tenants n WHERE n.id = ANY($1)", tenant_ids)
    return {r["id"]: (r["routing"], r["shared_after_s"]) for r in rows}


async def lookup_key(conn: asyncpg.Connection, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT k.secret_sha256, k.revoked_at, n.id AS tenant_id, n.allow_private_hosts, n.allow_ports, "
        + ROUTING_COLUMNS
        + ", "
        + TIER_COLUMNS
        + " FROM api_keys k JOIN tenants n ON n.id = k.tenant_id JOIN tiers t ON t.name = n.tier WHERE k.key_id = $1",
        key_id,
    )


def new_enroll_code() -> str:
    """144 random bits, URL-safe, never starting with "-": ``insane worker --enroll -x…`` would read
    such a code as an option (one code in 64 did)."""
    while True:
        code = secrets.token_urlsafe(18)
        if not code.startswith("-"):
            return code


async def make_enroll_code(conn: asyncpg.Connection, tenant: str | None = None, ttl_s: int = 3600) -> dict[str, Any]:
    """A one-time code; with ``tenant`` the worker it enrolls serves that tenant only."""
    tenant_id = await _tenant_id(conn, tenant) if tenant else None
    code = new_enroll_code()
    await conn.execute(
        "INSERT INTO enroll_codes (code_sha256, dedicated_tenant, expires_at) "
        "VALUES ($1, $2, now() + make_interval(secs => $3))",
        hashlib.sha256(code.encode()).digest(),
        tenant_id,
        float(ttl_s),
    )
    return {"code": code, "dedicated_tenant": str(tenant_id) if tenant_id else None, "expires_in_s": ttl_s}


async def enroll(conn: asyncpg.Connection, code: str, name: str) -> dict[str, Any] | None:
    """Spend a code on a new worker; None when the code is unknown, used or expired."""
    worker_id = uuid.uuid4()
    row = await conn.fetchrow(
        "UPDATE enroll_codes SET used_at = now(), worker_id = $2 "
        "WHERE code_sha256 = $1 AND used_at IS NULL AND expires_at > now() RETURNING dedicated_tenant",
        hashlib.sha256(code.encode()).digest(),
        worker_id,
    )
    if row is None:
        return None
    token = new_secret(WORKER_PREFIX, worker_id.hex)
    await conn.execute(
        "INSERT INTO workers (id, name, token_sha256, dedicated_tenant) VALUES ($1, $2, $3, $4)",
        worker_id,
        name,
        token.sha256,
        row["dedicated_tenant"],
    )
    dedicated = row["dedicated_tenant"]
    return {"worker_id": worker_id, "token": token.full, "dedicated_tenant": dedicated}


async def lookup_worker(conn: asyncpg.Connection, worker_hex: str) -> asyncpg.Record | None:
    try:
        worker_id = uuid.UUID(hex=worker_hex)
    except ValueError:
        return None
    return await conn.fetchrow(
        "SELECT id, token_sha256, dedicated_tenant, revoked_at FROM workers WHERE id = $1", worker_id
    )


async def list_workers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, name, dedicated_tenant, last_seen, paused, provider, model, revoked_at "
        "FROM workers ORDER BY created_at"
    )
    return [
        {
            "id": str(r["id"]),
            "name": r["name"],
            "dedicated_tenant": str(r["dedicated_tenant"]) if r["dedicated_tenant"] else None,
            "last_seen": r["last_seen"].isoformat() if r["last_seen"] else None,
            "paused": r["paused"],
            "provider": r["provider"],
            "model": r["model"],
            "revoked": r["revoked_at"] is not None,
        }
        for r in rows
    ]


async def revoke_worker(conn: asyncpg.Connection, worker_id: str) -> None:
    try:
        wid = uuid.UUID(worker_id)
    except ValueError:
        raise Invalid(f"not a worker id: {worker_id!r}") from None
    if await conn.fetchval("UPDATE workers SET revoked_at = now() WHERE id = $1 RETURNING id", wid) is None:
        raise NotFound(f"no worker {worker_id!r}")
