"""Problem types are paths on the relay that document themselves, and every slug the code raises is registered."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from insane.devkit.relay import RelayServer
from relay.app import EXCEPTION_HANDLERS
from relay.db import DatabaseUnavailable
from relay.problems import TYPE_BASE, TYPES

RELAY = Path(__file__).resolve().parents[2] / "relay"
# Calls whose string arguments are problem slugs: Problem(status, slug, ...), intake's _bad(detail, slug, ...).
SLUG_ARG = {"Problem": 1, "_bad": 1}


def slugs_in_code() -> set[str]:
    found = set()
    for path in RELAY.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SLUG_ARG:
                index = SLUG_ARG[node.func.id]
                arg = node.args[index] if len(node.args) > index else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value)
            if isinstance(node, ast.Dict):  # the slug maps of http_exception_handler
                for value in node.values:
                    if isinstance(value, ast.Constant) and value.value in ("not-found", "method-not-allowed"):
                        found.add(value.value)
    return found


def test_every_slug_the_relay_raises_is_registered() -> None:
    used = slugs_in_code()
    assert {"invalid-url", "quota-exceeded", "unauthenticated", "invalid-query", "internal-error"} <= used
    assert used - set(TYPES) == set()


def test_each_problem_type_is_a_page_on_the_relay(relay: RelayServer) -> None:
    index = httpx.get(f"{relay.url}/problems")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    for slug, kind in TYPES.items():
        assert f'href="{TYPE_BASE}{slug}"' in index.text
        page = httpx.get(f"{relay.url}{TYPE_BASE}{slug}")
        assert page.status_code == 200 and f"<h1>{kind.title}</h1>" in page.text, slug
    unknown = httpx.get(f"{relay.url}/problems/no-such-thing")
    assert unknown.status_code == 404 and unknown.json()["type"] == "/problems/not-found"


def test_a_problem_names_its_page_and_nobody_elses_domain(relay: RelayServer) -> None:
    r = httpx.get(f"{relay.url}/v1/events", headers={"Host": "evil.example"})
    body = r.json()
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert body["type"] == "/problems/unauthenticated" and body["title"] == "Unauthenticated"
    resolved = httpx.URL(relay.url).join(body["type"])  # RFC 9457: resolved against the answering relay
    assert httpx.get(resolved).status_code == 200
    missing = httpx.get(f"{relay.url}/nowhere").json()
    assert missing["type"] == "/problems/not-found" and "insane.ai" not in str(missing)


async def _call(endpoint, method: str, path: str) -> httpx.Response:
    """One request to an app of that one route, with the relay's exception handlers."""
    app = Starlette(routes=[Route(path, endpoint, methods=[method])], exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        return await client.request(method, path)


@pytest.mark.parametrize(
    ("error", "what"),
    [
        (DatabaseUnavailable("connection refused"), "the database"),
        (redis.exceptions.ConnectionError("Connection reset by peer"), "the queue"),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "the queue"),
        (ConnectionRefusedError(111, "Connection refused"), "the queue"),
    ],
)
async def test_a_failed_dependency_under_any_route_is_a_503_with_retry_after(error: Exception, what: str) -> None:
    async def failing(request: Request) -> Response:
        raise error

    r = await _call(failing, "POST", "/v1/worker/heartbeat")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "/problems/unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": f"{what} is unavailable; retry later",
        "instance": "/v1/worker/heartbeat",
    }


async def test_any_other_error_is_still_a_logged_500() -> None:
    async def failing(request: Request) -> Response:
        raise ValueError("a bug")

    r = await _call(failing, "GET", "/x")
    assert r.status_code == 500 and r.json()["type"] == "/problems/internal-error"
