"""Every route of the relay, called as its clients call it, while PostgreSQL is down and while Redis is
down: never a 500. What needs the missing store answers 503 problem+json with a Retry-After; what does
not need it keeps answering."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from insane.devkit.client import ADMIN_TOKEN, admin_headers, enroll_worker, event_body, make_tenant
from insane.devkit.deepstack import blank_jpeg
from insane.devkit.relay import RelayServer, fresh_database, fresh_redis_url, relay_settings
from insane.devkit.services import EmbeddedServices

JPEG = blank_jpeg(64, 48)


def _calls(tenant, worker, lease_id: str) -> list[tuple[str, str, dict, dict]]:
    """(method, path, headers, httpx keyword arguments): one plausible call of every route."""
    t, w, a = tenant.headers, worker.headers, admin_headers(ADMIN_TOKEN)
    some = str(uuid.uuid4())
    return [
        ("GET", "/healthz", {}, {}),
        ("GET", "/readyz", {}, {}),
        ("GET", "/metrics", {}, {}),
        ("GET", "/openapi.json", {}, {}),
        ("GET", "/problems", {}, {}),
        ("GET", "/problems/unavailable", {}, {}),
        ("POST", "/v1/events", t, {"json": event_body(2)}),
        ("POST", "/v1/events", t, {"files": {"moment": ("a.jpg", JPEG, "image/jpeg")}, "data": {"event": _event()}}),
        ("GET", "/v1/events", t, {}),
        ("GET", "/v1/events?limit=5&since=2026-01-01T00:00:00Z", t, {}),
        ("GET", f"/v1/events/{some}", t, {}),
        ("GET", "/v1/workers", t, {}),
        ("POST", "/v1/vision/detection", t, {"files": {"image": ("a.jpg", JPEG, "image/jpeg")}}),
        ("POST", "/v1/vision/custom/list", t, {}),
        ("POST", "/v1/vision/custom/yolov8n", t, {"files": {"image": ("a.jpg", JPEG, "image/jpeg")}}),
        ("GET", "/v1/server/status/ping", t, {}),
        ("POST", "/v1/workers/enroll", {}, {"json": {"code": "ABCD-EFGH-IJKL", "name": "pc"}}),
        ("POST", "/v1/worker/lease", w, {"json": {"max_events": 1, "wait_s": 0}}),
        ("GET", f"/v1/worker/blobs/{'0' * 64}", w, {}),
        ("POST", "/v1/worker/results", w, {"json": {"results": [_result(some, lease_id)]}}),
        ("POST", "/v1/worker/heartbeat", w, {"json": {"leases": [lease_id]}}),
        ("POST", "/v1/worker/dead-letter", w, {"json": {"lease_ids": [lease_id], "reason": "cannot decode"}}),
        ("GET", "/admin/tenants", a, {}),
        ("POST", "/admin/tenants", a, {"json": {"name": "new", "tier": "guardian"}}),
        ("POST", f"/admin/tenants/{tenant.id}/keys", a, {"json": {}}),
        ("PUT", f"/admin/tenants/{tenant.id}/tier", a, {"json": {"tier": "pro"}}),
        ("PUT", f"/admin/tenants/{tenant.id}/webhook", a, {"json": {"url": "https://example.com/hook"}}),
        ("PUT", f"/admin/tenants/{tenant.id}/private-hosts", a, {"json": {"hosts": ["10.0.0.5"]}}),
        ("PUT", f"/admin/tenants/{tenant.id}/routing", a, {"json": {"routing": "shared"}}),
        ("PUT", f"/admin/tenants/{tenant.id}/ports", a, {"json": {"ports": [8554]}}),
        ("DELETE", f"/admin/keys/{some}", a, {}),
        ("POST", "/admin/enroll-codes", a, {"json": {}}),
        ("GET", "/admin/workers", a, {}),
    ]


def _result(event_id: str, lease_id: str) -> dict:
    return {
        "event_id": event_id,
        "lease_id": lease_id,
        "k": 0,
        "moments": [],
        "verdict": [],
        "model": "m",
        "provider": "cpu",
    }


def _event() -> str:
    return json.dumps({"camera": "door", "time": "2026-12-01T10:00:00Z"})


@pytest.fixture
def own() -> Iterator[EmbeddedServices]:
    with EmbeddedServices(durable=False) as services:
        yield services


def _sweep(relay: RelayServer, calls) -> list[tuple[str, str, int, dict]]:
    answers = []
    with httpx.Client(base_url=relay.url, timeout=30) as client:
        for method, path, headers, kwargs in calls:
            r = client.request(method, path, headers=headers, **kwargs)
            body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
            answers.append((method, path, r.status_code, {"retry-after": r.headers.get("retry-after"), **body}))
    return answers


@pytest.mark.parametrize("store", ["postgres", "redis"])
def test_no_route_answers_500_while_a_store_is_down(own: EmbeddedServices, store: str) -> None:
    settings = relay_settings(own, fresh_database(own), fresh_redis_url(own), key_cache_s=0.2)
    with RelayServer(settings, background=False) as relay:
        tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
        httpx.post(f"{relay.url}/v1/events", json=event_body(1), headers=tenant.headers, timeout=30)
        leased = httpx.post(
            f"{relay.url}/v1/worker/lease", json={"max_events": 1, "wait_s": 0}, headers=worker.headers, timeout=30
        ).json()["events"]
        calls = _calls(tenant, worker, leased[0]["lease_id"])
        with own.down(store):
            answers = _sweep(relay, calls)
        after = httpx.get(f"{relay.url}/v1/events", headers=tenant.headers, timeout=30)
    errors = [a for a in answers if a[2] >= 500 and a[2] != 503]
    assert errors == [], errors
    for method, path, status, body in answers:
        if path == "/readyz":  # the load balancer's probe: it names what is missing
            assert status == 503 and body[store].startswith("unreachable"), body
        elif status == 503:
            # problem+json, or the DeepStack form ({"success": false, "code": 503}) on its routes
            assert body["retry-after"] and 503 in (body.get("status"), body.get("code")), (method, path, body)
    assert sum(a[2] == 503 for a in answers) >= 4, answers  # the outage was real: the store's routes said so
    assert after.status_code == 200  # and the relay came back by itself
