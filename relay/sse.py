"""GET /v1/events/stream: Server-Sent Events of the tenant's results as they land.

Results are announced on the Redis channel ``insane:done:<tenant id>`` by whichever relay stored
them, so a stream on one relay sees results posted to another. Each message is ``event: result``
with the event's summary as ``data``; a comment line every ``keepalive_s`` keeps proxies open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import StreamingResponse

from core import keys
from relay.db import DatabaseUnavailable, tenant_tx
from relay.problems import unavailable
from relay.state import state
from relay.views import EVENT_SQL, summary

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
_DRAINED = object()


async def stream_events(request: Request) -> StreamingResponse:
    relay = state(request)
    tenant = await relay.tenant(request)
    pubsub = relay.redis.pubsub()
    try:
        await pubsub.subscribe(keys.done_channel(str(tenant.id)))
    except (RedisError, OSError) as exc:
        await pubsub.aclose()
        raise unavailable("the result stream") from exc

    async def messages() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while True:
                try:
                    msg = await relay.unless_draining(
                        pubsub.get_message(ignore_subscribe_messages=True, timeout=KEEPALIVE_S), _DRAINED
                    )
                except (RedisError, OSError) as exc:
                    log.warning("result stream for tenant %s ended: %s", tenant.id, exc)
                    return
                if msg is _DRAINED:
                    return  # the relay is shutting down: the client reconnects (to another relay)
                if msg is None:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                try:
                    event_id = uuid.UUID(msg["data"].decode())
                    async with tenant_tx(relay.pool, tenant.id) as conn:
                        row = await conn.fetchrow(EVENT_SQL, event_id, tenant.id)
                except (ValueError, DatabaseUnavailable) as exc:
                    log.warning("result stream skipped a message: %s", exc)
                    continue
                if row is not None:
                    yield f"id: {event_id}\nevent: result\ndata: {json.dumps(summary(row))}\n\n"
        finally:
            await asyncio.shield(pubsub.aclose())

    return StreamingResponse(
        messages(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
