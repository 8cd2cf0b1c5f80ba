"""Whose pictures went where, under faults: tenant A (``own``) and B (``shared``), each with a worker of its
own, and one shared worker; 200 events each (uploads and camera URLs) while workers are SIGKILLed and
restarted. From PostgreSQL (who each event was delivered to, who wrote its result) and from the relay's
access log of blob fetches: no worker ever leased or fetched what it must not, and every event has exactly
one result. Then the same for LAN workers leasing straight from Redis under their ACL users."""

from __future__ import annotations

import logging
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from core.streams import acl_rules
from insane.devkit.camera import serve_images
from insane.devkit.client import (
    allow_private_hosts,
    enroll_worker,
    event_request,
    make_tenant,
    set_routing,
)
from insane.devkit.relay import RelayServer, run_sync

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EVENTS = 200  # per tenant


@pytest.fixture(scope="module")
def relay_overrides() -> dict:
    # Short leases so that killed workers' entries come back quickly; enough deliveries that kills alone
    # never dead-letter an event.
    return {"lease_idle_s": 3.0, "max_deliveries": 20, "max_moments": 8, "requeue_after_s": 30.0}


class BlobLog(logging.Handler):
    """The relay's access log of blob fetches: (blob, tenant, worker) of every picture served."""

    LINE = re.compile(r"served blob (\w+) of tenant ([\w-]+) to worker ([\w-]+)")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.served: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = self.LINE.match(record.getMessage())
        if m:
            self.served.append((m.group(1), m.group(2), m.group(3)))


def _worker(env: dict[str, str], token: str, model: Path, extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {
        **env,
        "INSANE_WORKER_TOKEN": token,
        "INSANE_MODEL": str(model),
        "INSANE_WORKER_THREADS": "1",
        "INSANE_WORKER_LEASE_WAIT_S": "1",
        "INSANE_LEASE_IDLE_S": "3",
        **(extra or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "insane", "worker", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _post_all(relay: RelayServer, tenant, camera, frames: list[bytes], tag: str) -> list[str]:
    ids = []
    with httpx.Client(base_url=relay.url, timeout=60) as client:
        for n in range(EVENTS):
            body = {"camera": f"{tag}-cam", "time": "2026-12-01T10:00:00Z"}
            if n % 2:
                body["moments"] = [camera.add(f"{tag}/{n}/{i}.jpg", frames[(n + i) % len(frames)]) for i in range(2)]
                r = client.post("/v1/events", **event_request(body), headers=tenant.headers)
            else:
                r = client.post("/v1/events", **event_request(body, [frames[n % len(frames)]]), headers=tenant.headers)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
    return ids


async def _shared_workers(db_url: str) -> set[str]:
    """Every shared worker of the relay (the module's relay serves other tests' workers too)."""
    conn = await asyncpg.connect(db_url)
    try:
        return {str(r["id"]) for r in await conn.fetch("SELECT id FROM workers WHERE dedicated_tenant IS NULL")}
    finally:
        await conn.close()


async def _rows(db_url: str, ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch(
            "SELECT e.id, e.tenant_id, e.status, r.worker_id, r.delivered_to, "
            "(SELECT count(*) FROM results r2 WHERE r2.event_id = e.id) AS n "
            "FROM events e LEFT JOIN results r ON r.event_id = e.id WHERE e.id = ANY($1)",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await conn.close()


def _wait_done(relay: RelayServer, ids: list[str], procs: dict, restart, timeout_s: float = 420) -> None:
    """Until every event has its result, SIGKILL a random worker every second or so (six times, while the
    backlog is still large) and start it again."""
    deadline = time.monotonic() + timeout_s
    rng = random.Random(7)
    kills = 0
    while time.monotonic() < deadline:
        if kills < 6:
            time.sleep(1.0)
            name = rng.choice(sorted(procs))
            procs[name].send_signal(signal.SIGKILL)
            procs[name].wait(10)
            kills += 1
            procs[name] = restart(name)
            continue
        rows = run_sync(_rows(relay.settings.database_url, ids))
        if all(r["status"] == "done" for r in rows):
            return
        time.sleep(2)
    pending = [str(r["id"]) for r in rows if r["status"] != "done"]
    raise AssertionError(f"{len(pending)} events without a result after {timeout_s:.0f} s: {pending[:5]}")


def _check(relay: RelayServer, log: BlobLog, a, b, ids_a, ids_b, allowed: dict[str, set[str]]) -> None:
    rows = run_sync(_rows(relay.settings.database_url, ids_a + ids_b))
    assert len(rows) == 2 * EVENTS and all(r["n"] == 1 and r["status"] == "done" for r in rows)
    for r in rows:
        may = allowed[str(r["tenant_id"])]
        given = {str(w) for w in r["delivered_to"]}
        assert given and given <= may, (str(r["id"]), given, may)
        assert str(r["worker_id"]) in may
    fetched = {}
    for blob, tenant, worker in log.served:
        assert worker in allowed[tenant], (blob, tenant, worker)
        fetched.setdefault(tenant, set()).add(worker)
    assert fetched.get(a.id) and fetched.get(b.id)  # both tenants' uploads were served, to the right workers


def test_no_worker_ever_leases_or_fetches_what_it_must_not_under_sigkills(
    relay: RelayServer, insane_env: dict[str, str], small_onnx: Path, sample_images: dict[str, bytes]
) -> None:
    log = BlobLog()
    relay_log = logging.getLogger("relay.workers")
    level = relay_log.level
    relay_log.setLevel(logging.DEBUG)  # blob fetches are logged at debug
    relay_log.addHandler(log)
    a, b = make_tenant(relay.url, "tenant-a"), make_tenant(relay.url, "tenant-b")
    frames = [sample_images["bus.jpg"], sample_images["zidane.jpg"]]
    procs: dict[str, subprocess.Popen] = {}
    try:
        with serve_images({}) as camera:
            for t in (a, b):
                allow_private_hosts(relay.url, t.id, [camera.host])
            own_a = enroll_worker(relay.url, tenant=a.id, name="a-pc")
            own_b = enroll_worker(relay.url, tenant=b.id, name="b-pc")
            shared = enroll_worker(relay.url, name="pool")
            set_routing(relay.url, a.id, "own")
            set_routing(relay.url, b.id, "shared")
            env = {**insane_env, "INSANE_RELAY_URL": relay.url}
            tokens = {"a-pc": own_a.secret, "b-pc": own_b.secret, "pool": shared.secret}

            def restart(name: str) -> subprocess.Popen:
                return _worker(env, tokens[name], small_onnx)

            ids_a = _post_all(relay, a, camera, frames, "a")
            ids_b = _post_all(relay, b, camera, frames, "b")
            for name in tokens:
                procs[name] = restart(name)
            _wait_done(relay, ids_a + ids_b, procs, restart)
        # Tenant a's routing is `own`: its own worker only. Tenant b's is `shared`: its own worker or any shared
        # one. A long-poll still waiting at the relay when an earlier test killed its worker may take one of
        # b's events; it comes back to a live worker once that lease lapses.
        pool = run_sync(_shared_workers(relay.settings.database_url))
        assert shared.id in pool
        allowed = {a.id: {own_a.id}, b.id: {own_b.id} | pool}
        _check(relay, log, a, b, ids_a, ids_b, allowed)
    finally:
        relay_log.removeHandler(log)
        relay_log.setLevel(level)
        for p in procs.values():
            p.kill()
            p.wait(10)


def test_lan_workers_on_redis_keep_to_their_tenants_under_sigkills(
    relay: RelayServer, insane_env: dict[str, str], small_onnx: Path, sample_images: dict[str, bytes]
) -> None:
    a, b = make_tenant(relay.url, "lan-a"), make_tenant(relay.url, "lan-b")
    set_routing(relay.url, a.id, "own")
    set_routing(relay.url, b.id, "shared")
    admin = redis.Redis.from_url(relay.settings.redis_url)
    host_db = relay.settings.redis_url.split("://", 1)[1]
    users: list[str] = []

    def lan_url(tenant: str | None) -> str:
        name, password = f"lan-{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
        admin.execute_command("ACL", "SETUSER", *acl_rules(name, password, tenant))
        users.append(name)
        return f"redis://{name}:{password}@{host_db}"

    own_a = enroll_worker(relay.url, tenant=a.id, name="lan-a-pc")
    own_b = enroll_worker(relay.url, tenant=b.id, name="lan-b-pc")
    shared = enroll_worker(relay.url, name="lan-pool")
    creds = {
        "lan-a-pc": (own_a, lan_url(a.id)),
        "lan-b-pc": (own_b, lan_url(b.id)),
        "lan-pool": (shared, lan_url(None)),
    }
    env = {**insane_env, "INSANE_RELAY_URL": relay.url, "INSANE_WORKER_SOURCE": "redis"}
    procs: dict[str, subprocess.Popen] = {}

    def restart(name: str) -> subprocess.Popen:
        worker, url = creds[name]
        return _worker(env, worker.secret, small_onnx, {"INSANE_REDIS_URL": url})

    try:
        with serve_images({}) as camera:
            for t in (a, b):
                allow_private_hosts(relay.url, t.id, [camera.host])
            frames = [sample_images["bus.jpg"], sample_images["zidane.jpg"]]
            ids_a = _post_all(relay, a, camera, frames, "la")
            ids_b = _post_all(relay, b, camera, frames, "lb")
            for name in creds:
                procs[name] = restart(name)
            _wait_done(relay, ids_a + ids_b, procs, restart)
        # Tenant a's routing is `own`: its own worker only. Tenant b's is `shared`: its own worker or any shared
        # one. A long-poll still waiting at the relay when an earlier test killed its worker may take one of
        # b's events; it comes back to a live worker once that lease lapses.
        pool = run_sync(_shared_workers(relay.settings.database_url))
        assert shared.id in pool
        allowed = {a.id: {own_a.id}, b.id: {own_b.id} | pool}
        rows = run_sync(_rows(relay.settings.database_url, ids_a + ids_b))
        assert all(r["n"] == 1 and r["status"] == "done" for r in rows)
        names = {w.id: n for n, (w, _) in creds.items()}
        for r in rows:
            given = {names.get(str(w), str(w)) for w in r["delivered_to"]}
            may = {names.get(w, w) for w in allowed[str(r["tenant_id"])]}
            tenant = "a" if str(r["tenant_id"]) == a.id else "b"
            assert given <= may, (str(r["id"]), tenant, given, may)
            assert names.get(str(r["worker_id"])) in may
    finally:
        for p in procs.values():
            p.kill()
            p.wait(10)
        for name in users:
            admin.execute_command("ACL", "DELUSER", name)
