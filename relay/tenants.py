"""Tenants, API keys, tiers and worker enrollment: the operations behind `insane tenant` and /admin.

Each function takes a connection inside :func:`relay.db.system_tx` and raises :class:`TenantError`
with a user-facing message when the named thing does not exist or cannot be changed.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

import asyncpg

from relay.auth import API_KEY_PREFIX, WORKER_PREFIX, new_secret


class TenantError(Exception):
    """A tenant, key, tier or code that does not exist or cannot be changed; ``str()`` says which."""


TIER_COLUMNS = (
    "t.name AS tier, t.lane, t.daily_deep_reviews, t.deep_min_moments, t.rate_per_s, t.burst, t.max_k, "
    "t.vision_rate_per_s, t.vision_burst"
)


async def _tenant_id(conn: asyncpg.Connection, tenant: str) -> uuid.UUID:
    try:
        row = await conn.fetchrow("SELECT id FROM tenants WHERE id = $1", uuid.UUID(tenant))
    except ValueError:
        row = await conn.fetchrow("SELECT id FROM tenants WHERE name = $1", tenant)
    if row is None:
        raise TenantError(f"no tenant {tenant!r}")
    return row["id"]


async def create_tenant(conn: asyncpg.Connection, name: str, tier: str = "guardian") -> dict[str, Any]:
    """A new tenant and its first API key (shown once)."""
    if not name or len(name) > 100:
        raise TenantError("a tenant name has 1 to 100 characters")
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
        raise TenantError(f"no tier {tier!r}; tiers: {', '.join(names)}")


async def list_tenants(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT n.id, n.name, n.tier, n.created_at, n.webhook_url, n.allow_private_hosts, "
        "(SELECT count(*) FROM api_keys k WHERE k.tenant_id = n.id AND k.revoked_at IS NULL) AS keys "
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
    done = await conn.fetchval(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING key_id", key_id
    )
    if done is None:
        raise TenantError(f"no active key {key_id!r}")
    return done


async def set_tier(conn: asyncpg.Connection, tenant: str, tier: str) -> None:
    tenant_id = await _tenant_id(conn, tenant)
    await _check_tier(conn, tier)
    await conn.execute("UPDATE tenants SET tier = $2 WHERE id = $1", tenant_id, tier)


async def set_webhook(conn: asyncpg.Connection, tenant: str, url: str | None) -> str | None:
    """Set (or clear, with None) the completion webhook; returns the new signing secret."""
    tenant_id = await _tenant_id(conn, tenant)
    if url is not None and (not url.startswith(("http://", "https://")) or len(url) > 2048):
        raise TenantError("a webhook URL is http(s) and at most 2048 characters")
    secret = secrets.token_hex(32) if url else None
    await conn.execute("UPDATE tenants SET webhook_url = $2, webhook_secret = $3 WHERE id = $1", tenant_id, url, secret)
    return secret


async def set_private_hosts(conn: asyncpg.Connection, tenant: str, hosts: list[str]) -> None:
    tenant_id = await _tenant_id(conn, tenant)
    await conn.execute("UPDATE tenants SET allow_private_hosts = $2 WHERE id = $1", tenant_id, hosts)


async def lookup_key(conn: asyncpg.Connection, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT k.secret_sha256, k.revoked_at, n.id AS tenant_id, n.allow_private_hosts, "
        + TIER_COLUMNS
        + " FROM api_keys k JOIN tenants n ON n.id = k.tenant_id JOIN tiers t ON t.name = n.tier WHERE k.key_id = $1",
        key_id,
    )


async def make_enroll_code(conn: asyncpg.Connection, tenant: str | None = None, ttl_s: int = 3600) -> dict[str, Any]:
    """A one-time code; with ``tenant`` the worker it enrolls serves that tenant only."""
    tenant_id = await _tenant_id(conn, tenant) if tenant else None
    code = secrets.token_urlsafe(18)
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
        raise TenantError(f"not a worker id: {worker_id!r}") from None
    if await conn.fetchval("UPDATE workers SET revoked_at = now() WHERE id = $1 RETURNING id", wid) is None:
        raise TenantError(f"no worker {worker_id!r}")
