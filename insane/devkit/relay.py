"""A real relay for the demo, the benchmarks and the tests: a fresh database, the app on a free port.

    db_url = fresh_database(services)                     # CREATE DATABASE + migrations
    with RelayServer(relay_settings(services, db_url)) as relay:
        relay.url                                         # http://127.0.0.1:PORT, served from a thread
        relay.call(reconciler.reconcile_once)             # run a coroutine on the relay's own loop

    async with RelayServer(settings) as relay:            # or served by the running loop (the demo)
        ...

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
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import uvicorn

from core.settings import Settings, load_settings
from insane.devkit.client import ADMIN_TOKEN

START_TIMEOUT_S = 30.0
_redis_dbs = itertools.cycle(range(1, 16))


class RelayStartError(RuntimeError):
    """The relay did not start; its log says why."""


def run_sync(coro):
    """Run a coroutine to completion from sync code, even when an event loop is running in this thread."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def fresh_database(services, migrate: bool = True) -> str:
    """A new, empty database on the services' PostgreSQL (migrated unless told not to); returns its owner URL."""
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


async def count_results(database_url: str, event_ids: list[str]) -> int:
    """How many result rows these events have (as the database's owner: row-level security does not apply)."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM results WHERE event_id = ANY($1::uuid[])", [uuid.UUID(e) for e in event_ids]
        )
    finally:
        await conn.close()


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
    """Settings of a relay on ``database_url`` and a Redis database of its own, with the kit's admin token."""
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
    """The relay app under uvicorn on a free loopback port.

    ``with`` serves it from a background thread with its own loop (``call`` runs coroutines there);
    ``async with`` serves it from the running loop, beside whatever else that loop runs.
    """

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
        self._task: asyncio.Task | None = None

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        self.loop.close()

    def __enter__(self) -> RelayServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        if not self.server.started:
            self.stop()
            raise RelayStartError("the relay did not start (see the log)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    async def __aenter__(self) -> RelayServer:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.server.started or self._task.done():
                break
            await asyncio.sleep(0.05)
        if not self.server.started:
            await self.__aexit__()
            raise RelayStartError("the relay did not start (see the log)")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        try:
            if self._task is not None:
                await self._task
        finally:
            self.sock.close()

    @property
    def state(self):
        return self.app.state.relay

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 60) -> Any:
        """Run ``await fn(relay_state, *args)`` on the server's thread and return its result (``with`` only)."""
        assert self.loop is not None, "call() needs the relay running (use it in a with block)"
        future = asyncio.run_coroutine_threadsafe(fn(self.state, *args), self.loop)
        return future.result(timeout)


def start_relay_process(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    """``insane relay --port 0`` as a child; returns (process, base URL). The caller terminates it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "insane", "relay", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None  # both PIPE
    line = proc.stdout.readline()
    found = re.match(r"relay listening on (http://\S+)", line)
    if not found:
        proc.kill()
        raise RuntimeError(f"relay did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc, found[1]
