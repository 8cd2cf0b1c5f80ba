"""What each answer of POST /v1/events means to the bridge (the relay's answers, through httpx's MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from core.integrations.relay_api import Accepted, Rejected, RelayApi, RelayError, Retry

META = {"camera": "front_door", "time": "2026-01-01T00:00:00+00:00", "hint": "person", "idempotency_key": "frigate:1"}


def api(handler) -> RelayApi:
    return RelayApi(httpx.AsyncClient(transport=httpx.MockTransport(handler)), "https://relay.example/", "ik_a_b")


def problem(status: int, detail: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"type": "x", "title": "x", "status": status, "detail": detail}, headers=headers)


async def test_a_post_is_multipart_with_the_key_and_the_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"id": "e1", "status": "queued", "replayed": False})

    outcome = await api(handler).post(META, [b"\xff\xd8one", b"\xff\xd8two"])
    assert outcome == Accepted("e1", False)
    request = seen[0]
    assert request.url == "https://relay.example/v1/events"
    assert request.headers["authorization"] == "Bearer ik_a_b" and request.headers["idempotency-key"] == "frigate:1"
    body = request.read()
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert json.dumps({"camera": "front_door", "time": META["time"], "hint": "person"}).encode() in body
    assert body.count(b'name="moment"') == 2 and b"\xff\xd8two" in body


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (httpx.Response(200, json={"id": "e1", "replayed": True}), Accepted("e1", True)),
        (
            problem(503, "the queue is unavailable; retry later", **{"Retry-After": "5"}),
            Retry("HTTP 503: the queue is unavailable; retry later", 5.0),
        ),
        (
            problem(429, "daily quota of 5 deep reviews is used up", **{"Retry-After": "3600"}),
            Retry("HTTP 429: daily quota of 5 deep reviews is used up", 3600.0),
        ),
        (problem(401, "unknown API key"), Retry("HTTP 401: unknown API key", 60.0, key_refused=True)),
        (problem(422, "moments[0]: not a JPEG"), Rejected("HTTP 422: moments[0]: not a JPEG")),
        (problem(413, "request body over 64000000 bytes"), Rejected("HTTP 413: request body over 64000000 bytes")),
        (httpx.Response(502, text="<html>bad gateway</html>"), Retry("HTTP 502: Bad Gateway")),
        (httpx.Response(202, text="not json"), Retry("HTTP 202 without an event id")),
    ],
)
async def test_each_answer_has_one_meaning(answer: httpx.Response, outcome) -> None:
    assert await api(lambda _: answer).post(META, [b"\xff\xd8"]) == outcome


async def test_no_answer_is_a_retry_and_a_read_error_is_mapped() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    assert await api(refuse).post(META, []) == Retry("the relay did not answer: All connection attempts failed")
    with pytest.raises(RelayError, match="GET /v1/events/e1: All connection attempts failed"):
        await api(refuse).event("e1")
    assert await api(lambda _: problem(404, "no such event")).event("e1") is None
    with pytest.raises(RelayError, match="HTTP 503"):
        await api(lambda _: problem(503, "the database is unavailable")).event("e1")
