"""PostgreSQL for the relay: migrations, the app role's pool, and tenant-scoped transactions.

    await migrate(settings.database_url)                 # as the owner; idempotent
    pool = await create_pool(settings)                   # as insane_app (row-level security binds it)
    async with tenant_tx(pool, tenant_id) as conn: ...   # sees only that tenant's rows
    async with system_tx(pool) as conn: ...              # the relay's own cross-tenant work

Every query also filters by tenant itself; the policies are the second wall.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from importlib import resources
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from core.settings import Settings

log = logging.getLogger(__name__)

APP_ROLE = "insane_app"
SYSTEM = "*"
# Errors that mean "the database is not there right now": the caller answers 503, never 202.
# OperatorInterventionError (57P01 admin shutdown, 57P02, 57P03) is what a server going down answers.
UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,  # a connection the server left mid-operation (see connection())
    TimeoutError,
)


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached or is shutting down."""


# SQLSTATE class 53, insufficient resources: disk full (53100), out of memory (53200), too many
# connections (53300), configuration limit exceeded (53400). The server is up but cannot take a write.
FULL_CLASS = "53"


class DatabaseFull(DatabaseUnavailable):
    """PostgreSQL is up but out of space (or memory): nothing is stored until it has room again."""


def app_url(settings: Settings) -> str:
    """The app role's URL: INSANE_APP_DATABASE_URL, else the owner's URL with the user set to insane_app."""
    if settings.app_database_url:
        return settings.app_database_url
    if not settings.database_url:
        raise ValueError("INSANE_DATABASE_URL is not set")
    parts = urlsplit(settings.database_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{APP_ROLE}@{host}"))


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of each file in relay/migrations, in order."""
    found = []
    for entry in resources.files("relay").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(owner_url: str, until: int | None = None) -> list[str]:
    """Apply the migrations not yet applied (up to version ``until``, when given), each in its own
    transaction; returns their names.

    An advisory lock makes concurrent relays starting with ``relay_migrate_on_start`` take turns.
    """
    conn = await asyncpg.connect(owner_url)
    applied = []
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute("SELECT pg_advisory_lock(727274)")
        try:
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
            for version, name, sql in migration_files():
                if version in done or (until is not None and version > until):
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, $2)", version, name)
                log.info("applied migration %s", name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(727274)")
    finally:
        await conn.close()
    return applied


async def _no_reset(conn: asyncpg.Connection) -> None:
    # Nothing outlives a transaction here (set_config(..., true) is transaction-local), so asyncpg's
    # RESET ALL on every release is a round trip that buys nothing.
    return None


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        app_url(settings),
        min_size=2,
        max_size=settings.db_pool_size,
        reset=_no_reset,
        init=_init,
        max_inactive_connection_lifetime=60,
        command_timeout=30,
    )


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[PoolConnectionProxy]:
    """A pooled connection that is closed, never given back, when asyncpg reports it broken: a server
    that goes away mid-operation can leave one in a state it cannot leave ("cannot switch to state 12;
    another operation (2) is in progress", MagicStack/asyncpg#1069), and every later user would fail."""
    async with pool.acquire() as conn:
        try:
            yield conn
        except asyncpg.exceptions.InternalClientError:
            conn.terminate()
            raise


@contextlib.asynccontextmanager
async def scoped_tx(pool: asyncpg.Pool, scope: str) -> AsyncIterator[PoolConnectionProxy]:
    try:
        async with connection(pool) as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", scope)
            yield conn
    except UNAVAILABLE as exc:
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc
    except asyncpg.PostgresError as exc:
        if (exc.sqlstate or "").startswith(FULL_CLASS):
            raise DatabaseFull(str(exc) or type(exc).__name__) from exc
        raise


def tenant_tx(pool: asyncpg.Pool, tenant_id: UUID | str) -> contextlib.AbstractAsyncContextManager:
    return scoped_tx(pool, str(UUID(str(tenant_id))))


def system_tx(pool: asyncpg.Pool) -> contextlib.AbstractAsyncContextManager:
    return scoped_tx(pool, SYSTEM)
