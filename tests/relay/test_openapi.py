"""/openapi.json is the contract: schemathesis drives every operation (bounded), with and without auth."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.relayhelp import RelayServer, enroll_worker, make_tenant

SKIP = {"/v1/events/stream"}  # an endless SSE response; covered by the worker tests
VISION = ("/v1/vision/", "/v1/server/")


def test_document_lists_every_public_route(relay: RelayServer) -> None:
    doc = httpx.get(f"{relay.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    routes = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    for route in relay.app.routes:
        if route.path.startswith(("/admin", "/openapi")):
            continue
        for method in route.methods - {"HEAD"}:
            assert (route.path, method) in routes, (route.path, method)


def _fuzz(relay: RelayServer, operation, creds, authenticated: bool, failures: list[str]) -> int:
    """Bounded examples of one operation; returns how many requests were made."""
    made = 0

    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case) -> None:
        nonlocal made
        headers = dict(case.headers or {})
        headers.pop("Authorization", None)
        if authenticated:
            headers.update(creds.headers)
        if operation.path == "/v1/worker/lease" and isinstance(case.body, dict):
            case.body["wait_s"] = 0  # keep the long-poll short
        case.headers = headers
        response = case.call(base_url=relay.url, timeout=30)
        made += 1
        where = f"{operation.method.upper()} {operation.path} {case.body!r:.300}"
        if response.status_code >= 500:
            failures.append(f"{where}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400 and operation.path.startswith(VISION):
            # The DeepStack API answers in its own form, as its clients expect.
            assert response.headers["content-type"] in (["application/json"], "application/json")
            assert response.json()["success"] is False
        elif response.status_code >= 400:
            assert response.headers["content-type"] in (["application/problem+json"], "application/problem+json")

    run()
    return made


@pytest.mark.parametrize("authenticated", [True, False], ids=["auth", "anonymous"])
def test_no_server_errors_anywhere(relay: RelayServer, authenticated: bool) -> None:
    tenant, worker = make_tenant(relay.url, tier="pro"), enroll_worker(relay.url)
    schema = schemathesis.openapi.from_url(f"{relay.url}/openapi.json")
    failures: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIP:
            continue
        creds = worker if operation.path.startswith("/v1/worker") else tenant
        checked += _fuzz(relay, operation, creds, authenticated, failures)
    assert checked > 50
    assert not failures, failures
