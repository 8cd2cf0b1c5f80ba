"""Leases over the relay's worker API (HTTPS + Bearer worker token): the default for home PCs.

    source = HttpLeaseSource("https://relay.example", token="wt_...")
    resp = await source.lease(max_events=8, wait_s=10)
    await source.post_results(results)      # retried on connect errors, timeouts, 5xx and 429
    await source.aclose()

One long-lived ``httpx.AsyncClient``; pass your own (e.g. with ``httpx.MockTransport``) for tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from core.protocol import (
    DeadLetterRequest,
    DeadLetterResponse,
    EventResult,
    Heartbeat,
    HeartbeatResponse,
    LeasedEvent,
    LeaseRequest,
    LeaseResponse,
    ResultsPost,
    ResultsResponse,
)
from core.worker.backoff import Backoff
from core.worker.ports import RelayUnavailable, RequestRejected, SourceError, TokenRejected

log = logging.getLogger(__name__)


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers["retry-after"])
    except (KeyError, ValueError):
        return None


class HttpLeaseSource:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 15.0,
        attempts: int = 3,
        blob_attempts: int = 12,
        max_blob_bytes: int = 16_000_000,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.blob_attempts = blob_attempts
        self.timeout_s = timeout_s
        self.max_blob_bytes = max_blob_bytes
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))
        self._headers = {"Authorization": f"Bearer {token}"}
        self._backoff = Backoff(0.2, 2.0)

    async def _call(
        self,
        method: str,
        path: str,
        body: BaseModel | None = None,
        *,
        attempts: int | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        attempts = attempts or self.attempts
        url = f"{self.base_url}{path}"
        content = body.model_dump_json().encode() if body is not None else None
        headers = dict(self._headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(1, attempts + 1):
            try:
                resp = await self._client.request(
                    method, url, content=content, headers=headers, timeout=timeout_s or self.timeout_s
                )
            except httpx.TransportError as exc:
                failure = RelayUnavailable(f"relay unreachable: {type(exc).__name__}: {exc or 'no answer'}")
            else:
                if resp.status_code < 400:
                    return resp
                rejected = self._failure(method, path, resp)
                if not isinstance(rejected, RelayUnavailable):
                    raise rejected
                failure = rejected
            if attempt == attempts:
                raise failure
            await asyncio.sleep(self._backoff.next(failure.retry_after))
        raise AssertionError("unreachable")

    @staticmethod
    def _failure(method: str, path: str, resp: httpx.Response) -> SourceError:
        detail = resp.text[:200].strip()
        what = f"{method} {path}: HTTP {resp.status_code}"
        if resp.status_code in (401, 403):
            return TokenRejected(f"relay refused the worker token ({what}); enroll this worker again")
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            return RelayUnavailable(f"relay busy or failing ({what}) {detail}".strip(), _retry_after(resp))
        return RequestRejected(f"relay refused the request ({what}) {detail}".strip(), resp.status_code)

    @staticmethod
    def _parse(model: type[BaseModel], resp: httpx.Response, what: str):
        try:
            return model.model_validate_json(resp.content)
        except ValidationError as exc:
            raise RequestRejected(f"relay sent an answer to {what} this worker does not understand: {exc}") from exc

    async def lease(self, max_events: int, wait_s: float) -> LeaseResponse:
        req = LeaseRequest(max_events=max(1, min(64, max_events)), wait_s=wait_s)
        # Once: a retried lease whose first answer was lost would only strand entries until reclaimed.
        resp = await self._call("POST", "/v1/worker/lease", req, attempts=1, timeout_s=wait_s + self.timeout_s)
        return self._parse(LeaseResponse, resp, "lease")

    async def fetch_blob(self, blob: str, event: LeasedEvent) -> bytes:
        # The lease lets the relay check this worker's right to the image even when Redis has lost the
        # hold it set at lease time (or never set one: a LAN worker leases from Redis itself).
        path = f"/v1/worker/blobs/{quote(blob, safe='')}?lease={quote(event.lease_id, safe='')}"
        # More patience than other calls: a moment that cannot be fetched is reviewed as an error for
        # good, so a relay restart or a database outage is waited out (the preloader's deadline bounds it).
        try:
            resp = await self._call("GET", path, attempts=self.blob_attempts)
        except RequestRejected as exc:
            if exc.status != 404:
                raise
            # The words the tenant reads in the moment's error.
            raise RequestRejected(
                f"uploaded image {blob} is gone (its event was finished or failed, or this worker's lease on it "
                "was taken over)",
                404,
            ) from exc
        if len(resp.content) > self.max_blob_bytes:
            raise RequestRejected(f"blob {blob} is larger than {self.max_blob_bytes} bytes")
        return resp.content

    async def post_results(self, results: Sequence[EventResult]) -> ResultsResponse:
        resp = await self._call("POST", "/v1/worker/results", ResultsPost(results=list(results)))
        return self._parse(ResultsResponse, resp, "results")

    async def heartbeat(self, beat: Heartbeat) -> HeartbeatResponse:
        resp = await self._call("POST", "/v1/worker/heartbeat", beat, attempts=1)
        return self._parse(HeartbeatResponse, resp, "heartbeat")

    async def dead_letter(self, lease_ids: Sequence[str], reason: str) -> list[str]:
        """Ask the relay to dead-letter entries this worker holds and will not review (LAN workers,
        whose Redis user cannot); returns the lease ids it moved."""
        body = DeadLetterRequest(lease_ids=list(lease_ids)[:64], reason=reason[:500] or "refused")
        resp = await self._call("POST", "/v1/worker/dead-letter", body)
        return self._parse(DeadLetterResponse, resp, "dead-letter").moved

    async def aclose(self) -> None:
        await self._client.aclose()
