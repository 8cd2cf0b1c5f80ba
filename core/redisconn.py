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


def redis_client(url: str, **overrides: Any) -> aioredis.Redis:
    options: dict[str, Any] = dict(socket_connect_timeout=5, socket_timeout=READ_TIMEOUT_S, health_check_interval=30)
    options.update(overrides)
    return aioredis.from_url(url, **options)
