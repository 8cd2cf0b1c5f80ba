"""relay.db's connection handling: a connection asyncpg reports broken never goes back to the pool."""

from __future__ import annotations

import asyncpg
import pytest

from insane.devkit.relay import fresh_database
from relay.db import UNAVAILABLE, DatabaseUnavailable, connection, system_tx


async def test_a_broken_connection_is_closed_not_pooled_and_reads_as_unavailable(services) -> None:
    pool = await asyncpg.create_pool(fresh_database(services), min_size=1, max_size=1)
    try:
        with pytest.raises(asyncpg.exceptions.InternalClientError):
            async with connection(pool) as conn:
                broken = conn.get_server_pid()
                # What asyncpg raises when the server went away mid-operation (MagicStack/asyncpg#1069).
                raise asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2)")
        async with connection(pool) as conn:  # the pool's one slot holds a fresh connection
            assert conn.get_server_pid() != broken and await conn.fetchval("SELECT 1") == 1
        assert issubclass(asyncpg.exceptions.InternalClientError, UNAVAILABLE)
        with pytest.raises(DatabaseUnavailable):  # so a handler answers 503, never 500
            async with system_tx(pool):
                raise asyncpg.exceptions.InternalClientError("cannot switch to state 12")
    finally:
        await pool.close()
