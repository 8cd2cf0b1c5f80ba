"""POST /v1/events against a real relay: acceptance, idempotency, quotas, rate, and every documented 4xx."""

from __future__ import annotations

import asyncio
import json

import cv2
import httpx
import numpy as np
import pytest
import redis

from core import keys
from insane.devkit.client import admin_headers, event_body, make_tenant
from insane.devkit.relay import RelayServer, relay_settings


def jpeg(width: int = 64, height: int = 48) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 127, np.uint8))
    assert ok
    return data.tobytes()


def post(relay: RelayServer, headers: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{relay.url}/v1/events", headers=headers, timeout=30, **kwargs)


def test_json_event_is_stored_then_queued(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    r = post(relay, tenant.headers, json=event_body(3, hint="person"))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["lane"] == "standard" and body["queue_position"] >= 1 and body["replayed"] is False
    assert r.headers["location"] == f"/v1/events/{body['id']}"
    view = httpx.get(f"{relay.url}/v1/events/{body['id']}", headers=tenant.headers).json()
    assert view["status"] == "queued" and view["hint"] == "person" and len(view["moments"]) == 3
    entries = redis.Redis.from_url(relay.settings.redis_url).xrange(keys.stream(tenant.id, "standard"))
    assert body["id"] in {f[b"id"].decode() for _, f in entries}


def test_multipart_event_stores_jpegs_as_blobs(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    event = json.dumps(event_body(1))
    files = [("moment", (f"{i}.jpg", jpeg(), "image/jpeg")) for i in range(2)]
    r = post(relay, tenant.headers, data={"event": event}, files=files)
    assert r.status_code == 202, r.text
    view = httpx.get(f"{relay.url}/v1/events/{r.json()['id']}", headers=tenant.headers).json()
    assert [m["uploaded"] for m in view["moments"]] == [False, True, True]
    client = redis.Redis.from_url(relay.settings.redis_url)
    blobs = list(client.scan_iter(keys.blob(tenant.id, "*")))
    assert len(blobs) >= 2 and 0 < client.ttl(blobs[0]) <= relay.settings.blob_ttl_s


def test_retry_with_idempotency_key_returns_the_same_event(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    body = event_body(2)
    first = post(relay, {**tenant.headers, "Idempotency-Key": "abc-1"}, json=body)
    again = post(relay, {**tenant.headers, "Idempotency-Key": "abc-1"}, json=body)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    by_body = post(relay, tenant.headers, json={**body, "client_event_id": "cam-77"})
    by_body_again = post(relay, tenant.headers, json={**body, "client_event_id": "cam-77"})
    assert by_body_again.json()["id"] == by_body.json()["id"]
    listed = httpx.get(f"{relay.url}/v1/events", headers=tenant.headers).json()["events"]
    assert len(listed) == 2
    # The same key from another tenant is another event.
    other = make_tenant(relay.url)
    assert post(relay, {**other.headers, "Idempotency-Key": "abc-1"}, json=body).json()["id"] != first.json()["id"]


async def _burst(url: str, headers: dict, n: int, moments: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/v1/events", headers=headers, json=event_body(moments)) for _ in range(n))
        )


def test_guardian_quota_admits_exactly_five_of_100_concurrent_deep_reviews(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url, tier="guardian")
    responses = asyncio.run(_burst(relay.url, tenant.headers, 100, 20))
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 5 and codes.count(429) == 95
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/quota-exceeded") and int(refused.headers["retry-after"]) > 0
    # Small events are not deep reviews and are not charged.
    assert post(relay, tenant.headers, json=event_body(3)).status_code == 202


def test_quota_holds_across_a_redis_restart(services, relay_db: str) -> None:
    from insane.devkit.services import EmbeddedServices

    with EmbeddedServices(postgres=False, durable=False) as own:
        settings = relay_settings(services, relay_db, redis_url=own.redis_url)
        with RelayServer(settings, background=False) as relay:
            tenant = make_tenant(relay.url, tier="guardian")
            first = asyncio.run(_burst(relay.url, tenant.headers, 3, 20))
            assert [r.status_code for r in first].count(202) == 3
            own.restart_redis()
            second = asyncio.run(_burst(relay.url, tenant.headers, 50, 20))
            codes = [r.status_code for r in second]
            # Redis lost everything; the quota lives in PostgreSQL, so only 2 more get in.
            assert codes.count(202) == 2, codes


def test_pro_token_bucket_refuses_past_the_burst(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url, tier="pro")
    responses = asyncio.run(_burst(relay.url, tenant.headers, 30, 2))
    codes = [r.status_code for r in responses]
    # Pro: burst 20 at 5/s; the burst finishes well within a second, so at most a few more pass.
    assert 20 <= codes.count(202) <= 25 and codes.count(429) >= 5
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["type"].endswith("/rate-limited") and "retry-after" in refused.headers
    assert {r.json()["lane"] for r in responses if r.status_code == 202} == {"pro"}


def test_backlog_bound_answers_503_with_retry_after(services, relay_db: str) -> None:
    settings = relay_settings(services, relay_db, lane_backlog_max=2)
    with RelayServer(settings, background=False) as relay:
        tenant = make_tenant(relay.url)
        codes = [post(relay, tenant.headers, json=event_body(1)).status_code for _ in range(3)]
        assert codes == [202, 202, 503]
        r = post(relay, tenant.headers, json=event_body(1))
        assert r.json()["type"].endswith("/overloaded") and int(r.headers["retry-after"]) > 0
        # Nothing was trimmed.
        assert redis.Redis.from_url(settings.redis_url).xlen(keys.stream(tenant.id, "standard")) == 2
        # The bound is per tenant: another tenant still gets in.
        assert post(relay, make_tenant(relay.url).headers, json=event_body(1)).status_code == 202


@pytest.mark.parametrize(
    ("kwargs", "status", "slug"),
    [
        ({"json": {"camera": "c"}}, 422, "invalid-event"),
        ({"json": event_body(0)}, 422, "no-moments"),
        ({"json": event_body(33)}, 422, "too-many-moments"),
        ({"json": {**event_body(1), "moments": ["ftp://x/y.jpg"]}}, 422, "bad-url-scheme"),
        ({"json": {**event_body(1), "moments": ["https://x/" + "a" * 3000]}}, 422, "url-too-long"),
        ({"json": {**event_body(1), "time": "2024-01-01T00:00:00"}}, 422, "invalid-event"),
        ({"json": {**event_body(1), "extra": 1}}, 422, "invalid-event"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported-media-type"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "invalid-event"),
        (
            {"data": {"nothing": "x"}, "files": [("moment", ("a.jpg", b"\xff\xd8", "image/jpeg"))]},
            400,
            "invalid-multipart",
        ),
        (
            {
                "data": {"event": json.dumps(event_body(0))},
                "files": [("moment", ("a.png", b"\x89PNG\r\n\x1a\n" + b"0" * 30, "image/png"))],
            },
            415,
            "unsupported-image",
        ),
        ({"headers": {"Idempotency-Key": "x" * 201}, "json": event_body(1)}, 400, "invalid-idempotency-key"),
    ],
)
def test_documented_4xx(relay: RelayServer, kwargs: dict, status: int, slug: str) -> None:
    tenant = make_tenant(relay.url)
    headers = {**tenant.headers, **kwargs.pop("headers", {})}
    r = post(relay, headers, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/" + slug) and r.json()["status"] == status


def test_oversized_image_and_request(services, relay_db: str) -> None:
    settings = relay_settings(services, relay_db, max_image_bytes=2000, max_request_bytes=5000, max_image_pixels=1000)
    with RelayServer(settings, background=False) as relay:
        tenant = make_tenant(relay.url)
        event = {"event": json.dumps(event_body(0))}
        big = post(
            relay, tenant.headers, data=event, files=[("moment", ("a.jpg", jpeg(64, 48) + b"\0" * 3000, "image/jpeg"))]
        )
        assert big.status_code == 413 and big.json()["type"].endswith("/image-too-large")
        many_pixels = post(relay, tenant.headers, data=event, files=[("moment", ("a.jpg", jpeg(64, 48), "image/jpeg"))])
        assert many_pixels.status_code == 413 and "pixel" in many_pixels.json()["detail"]
        huge = post(relay, {**tenant.headers, "content-type": "application/json"}, content=b"x" * 6000)
        assert huge.status_code == 413 and huge.json()["type"].endswith("/request-too-large")


def test_credentials_are_checked(relay: RelayServer) -> None:
    assert post(relay, {}, json=event_body(1)).status_code == 401
    assert post(relay, {"Authorization": "Bearer ik_nope_" + "x" * 40}, json=event_body(1)).status_code == 401
    assert post(relay, {"Authorization": "Bearer garbage"}, json=event_body(1)).status_code == 401
    tenant = make_tenant(relay.url)
    key_id = tenant.secret.split("_")[1]
    wrong_secret = f"ik_{key_id}_{'y' * 43}"
    assert post(relay, {"Authorization": f"Bearer {wrong_secret}"}, json=event_body(1)).status_code == 401
    assert post(relay, tenant.headers, json=event_body(1)).status_code == 202
    revoked = httpx.delete(f"{relay.url}/admin/keys/{key_id}", headers=admin_headers())
    assert revoked.status_code == 200
    assert post(relay, tenant.headers, json=event_body(1)).status_code == 401


def test_admin_api_needs_its_token(relay: RelayServer) -> None:
    assert httpx.get(f"{relay.url}/admin/tenants").status_code == 401
    assert httpx.get(f"{relay.url}/admin/tenants", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = httpx.post(f"{relay.url}/admin/tenants", json={"name": "x", "tier": "platinum"}, headers=admin_headers())
    assert r.status_code == 404 and "no tier" in r.json()["detail"]
    tenant = make_tenant(relay.url, name="dupe")
    again = httpx.post(f"{relay.url}/admin/tenants", json={"name": "dupe"}, headers=admin_headers())
    assert again.status_code == 409
    moved = httpx.put(f"{relay.url}/admin/tenants/{tenant.id}/tier", json={"tier": "pro"}, headers=admin_headers())
    assert moved.status_code == 200
    assert post(relay, tenant.headers, json=event_body(1)).json()["lane"] == "pro"


def test_list_filters_and_pages(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    for i in range(5):
        assert post(relay, tenant.headers, json=event_body(1, camera=f"cam{i % 2}")).status_code == 202
    url = f"{relay.url}/v1/events"
    assert len(httpx.get(url, params={"camera": "cam0"}, headers=tenant.headers).json()["events"]) == 3
    page1 = httpx.get(url, params={"limit": 2}, headers=tenant.headers).json()
    page2 = httpx.get(url, params={"limit": 2, "cursor": page1["next_cursor"]}, headers=tenant.headers).json()
    page3 = httpx.get(url, params={"limit": 2, "cursor": page2["next_cursor"]}, headers=tenant.headers).json()
    ids = [e["id"] for p in (page1, page2, page3) for e in p["events"]]
    assert len(ids) == 5 == len(set(ids)) and page3["next_cursor"] is None
    assert httpx.get(url, params={"status": "done"}, headers=tenant.headers).json()["events"] == []
    for bad in ({"status": "nope"}, {"limit": "0"}, {"since": "yesterday"}, {"cursor": "!!"}):
        r = httpx.get(url, params=bad, headers=tenant.headers)
        assert r.status_code == 400 and r.json()["type"].endswith("/invalid-query"), bad
