"""Redis clients for the relay and LAN workers, with timeouts that fit blocking stream reads.

redis-py 8 gives every client a 5-second socket timeout by default, which breaks a long-poll
``XREADGROUP BLOCK`` of up to 30 s: the read would fail as a timeout while Redis is simply waiting for
work. The read timeout here outlasts the longest block the protocol allows, and a health check on idle
connections still finds a dead peer.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from core.protocol import LeaseRequest

# The longest XREADGROUP BLOCK a lease may ask for, plus room for a slow reply.
MAX_BLOCK_S = float(LeaseRequest.model_fields["wait_s"].metadata[-1].le)
READ_TIMEOUT_S = MAX_BLOCK_S + 15.0


def redis_client(url: str, max_connections: int | None = None, wait_s: float = 5.0, **overrides: Any) -> aioredis.Redis:
    """A client for ``url``. With ``max_connections``, a bounded pool that makes a command wait (up to
    ``wait_s``) for a free connection when all are busy: redis-py's default pool raises at once instead
    (MaxConnectionsError at 100), which turned a burst of a few hundred workers' leases into 503s."""
    options: dict[str, Any] = dict(socket_connect_timeout=5, socket_timeout=READ_TIMEOUT_S, health_check_interval=30)
    options.update(overrides)
    if max_connections is None:
        return aioredis.from_url(url, **options)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=wait_s, **options)
    client = aioredis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool too, as from_url's clients do
    return client
