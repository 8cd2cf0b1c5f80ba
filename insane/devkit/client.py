"""The relay's HTTP API as an operator, a camera and a tenant use it: tenants, workers, events, results.

    tenant = make_tenant(relay.url, tier="pro")                # Creds(id, secret, headers)
    allow_private_hosts(relay.url, tenant.id, ["127.0.0.1"])   # its cameras may be on loopback
    worker = enroll_worker(relay.url, tenant=tenant.id)        # Creds for the worker API
    event_id = post_event(relay.url, tenant, uploads=[jpeg])   # or urls=[...]
    views = await wait_done(relay.url, tenant, [event_id])     # each event's view, once reviewed

The admin calls take ``admin_token`` (default: the kit's ``ADMIN_TOKEN``, which ``relay_settings`` gives
the relays it configures).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


@dataclass
class Creds:
    id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_tenant(url: str, name: str | None = None, tier: str = "guardian", admin_token: str = ADMIN_TOKEN) -> Creds:
    """A new tenant and its API key."""
    r = httpx.post(
        f"{url}/admin/tenants",
        json={"name": name or f"t-{uuid.uuid4().hex[:8]}", "tier": tier},
        headers=admin_headers(admin_token),
        timeout=30,
    )
    r.raise_for_status()
    body = r.json()
    return Creds(body["id"], body["api_key"])


def allow_private_hosts(url: str, tenant: str, hosts: list[str], admin_token: str = ADMIN_TOKEN) -> None:
    """Let the tenant's dedicated workers fetch moments from these private hosts (its cameras on a LAN)."""
    r = httpx.put(
        f"{url}/admin/tenants/{tenant}/private-hosts",
        json={"hosts": hosts},
        headers=admin_headers(admin_token),
        timeout=30,
    )
    r.raise_for_status()


def set_routing(
    url: str, tenant: str, routing: str | None, shared_after_s: float | None = None, admin_token: str = ADMIN_TOKEN
) -> dict[str, Any]:
    """Choose which workers may review the tenant's events: own, shared, own-then-shared, or None (automatic)."""
    r = httpx.put(
        f"{url}/admin/tenants/{tenant}/routing",
        json={"routing": routing, "shared_after_s": shared_after_s},
        headers=admin_headers(admin_token),
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def enroll_worker(
    url: str, tenant: str | None = None, name: str = "test-worker", admin_token: str = ADMIN_TOKEN
) -> Creds:
    """A worker token, by way of a one-time code: shared with the pool, or dedicated to ``tenant``."""
    r = httpx.post(f"{url}/admin/enroll-codes", json={"tenant": tenant}, headers=admin_headers(admin_token), timeout=30)
    r.raise_for_status()
    r = httpx.post(f"{url}/v1/worker/enroll", json={"code": r.json()["code"], "name": name}, timeout=30)
    r.raise_for_status()
    body = r.json()
    return Creds(body["worker_id"], body["token"])


def event_body(n: int = 3, camera: str = "front", **extra: Any) -> dict[str, Any]:
    """An event of ``n`` URL moments (on a host nothing resolves: for tests that never fetch them)."""
    body = {
        "camera": camera,
        "time": datetime.now(UTC).isoformat(),
        "moments": [f"https://cam.example.com/{uuid.uuid4().hex}/{i}.jpg" for i in range(n)],
    }
    body.update(extra)
    return body


def event_request(event: Mapping[str, Any], uploads: Sequence[bytes] = ()) -> dict[str, Any]:
    """httpx's keyword arguments to POST ``event``: JSON, or multipart when it uploads its moments."""
    if not uploads:
        return {"json": dict(event)}
    files: list[tuple[str, tuple[str | None, str | bytes, str]]] = [
        ("event", (None, json.dumps(event), "application/json"))
    ]
    files += [("moment", (f"m{i}.jpg", data, "image/jpeg")) for i, data in enumerate(uploads)]
    return {"files": files}


def post_event(
    url: str, tenant: Creds, urls: Sequence[str] = (), uploads: Sequence[bytes] = (), camera: str = "front"
) -> str:
    """Post an event of URL moments or uploaded ones; returns its id (any answer but 2xx fails)."""
    event = {"camera": camera, "time": "2026-01-01T00:00:00Z", "moments": list(urls)}
    r = httpx.post(f"{url}/v1/events", **event_request(event, uploads), headers=tenant.headers, timeout=30)
    assert r.status_code in (200, 201, 202), r.text
    return r.json()["id"]


def result_for(event: dict[str, Any], k: int | None = None, **extra: Any) -> dict[str, Any]:
    """A plausible EventResult (JSON) for a leased event: one 'person' per moment."""
    moments = [
        {
            "index": m["index"],
            "width": 640,
            "height": 480,
            "detections": [{"label": "person", "class_id": 0, "confidence": 0.9, "box": [1, 2, 30, 40]}],
        }
        for m in event["moments"]
    ]
    body = {
        "event_id": event["event_id"],
        "lease_id": event["lease_id"],
        "k": len(moments) if k is None else k,
        "moments": moments,
        "verdict": [{"label": "person", "moments": len(moments), "best": 0.9, "median": 0.9}],
        "timings_ms": {"total": 12.5},
        "model": "yolov8n",
        "provider": "CPUExecutionProvider",
    }
    body.update(extra)
    return body


async def follow_events(
    client: httpx.AsyncClient,
    events: Mapping[str, Creds],
    timeout_s: float,
    k: int | None = None,
    every_s: float = 0.2,
    tick: Callable[[], None] | None = None,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(id, view) of each event (id -> its tenant) once it is done or failed, and reviewed with at least
    ``k`` moments; polled through ``client`` (whose base URL is the relay's) every ``every_s`` seconds,
    calling ``tick`` after each round. Stops when all have finished or ``timeout_s`` has passed.
    """
    waiting = dict(events)
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        for event_id, tenant in list(waiting.items()):
            r = await client.get(f"/v1/events/{event_id}", headers=tenant.headers)
            r.raise_for_status()
            view = r.json()
            if view.get("status") in ("done", "failed") and (k is None or (view.get("k") or 0) >= k):
                del waiting[event_id]
                yield event_id, view
        if tick is not None:
            tick()
        if waiting:
            await asyncio.sleep(every_s)


async def wait_done(
    url: str, tenant: Creds, event_ids: list[str], timeout_s: float = 120.0, k: int | None = None
) -> dict[str, dict[str, Any]]:
    """Poll the tenant's view of each event until it is done (and reviewed with at least ``k`` moments)."""
    views: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async for event_id, view in follow_events(client, dict.fromkeys(event_ids, tenant), timeout_s, k):
            views[event_id] = view
    if len(views) < len(set(event_ids)):
        raise AssertionError(f"not done in {timeout_s}s: {sorted(set(event_ids) - set(views))}")
    return views
