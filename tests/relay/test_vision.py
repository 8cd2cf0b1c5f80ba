"""The relay's DeepStack / CodeProject.AI API, driven by other people's clients against a real relay
(PostgreSQL, Redis, uvicorn) and a real worker running a real trained model over the worker API."""

from __future__ import annotations

import asyncio
import http.client
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import requests
from codeprojectai import core as cpai
from deepstack import core as ds

from core.worker.http_source import HttpLeaseSource
from insane.devkit.client import enroll_worker, make_tenant
from insane.devkit.deepstack import WorkerThread, blank_jpeg, fixed_coco_model, grid_boxes
from insane.devkit.relay import RelayServer, fresh_database, relay_settings, run_sync

BUS_PEOPLE = [(48, 399, 245, 903), (221, 406, 345, 857), (670, 380, 810, 876)]  # checked by eye


def _sql(db_url: str, sql: str, *args) -> list:
    async def go():
        conn = await asyncpg.connect(db_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return run_sync(go())


def _wait_online(url: str, tenant, timeout: float = 30.0) -> None:
    """Until a heartbeat has marked the worker online (custom/list names its model)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.post(f"{url}/v1/vision/custom/list", headers=tenant.headers)
        if r.status_code == 200 and r.json()["models"]:
            return
        time.sleep(0.2)
    raise AssertionError("the worker never came online")


@pytest.fixture(scope="module")
def served(relay: RelayServer, fall_model_onnx: Path) -> Iterator[WorkerThread]:
    creds = enroll_worker(relay.url)
    with WorkerThread(fall_model_onnx, HttpLeaseSource(relay.url, creds.secret)) as worker:
        yield worker


@pytest.fixture(scope="module")
def served_tenant(relay: RelayServer, served):
    """A Pro tenant of this module's own, once the worker above is online (the root ``tenant`` is not waited for)."""
    creds = make_tenant(relay.url, tier="pro")  # 5 requests/s, burst 20: room for every test here
    _wait_online(relay.url, creds)
    return creds


def port(relay: RelayServer) -> int:
    return int(relay.url.rsplit(":", 1)[1])


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_deepstack_python_through_the_relay_finds_the_people(relay: RelayServer, served_tenant, sample_images) -> None:
    client = ds.DeepstackObject(ip="127.0.0.1", port=port(relay), api_key=served_tenant.secret, min_confidence=0.4)
    preds = client.detect(sample_images["bus.jpg"])
    assert [p["label"] for p in preds] == ["Normal"] * 4
    assert [p["confidence"] for p in preds] == sorted((p["confidence"] for p in preds), reverse=True)
    got = [(p["x_min"], p["y_min"], p["x_max"], p["y_max"]) for p in preds]
    for want in BUS_PEOPLE:
        assert max(iou(want, g) for g in got) > 0.7, (want, got)
    assert all(isinstance(v, int) for p in preds for v in got[preds.index(p)])


def test_min_confidence_filters_through_the_relay(relay: RelayServer, served_tenant, sample_images) -> None:
    low = ds.DeepstackObject(ip="127.0.0.1", port=port(relay), api_key=served_tenant.secret, min_confidence=0.3)
    high = ds.DeepstackObject(ip="127.0.0.1", port=port(relay), api_key=served_tenant.secret, min_confidence=0.65)
    assert len(low.detect(sample_images["bus.jpg"])) == 4
    kept = high.detect(sample_images["bus.jpg"])
    assert 1 <= len(kept) < 3 and all(p["confidence"] >= 0.65 for p in kept)


def test_codeproject_client_with_the_key_in_the_url(relay: RelayServer, served_tenant, sample_images) -> None:
    client = cpai.CodeProjectAIObject(ip=f"key:{served_tenant.secret}@127.0.0.1", port=port(relay), min_confidence=0.4)
    preds = client.detect(sample_images["bus.jpg"])
    assert [p["label"] for p in preds] == ["Normal"] * 4
    r = requests.post(
        f"{relay.url}/v1/vision/detection", files={"image": sample_images["zidane.jpg"]}, headers=served_tenant.headers
    )
    body = r.json()
    assert r.status_code == 200 and body["count"] == 2 and body["message"] == "Found Normal, Normal"
    assert body["code"] == 200 and body["moduleId"] == "InsaneAISecurity" and body["timestampUTC"].endswith("GMT")
    assert body["analysisRoundTripMs"] >= body["processMs"] >= body["inferenceMs"] > 0
    uuid.UUID(body["requestId"])  # the event's id: GET /v1/events/{id} shows it


def test_a_wrong_key_is_the_clients_own_error(relay: RelayServer, served_tenant, sample_images) -> None:
    bad = "ik_0123456789abcdef_" + "x" * 43
    with pytest.raises(ds.DeepstackException, match="status code: 401"):
        ds.DeepstackObject(ip="127.0.0.1", port=port(relay), api_key=bad).detect(sample_images["zidane.jpg"])
    with pytest.raises(cpai.CodeProjectAIException, match="401"):
        cpai.CodeProjectAIObject(ip="127.0.0.1", port=port(relay)).detect(sample_images["zidane.jpg"])
    with pytest.raises(cpai.CodeProjectAIException, match="401"):
        cpai.CodeProjectAIObject(ip=f"key:{bad}@127.0.0.1", port=port(relay)).detect(sample_images["zidane.jpg"])
    r = requests.post(
        f"{relay.url}/v1/vision/detection", files={"image": sample_images["zidane.jpg"]}, data={"api_key": bad}
    )
    assert r.status_code == 401 and r.json()["success"] is False and r.json()["error"]


def test_a_non_image_is_the_clients_own_error(relay: RelayServer, served_tenant) -> None:
    with pytest.raises(ds.DeepstackException, match="status code: 400"):
        ds.DeepstackObject(ip="127.0.0.1", port=port(relay), api_key=served_tenant.secret).detect(b"not a picture")
    with pytest.raises(cpai.CodeProjectAIException, match="400"):
        cpai.CodeProjectAIObject(ip=f"key:{served_tenant.secret}@127.0.0.1", port=port(relay)).detect(
            b"\x89PNG\r\n\x1a\n"
        )
    r = requests.post(f"{relay.url}/v1/vision/detection", data={"api_key": served_tenant.secret})
    assert (r.status_code, r.json()["error"]) == (400, "No valid image file found")
    r = requests.post(
        f"{relay.url}/v1/vision/detection",
        files={"image": blank_jpeg()},
        data={"api_key": served_tenant.secret, "min_confidence": "2"},
    )
    assert (r.status_code, r.json()["error"]) == (400, "min_confidence cannot be greater than 1")


def test_stored_and_listed_like_any_event_on_the_pro_lane_and_never_charged(
    relay: RelayServer, relay_db: str, served, sample_images
) -> None:
    tenant = make_tenant(relay.url, tier="guardian")
    r = requests.post(
        f"{relay.url}/v1/vision/detection", files={"image": sample_images["bus.jpg"]}, headers=tenant.headers
    )
    assert r.status_code == 200
    event_id = r.json()["requestId"]
    listed = httpx.get(f"{relay.url}/v1/events", params={"camera": "deepstack-api"}, headers=tenant.headers).json()
    assert [e["id"] for e in listed["events"]] == [event_id]
    view = httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()
    assert view["status"] == "done" and view["lane"] == "pro" and view["n_moments"] == 1
    assert {v["label"] for v in view["verdict"]} == {"Normal"}
    assert _sql(relay_db, "SELECT * FROM usage WHERE tenant_id = $1", uuid.UUID(tenant.id)) == []


def test_custom_models_list_and_run(relay: RelayServer, served_tenant, sample_images) -> None:
    listed = requests.post(f"{relay.url}/v1/vision/custom/list", data={"api_key": served_tenant.secret}).json()
    assert listed["success"] is True and len(listed["models"]) == 1
    name = listed["models"][0]
    client = ds.DeepstackObject(ip="127.0.0.1", port=port(relay), api_key=served_tenant.secret, custom_model=name)
    assert len(client.detect(sample_images["bus.jpg"])) == 4
    with pytest.raises(ds.DeepstackException, match="status code: 400"):
        ds.DeepstackObject(
            ip="127.0.0.1", port=port(relay), api_key=served_tenant.secret, custom_model="nothing-like-it"
        ).detect(sample_images["bus.jpg"])
    assert requests.get(f"{relay.url}/v1/server/status/ping").json() == {"success": True}


def _raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_every_answer_has_a_content_length_and_is_never_chunked(
    relay: RelayServer, served_tenant, sample_images
) -> None:
    boundary = "rawboundary42"

    def form(image: bytes, key: str) -> tuple[bytes, dict]:
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n{key}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
            ).encode()
            + image
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    cases = [
        (*form(sample_images["zidane.jpg"], served_tenant.secret), 200),
        (*form(b"junk", served_tenant.secret), 400),
        (*form(sample_images["zidane.jpg"], "ik_nope_" + "y" * 40), 401),
        (b"", {}, 401),  # no key: the key is checked first, as DeepStack does
    ]
    for body, headers, status in cases:
        got, resp_headers, content = _raw(relay.url, "POST", "/v1/vision/detection", body, headers)
        assert got == status, (got, content[:200])
        assert "transfer-encoding" not in resp_headers
        assert int(resp_headers["content-length"]) == len(content)
        assert resp_headers["content-type"] == "application/json"
    for method, path in (("GET", "/v1/server/status/ping"), ("POST", "/v1/vision/custom/list")):
        got, resp_headers, content = _raw(relay.url, method, path, b"", served_tenant.headers)
        assert got == 200 and "transfer-encoding" not in resp_headers
        assert int(resp_headers["content-length"]) == len(content)


def _tier(db_url: str, name: str, **values) -> None:
    cols = {
        "lane": "standard",
        "daily_deep_reviews": 5,
        "deep_min_moments": 20,
        "rate_per_s": None,
        "burst": 1,
        "max_k": 20,
        "vision_rate_per_s": 1.0,
        "vision_burst": 10,
    }
    cols.update(values)
    names = ", ".join(cols)
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 2))
    _sql(db_url, f"INSERT INTO tiers (name, {names}) VALUES ({marks})", name, *cols.values())


def test_the_tiers_vision_rate_and_the_pro_rate_both_limit(relay: RelayServer, relay_db: str, served) -> None:
    _tier(relay_db, "vision-2", vision_rate_per_s=0.01, vision_burst=2)
    _tier(relay_db, "pro-1", lane="pro", daily_deep_reviews=None, rate_per_s=0.01, burst=1)
    jpeg = blank_jpeg()
    small = make_tenant(relay.url, tier="vision-2")
    answers = [
        requests.post(f"{relay.url}/v1/vision/detection", files={"image": jpeg}, headers=small.headers)
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["success"] is False and int(answers[2].headers["retry-after"]) > 1
    pro = make_tenant(relay.url, tier="pro-1")
    answers = [
        requests.post(f"{relay.url}/v1/vision/detection", files={"image": jpeg}, headers=pro.headers) for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 429]
    assert "Pro rate" in answers[1].json()["error"]


def test_a_1_moment_tier_quota_is_never_charged(relay: RelayServer, relay_db: str, served) -> None:
    _tier(relay_db, "no-quota-left", daily_deep_reviews=0, deep_min_moments=1)
    tenant = make_tenant(relay.url, tier="no-quota-left")
    event = {"camera": "c", "time": "2026-01-01T00:00:00Z", "moments": ["https://cam.example.com/1.jpg"]}
    assert httpx.post(f"{relay.url}/v1/events", json=event, headers=tenant.headers).status_code == 429
    r = requests.post(f"{relay.url}/v1/vision/detection", files={"image": blank_jpeg()}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["success"] is True


@pytest.fixture
def empty_relay(services, request) -> Iterator[tuple[RelayServer, str]]:
    """A relay of its own with no worker (``vision_deadline_s`` from the test's ``deadline`` mark)."""
    mark = request.node.get_closest_marker("deadline")
    deadline = mark.args[0] if mark else 10.0
    db = fresh_database(services)
    with RelayServer(relay_settings(services, db, vision_deadline_s=deadline), background=False) as running:
        yield running, db


@pytest.mark.deadline(1.5)
def test_no_worker_online_is_a_clear_503_and_a_silent_worker_a_504(empty_relay, sample_images) -> None:
    relay, db = empty_relay
    tenant = make_tenant(relay.url)
    r = requests.post(
        f"{relay.url}/v1/vision/detection", files={"image": sample_images["bus.jpg"]}, headers=tenant.headers
    )
    assert r.status_code == 503 and "no worker is online" in r.json()["error"] and r.headers["retry-after"]
    assert requests.post(f"{relay.url}/v1/vision/custom/list", headers=tenant.headers).json()["models"] == []
    # A worker that heartbeats but never leases (hung): the deadline answers.
    worker = enroll_worker(relay.url)
    _sql(db, "UPDATE workers SET last_seen = now(), model = 'm' WHERE id = $1", uuid.UUID(worker.id))
    time.sleep(2.1)  # past the online-models cache
    started = time.monotonic()
    r = requests.post(
        f"{relay.url}/v1/vision/detection", files={"image": sample_images["bus.jpg"]}, headers=tenant.headers
    )
    assert r.status_code == 504 and "no result within 1.5 s" in r.json()["error"]
    assert 1.4 < time.monotonic() - started < 5
    listed = httpx.get(f"{relay.url}/v1/events", headers=tenant.headers).json()["events"]
    assert [e["status"] for e in listed] == ["queued"]


def test_21_objects_give_at_most_20_predictions_through_the_relay(empty_relay, tmp_path) -> None:
    relay, _ = empty_relay
    crowd = fixed_coco_model(tmp_path / "crowd.onnx", grid_boxes(25))
    creds = enroll_worker(relay.url)
    tenant = make_tenant(relay.url)
    with WorkerThread(crowd, HttpLeaseSource(relay.url, creds.secret)):
        _wait_online(relay.url, tenant)
        client = ds.DeepstackObject(ip="127.0.0.1", port=port(relay), api_key=tenant.secret, min_confidence=0.4)
        preds = client.detect(blank_jpeg())
        assert len(preds) == 20 and {p["label"] for p in preds} == {"person"}
        assert [p["confidence"] for p in preds] == sorted((p["confidence"] for p in preds), reverse=True)
        r = requests.post(
            f"{relay.url}/v1/vision/detection",
            files={"image": blank_jpeg()},
            data={"api_key": tenant.secret, "max_predictions": "30"},
        )
        assert r.json()["count"] == 25


@pytest.mark.deadline(6.0)
def test_the_relay_waits_without_holding_a_connection_per_request(empty_relay, sample_images) -> None:
    """Twelve requests waiting at once share one subscription; none holds a blocked Redis connection."""
    relay, db = empty_relay
    waiting = 12
    _tier(db, "vision-burst", vision_rate_per_s=1.0, vision_burst=waiting)  # all twelve get in at once
    tenant = make_tenant(relay.url, tier="vision-burst")
    hung = enroll_worker(relay.url)  # online (heartbeat, a model) but never leases: every request waits
    _sql(db, "UPDATE workers SET last_seen = now(), model = 'm' WHERE id = $1", uuid.UUID(hung.id))

    async def scene() -> tuple[list[int], list[dict], list[dict]]:
        before = await _redis_clients(relay)
        async with httpx.AsyncClient(timeout=60) as client:
            posts = [
                asyncio.create_task(
                    client.post(
                        f"{relay.url}/v1/vision/detection",
                        files={"image": sample_images["zidane.jpg"]},
                        headers=tenant.headers,
                    )
                )
                for _ in range(waiting)
            ]
            seen: list[dict] = []
            for _ in range(100):  # until all twelve are registered and waiting
                await asyncio.sleep(0.05)
                if relay.app.state.vision.waiter.waiting == waiting:
                    seen = await _redis_clients(relay)
                    break
            return [r.status_code for r in await asyncio.gather(*posts)], before, seen

    statuses, before, clients = run_sync(scene())
    assert statuses == [504] * waiting  # the hung worker never answers: each waited to its deadline
    assert clients, "the twelve requests were never all waiting at once"

    # The relay's own subscriptions (the lease wake-ups) may be there before; the waiting adds one, shared.
    def subscribed(cs: list[dict]) -> list[tuple]:
        return [(c["id"], c["cmd"]) for c in cs if int(c["psub"]) + int(c["sub"]) > 0]

    blocked = [c for c in clients if "b" in c["flags"]]
    assert 1 <= len(subscribed(clients)) <= len(subscribed(before)) + 1, (subscribed(before), subscribed(clients))
    assert any(cmd == "psubscribe" for _, cmd in subscribed(clients))
    assert blocked == [], blocked


async def _redis_clients(relay: RelayServer) -> list[dict]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(relay.settings.redis_url, decode_responses=True)
    try:  # this relay's own Redis database: other tests' relays use others
        mine = str(client.connection_pool.connection_kwargs.get("db", 0))
        return [c for c in await client.client_list() if c.get("db") == mine]
    finally:
        await client.aclose()
