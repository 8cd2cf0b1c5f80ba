"""HttpLeaseSource's mapping of HTTP outcomes to our errors, and its retries (httpx.MockTransport at the seam)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import httpx
import pytest

from core.protocol import EventResult
from core.worker.http_source import HttpLeaseSource
from core.worker.ports import RelayUnavailable, RequestRejected, TokenRejected


def source(handler) -> HttpLeaseSource:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpLeaseSource("http://relay.test", "wt_secret", client=client)


def result() -> EventResult:
    return EventResult(event_id=uuid.uuid4(), lease_id="pro:1-0", k=0, moments=[], verdict=[], model="m", provider="p")


async def test_results_are_retried_through_5xx_and_connect_errors_then_stored():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        if len(calls) == 2:
            return httpx.Response(503, headers={"Retry-After": "0"})
        body = request.read()
        event_id = httpx.Response(200, content=body).json()["results"][0]["event_id"]
        return httpx.Response(200, json={"stored": [event_id], "duplicates": [], "acked": 1})

    s = source(handler)
    r = result()
    resp = await s.post_results([r])
    assert resp.stored == [r.event_id] and len(calls) == 3
    assert calls[-1].headers["authorization"] == "Bearer wt_secret"
    await s.aclose()


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (401, TokenRejected, "enroll this worker again"),
        (422, RequestRejected, "HTTP 422"),
        (500, RelayUnavailable, "HTTP 500"),
        (429, RelayUnavailable, "HTTP 429"),
    ],
)
async def test_status_codes_map_to_our_errors(status, error, text):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, headers={"Retry-After": "0"}, text="nope")

    s = source(handler)
    with pytest.raises(error, match=text):
        await s.post_results([result()])
    assert len(calls) == (3 if error is RelayUnavailable else 1)  # only transient failures are retried
    with pytest.raises(error):
        await s.lease(8, 0)
    assert len(calls) == (4 if error is RelayUnavailable else 2)  # a lease is never retried blindly
    await s.aclose()


async def test_an_answer_outside_the_contract_is_refused():
    s = source(lambda request: httpx.Response(200, json={"events": [{"bogus": 1}]}))
    with pytest.raises(RequestRejected, match="does not understand"):
        await s.lease(1, 0)
    await s.aclose()


async def test_blob_fetch_waits_out_a_relay_restart_and_names_a_gone_image():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        assert request.url.params["lease"] == lease.lease_id  # the relay checks the lease after Redis lost the hold
        if request.url.path.endswith("/gone"):
            return httpx.Response(404, json={"type": "not-found"})
        if len(calls) <= 4:  # the relay restarting: refused, then 503s, longer than the 3 tries other calls get
            if len(calls) == 1:
                raise httpx.ConnectError("refused")
            return httpx.Response(503, headers={"Retry-After": "0"})
        return httpx.Response(200, content=b"\xff\xd8jpeg")

    lease = SimpleNamespace(lease_id=f"{uuid.uuid4()}:pro:1-0")
    s = source(handler)
    s._backoff.low = s._backoff.high = 0.0
    assert await s.fetch_blob("abc", lease) == b"\xff\xd8jpeg" and len(calls) == 5
    with pytest.raises(RequestRejected, match="uploaded image gone is gone") as caught:
        await s.fetch_blob("gone", lease)
    assert caught.value.status == 404
