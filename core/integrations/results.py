"""The relay's result stream (``GET /v1/events/stream``), followed for good and resumed where it left off.

    async for result in follow_results(client, relay_url, api_key, cursor=state.data.get("cursor")):
        if result.event is not None:
            await handle(result.event)          # the event's summary with its verdict and k
        state.data["cursor"] = result.cursor    # save only once handled: a restart resumes after it
        state.save()

A dropped or refused connection is retried with backoff (1 s to 60 s; a refused API key is logged as
an error and retried every minute, since the key may be fixed on the relay). Reconnecting sends the
last cursor as ``Last-Event-ID``, so the relay replays what was stored meanwhile. The relay may repeat
results from just before the cursor: :class:`Seen` drops them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from core.backoff import Backoff

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 60.0  # the relay sends a keepalive every 15 s; silence this long is a dead connection
KEY_RETRY_S = 60.0  # a refused API key: the operator may fix it on the relay, so ask again this often


@dataclass(frozen=True)
class Result:
    cursor: str | None
    event: dict[str, Any] | None  # None: only a position in the stream (save the cursor, nothing to handle)


class StreamRefused(Exception):
    """The relay answered the stream request with an error."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail") or resp.reason_phrase)
    except (ValueError, AttributeError):
        return resp.reason_phrase


async def follow_results(
    client: httpx.AsyncClient,
    relay_url: str,
    api_key: str,
    cursor: str | None = None,
    connected: asyncio.Event | None = None,
) -> AsyncIterator[Result]:
    """Every result of the tenant from ``cursor`` on (live only without one), across reconnects.

    ``connected`` is set while the stream is open (and cleared when it drops)."""
    backoff = Backoff(1.0, 60.0)
    url = f"{relay_url}/v1/events/stream"
    while True:
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "text/event-stream"}
        if cursor:
            headers["Last-Event-ID"] = cursor
        try:
            async with aconnect_sse(
                client, "GET", url, headers=headers, timeout=httpx.Timeout(10.0, read=READ_TIMEOUT_S)
            ) as source:
                resp = source.response
                if resp.status_code != 200:
                    await resp.aread()
                    raise StreamRefused(resp.status_code, _detail(resp))
                log.info("following the relay's results%s", " from the saved cursor" if cursor else "")
                backoff.reset()
                if connected is not None:
                    connected.set()
                async for message in source.aiter_sse():
                    if message.event != "result":
                        if message.id and not message.data and message.id != cursor:
                            cursor = message.id
                            yield Result(cursor, None)  # a position to resume from, no result
                        continue
                    try:
                        event = json.loads(message.data)
                    except ValueError:
                        log.warning("the relay sent a result that is not JSON; skipped: %.200s", message.data)
                        continue
                    yield Result(message.id or None, event)
                    cursor = message.id or cursor
            delay = backoff.next()
            log.info("the relay closed the result stream; reconnecting in %.1f s", delay)
        except StreamRefused as exc:
            if exc.status == 400 and cursor:
                log.warning("the relay refused the saved cursor (%s); following new results only", exc)
                cursor = None
                delay = 0.0
            elif exc.status in (401, 403):
                delay = KEY_RETRY_S
                log.error("the relay refused the API key (%s); trying again in %.0f s", exc, delay)
            else:
                delay = backoff.next()
                log.warning("result stream: %s; reconnecting in %.1f s", exc, delay)
        except (httpx.HTTPError, SSEError) as exc:
            delay = backoff.next()
            log.warning("result stream: %s; reconnecting in %.1f s", str(exc) or type(exc).__name__, delay)
        if connected is not None:
            connected.clear()
        await asyncio.sleep(delay)


class Seen:
    """Which events were handled, and with which k, for the last ``size`` events (kept in a state file).

    ``seen.is_new(event)`` is False for a repeat; a back-fill (same event, larger k) is an update.
    """

    def __init__(self, stored: dict[str, int] | None = None, size: int = 5000) -> None:
        self.size = size
        self.k: OrderedDict[str, int] = OrderedDict(stored or {})

    def status(self, event: dict[str, Any]) -> str:
        """``new``, ``update`` (more moments reviewed than before) or ``repeat``."""
        before = self.k.get(event["id"])
        if before is None:
            return "new"
        return "update" if (event.get("k") or 0) > before else "repeat"

    def add(self, event: dict[str, Any]) -> None:
        self.k[event["id"]] = int(event.get("k") or 0)
        self.k.move_to_end(event["id"])
        while len(self.k) > self.size:
            self.k.popitem(last=False)

    def dump(self) -> dict[str, int]:
        return dict(self.k)
