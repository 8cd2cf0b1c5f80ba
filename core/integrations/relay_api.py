"""The relay's tenant API as a bridge uses it: post an event with its JPEGs, read an event back.

    relay = RelayApi(client, "https://relay.example", api_key)
    outcome = await relay.post(meta, images)   # Accepted | Retry | Rejected
    view = await relay.event(event_id)         # GET /v1/events/{id} as a dict; None when it is not there

A post carries ``Idempotency-Key``: posting the same event again (after a timeout, a relay outage or
a restart) answers the stored event and is not charged twice. Outcomes: :class:`Accepted` (202, or
200 for a repeat), :class:`Retry` (no answer, 408, 429, 5xx, or a refused key the relay's operator
may still fix) and :class:`Rejected` (any other 4xx: the relay will never take this event).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

POST_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
GET_TIMEOUT = httpx.Timeout(15.0, connect=10.0)


@dataclass(frozen=True)
class Accepted:
    event_id: str
    replayed: bool


@dataclass(frozen=True)
class Retry:
    reason: str
    after_s: float | None = None
    key_refused: bool = False


@dataclass(frozen=True)
class Rejected:
    reason: str


class RelayError(Exception):
    """A read from the relay failed (no answer, or an error status)."""


def _reason(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return f"HTTP {resp.status_code}: {detail or resp.reason_phrase}"


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


class RelayApi:
    def __init__(self, client: httpx.AsyncClient, relay_url: str, api_key: str) -> None:
        self.client = client
        self.url = relay_url.rstrip("/")
        self.auth = {"Authorization": f"Bearer {api_key}"}

    async def post(self, meta: dict[str, Any], images: list[bytes]) -> Accepted | Retry | Rejected:
        event = {"camera": meta["camera"], "time": meta["time"], "hint": meta.get("hint")}
        files: list[tuple[str, tuple[str | None, str | bytes, str]]] = [
            ("event", (None, json.dumps(event), "application/json"))
        ]
        files += [("moment", (f"m{i:03d}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
        headers = {**self.auth, "Idempotency-Key": meta["idempotency_key"]}
        try:
            resp = await self.client.post(f"{self.url}/v1/events", files=files, headers=headers, timeout=POST_TIMEOUT)
        except httpx.HTTPError as exc:
            return Retry(f"the relay did not answer: {str(exc) or type(exc).__name__}")
        if resp.status_code in (200, 201, 202):
            try:
                body = resp.json()
                return Accepted(str(body["id"]), bool(body.get("replayed")))
            except (ValueError, KeyError, TypeError):
                return Retry(f"HTTP {resp.status_code} without an event id")
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            return Retry(_reason(resp), _retry_after(resp))
        if resp.status_code in (401, 403):
            return Retry(_reason(resp), 60.0, key_refused=True)
        return Rejected(_reason(resp))

    async def event(self, event_id: str) -> dict[str, Any] | None:
        try:
            resp = await self.client.get(f"{self.url}/v1/events/{event_id}", headers=self.auth, timeout=GET_TIMEOUT)
        except httpx.HTTPError as exc:
            raise RelayError(f"GET /v1/events/{event_id}: {str(exc) or type(exc).__name__}") from exc
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise RelayError(f"GET /v1/events/{event_id}: {_reason(resp)}")
        try:
            return resp.json()
        except ValueError as exc:
            raise RelayError(f"GET /v1/events/{event_id}: not JSON") from exc
