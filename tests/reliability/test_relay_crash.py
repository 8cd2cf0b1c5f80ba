"""A relay that dies between storing an upload's event and writing its images to Redis: the images were
stored with the event, so the camera's retry (same Idempotency-Key) is answered as a replay, the
reconciler queues the event, and the worker gets every image from the relay's database."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import redis

from core import keys
from insane.devkit.client import enroll_worker, event_body, make_tenant
from insane.devkit.relay import RelayServer
from relay import reconciler
from tests.relay.test_events import jpeg
from tests.relay.test_workers import lease_until


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"requeue_after_s": 0.2}


@pytest.fixture(scope="module")
def relay_app_options() -> dict[str, Any]:
    return {"background": False}


def test_an_upload_whose_images_never_reached_redis_is_reviewed_whole(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    images = [jpeg(64, 48), jpeg(80, 60)]

    def post() -> httpx.Response:
        files = [("moment", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
        return httpx.post(
            f"{relay.url}/v1/events",
            data={"event": json.dumps(event_body(0))},
            files=files,
            headers={**tenant.headers, "Idempotency-Key": "cam-7-0001"},
            timeout=30,
        )

    first = post()
    assert first.status_code == 202
    event_id = first.json()["id"]
    client = redis.Redis.from_url(relay.settings.redis_url)
    view = httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers).json()
    assert [m["uploaded"] for m in view["moments"]] == [True, True]
    # The crash: the event row is committed, but neither the images nor the stream entry reached Redis.
    blobs = [k for k in client.scan_iter(keys.blob(tenant.id, "*")) if client.get(k) in images]
    assert len(blobs) == 2
    client.delete(*blobs)
    for entry_id, fields in client.xrange(keys.stream(tenant.id, "standard")):
        if fields[b"id"].decode() == event_id:
            client.xdel(keys.stream(tenant.id, "standard"), entry_id)
    retry = post()
    assert retry.status_code == 200 and retry.json() == {**retry.json(), "id": event_id, "replayed": True}
    time.sleep(0.3)
    assert relay.call(reconciler.reconcile_once)["requeued"] == 1
    worker = enroll_worker(relay.url)
    leased = lease_until(relay, worker, event_id)
    for moment, data in zip(leased["moments"], images, strict=True):
        got = httpx.get(f"{relay.url}/v1/worker/blobs/{moment['blob']}", headers=worker.headers, timeout=30)
        assert got.status_code == 200 and got.content == data
    # Served from the database, and cached again under the stored ids.
    assert sorted(client.get(k) for k in blobs) == sorted(images)
    assert {keys.blob(tenant.id, m["blob"]).encode() for m in leased["moments"]} == set(blobs)
