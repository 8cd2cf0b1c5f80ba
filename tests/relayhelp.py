"""Helpers for tests that need a real relay: a fresh database, a relay on a free port, tenants, workers.

    db_url = fresh_database(services)                     # CREATE DATABASE + migrations
    with RelayServer(relay_settings(services, db_url)) as relay:
        tenant = make_tenant(relay.url)                   # Creds(id, secret, headers)
        worker = enroll_worker(relay.url)                 # Creds for the worker API
        httpx.post(f"{relay.url}/v1/events", json=event_body(), headers=tenant.headers)
        relay.call(reconciler.reconcile_once)             # run a coroutine on the relay's own loop

Or as a child process: ``start_relay_process(env)`` runs ``insane relay --port 0``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import uvicorn

from core.settings import Settings, load_settings

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
_redis_dbs = itertools.cycle(range(1, 16))


def run_sync(coro):
    """Run a coroutine to completion from sync code, even when an event loop is running in this thread."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def fresh_database(services, migrate: bool = True) -> str:
    """A new, empty database on the session's PostgreSQL (migrated unless told not to); returns its owner URL."""
    from relay.db import migrate as run_migrations

    name = f"relay_{uuid.uuid4().hex[:12]}"
    base = services.database_url

    async def create() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_sync(create())
    url = base.rsplit("/", 1)[0] + f"/{name}"
    if migrate:
        run_sync(run_migrations(url))
    return url


def fresh_redis_url(services) -> str:
    """A Redis database index of its own (flushed), so modules do not see each other's streams."""
    import redis

    url = services.redis_url.rsplit("/", 1)[0] + f"/{next(_redis_dbs)}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


def relay_settings(services, database_url: str, redis_url: str | None = None, **overrides: Any) -> Settings:
    values = dict(
        database_url=database_url,
        redis_url=redis_url or fresh_redis_url(services),
        admin_token=ADMIN_TOKEN,
        relay_port=0,
        db_pool_size=10,
    )
    values.update(overrides)
    return load_settings(**values)


class RelayServer:
    """The relay app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, settings: Settings, **app_kwargs: Any) -> None:
        from relay.app import create_app
        from relay.server import DrainingServer

        self.settings = settings
        self.app = create_app(settings, **app_kwargs)
        self.server = DrainingServer(
            uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
        )
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (else ~40 ms per response).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        self.loop.close()

    def __enter__(self) -> RelayServer:
        self.thread.start()
        for _ in range(600):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.05)
        if not self.server.started:
            self.stop()
            raise RuntimeError("the relay did not start (see the log)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    @property
    def state(self):
        return self.app.state.relay

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 60) -> Any:
        """Run ``await fn(relay_state, *args)`` on the server's loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(fn(self.state, *args), self.loop)
        return future.result(timeout)


@dataclass
class Creds:
    id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_tenant(url: str, name: str | None = None, tier: str = "guardian") -> Creds:
    r = httpx.post(
        f"{url}/admin/tenants",
        json={"name": name or f"t-{uuid.uuid4().hex[:8]}", "tier": tier},
        headers=admin_headers(),
        timeout=30,
    )
    r.raise_for_status()
    body = r.json()
    return Creds(body["id"], body["api_key"])


def enroll_worker(url: str, tenant: str | None = None, name: str = "test-worker") -> Creds:
    r = httpx.post(f"{url}/admin/enroll-codes", json={"tenant": tenant}, headers=admin_headers(), timeout=30)
    r.raise_for_status()
    r = httpx.post(f"{url}/v1/workers/enroll", json={"code": r.json()["code"], "name": name}, timeout=30)
    r.raise_for_status()
    body = r.json()
    return Creds(body["worker_id"], body["token"])


def event_body(n: int = 3, camera: str = "front", **extra: Any) -> dict[str, Any]:
    body = {
        "camera": camera,
        "time": datetime.now(UTC).isoformat(),
        "moments": [f"https://cam.example.com/{uuid.uuid4().hex}/{i}.jpg" for i in range(n)],
    }
    body.update(extra)
    return body


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


def start_relay_process(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    """``insane relay --port 0`` as a child; returns (process, base URL). The caller terminates it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "insane", "relay", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    found = re.match(r"relay listening on (http://\S+)", line)
    if not found:
        proc.kill()
        raise RuntimeError(f"relay did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc, found[1]
