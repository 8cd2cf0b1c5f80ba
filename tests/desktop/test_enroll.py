"""Enrollment's answers as sentences (MockTransport); the real relay exchange is in test_app.py."""

from __future__ import annotations

import uuid

import httpx
import pytest

from core.enroll import EnrollError, enroll


def client_for(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_a_good_code_gives_a_token() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"], seen["body"] = str(request.url), request.content
        return httpx.Response(200, json={"worker_id": str(uuid.uuid4()), "token": "wt_secret"})

    async with client_for(handler) as client:
        reply = await enroll(client, "https://relay.example/", " CODE-12345 ", name="pc")
    assert reply.token == "wt_secret"
    assert seen["url"] == "https://relay.example/v1/workers/enroll"
    assert b'"code":"CODE-12345"' in seen["body"]


@pytest.mark.parametrize(("status", "message"), [(404, "did not accept this code"), (503, "answered 503")])
async def test_refusals_are_sentences(status: int, message: str) -> None:
    async with client_for(lambda r: httpx.Response(status, json={})) as client:
        with pytest.raises(EnrollError, match=message):
            await enroll(client, "https://relay.example", "CODE-12345")


async def test_unreachable_and_odd_answers() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with client_for(refuse) as client:
        with pytest.raises(EnrollError, match="cannot reach the relay"):
            await enroll(client, "https://relay.example", "CODE-12345")
    async with client_for(lambda r: httpx.Response(200, text="<html>")) as client:
        with pytest.raises(EnrollError, match="not like an Insane AI relay"):
            await enroll(client, "https://relay.example", "CODE-12345")
    async with client_for(lambda r: httpx.Response(200)) as client:
        with pytest.raises(EnrollError, match="does not look like an enrollment code"):
            await enroll(client, "https://relay.example", "short")
