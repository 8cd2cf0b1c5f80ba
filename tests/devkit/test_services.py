"""The embedded services: real servers that answer, and never outlive their owner."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from insane.devkit import INSANE
from insane.devkit.services import EmbeddedServices, ServiceError


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited; only its parent's wait is missing
            return True
        time.sleep(0.05)
    return False


def test_redis_stream_round_trip(services: EmbeddedServices) -> None:
    client = redis.Redis.from_url(services.redis_url)
    try:
        assert client.info("server")["redis_version"].split(".")[0] >= "6"
        client.xgroup_create("t:lane", "workers", id="0", mkstream=True)
        entry_id = client.xadd("t:lane", {"event": "e1"})
        [[stream, entries]] = client.xreadgroup("workers", "w1", {"t:lane": ">"}, count=10)
        assert stream == b"t:lane"
        assert entries == [(entry_id, {b"event": b"e1"})]
        assert client.xack("t:lane", "workers", entry_id) == 1
        assert client.xpending("t:lane", "workers")["pending"] == 0
    finally:
        client.delete("t:lane")
        client.close()


async def test_postgres_query(services: EmbeddedServices) -> None:
    conn = await asyncpg.connect(services.database_url)
    try:
        assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
        version = await conn.fetchval("SHOW server_version_num")
        assert int(version) >= 150000
    finally:
        await conn.close()


def test_context_manager_stops_servers() -> None:
    with EmbeddedServices(durable=True) as running:
        pids = [s.pid for s in running.servers.values()]
        root = running.root
        assert len(pids) == 2
    assert all(_gone(pid) for pid in pids)
    assert not root.exists()


def test_redis_restart_keeps_data_with_aof() -> None:
    with EmbeddedServices(postgres=False, durable=True) as running:
        client = redis.Redis.from_url(running.redis_url)
        client.xadd("lane", {"k": "v"})
        time.sleep(1.2)  # appendfsync everysec
        old = running.servers["redis"].pid
        running.restart_redis()
        assert _gone(old)
        client = redis.Redis.from_url(running.redis_url)
        assert client.xlen("lane") == 1
        client.close()


@contextlib.contextmanager
def services_up() -> Iterator[tuple[subprocess.Popen, dict[str, int]]]:
    """Run `insane services up` and yield it once ready, with the servers' pids read from its output."""
    with subprocess.Popen(
        [*INSANE, "services", "up", "--fast"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            pids = {}
            for line in proc.stdout:
                if m := re.match(r"(redis|postgres): \S+ \(pid (\d+)\)", line):
                    pids[m[1]] = int(m[2])
                if line.startswith("ready"):
                    break
            else:
                raise AssertionError(f"`services up` ended before ready: {proc.stderr.read()}")
            yield proc, pids
        finally:
            proc.kill()


def test_sigint_to_services_up_leaves_nothing() -> None:
    with services_up() as (proc, pids):
        assert set(pids) == {"redis", "postgres"}
        status = subprocess.run([*INSANE, "services", "status"], capture_output=True, text=True, timeout=30)
        assert status.returncode == 0 and "redis: redis://127.0.0.1:" in status.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    assert all(_gone(pid) for pid in pids.values()), pids
    status = subprocess.run([*INSANE, "services", "status"], capture_output=True, text=True, timeout=30)
    assert status.returncode == 3 and "not running" in status.stdout


def test_services_down_stops_up() -> None:
    with services_up() as (proc, pids):
        down = subprocess.run([*INSANE, "services", "down"], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert proc.wait(30) == 0
    assert all(_gone(pid) for pid in pids.values())


def test_sigkill_of_owner_takes_servers_with_it() -> None:
    with services_up() as (proc, pids):
        proc.kill()
        proc.wait()
    assert all(_gone(pid) for pid in pids.values()), pids


def test_crash_during_start_leaves_nothing() -> None:
    # A PostgreSQL whose server dies at start: Redis, already running, must be stopped again.
    # (Under /tmp, not tmp_path: as root the server runs as the postgres user, who must reach it.)
    fake = Path(tempfile.mkdtemp(prefix="insane-fake-pg-"))
    fake.chmod(0o755)
    for name, body in {
        "initdb": "exit 0",
        "postgres": "echo 'FATAL: simulated crash'; exit 1",
        "pg_isready": "exit 2",
    }.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    env = dict(os.environ, INSANE_PG_BIN=str(fake))
    result = subprocess.run([*INSANE, "services", "up", "--fast"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "postgres exited with code 1 during start" in result.stderr
    assert "simulated crash" in result.stderr
    redis_pid = int(re.search(r"redis started, pid (\d+)", result.stderr)[1])
    assert _gone(redis_pid)
    assert "Traceback" not in result.stderr
    shutil.rmtree(fake)


def test_missing_postgres_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSANE_PG_BIN", str(tmp_path))
    running = EmbeddedServices(redis=True, postgres=True, durable=False)
    with pytest.raises(ServiceError, match="no PostgreSQL server binaries found"):
        running.start()
    assert running.servers == {}


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signals are Linux-only")
def test_exception_during_start_in_process_stops_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    running = EmbeddedServices(durable=False)

    def boom(self):
        raise KeyboardInterrupt  # Ctrl-C while PostgreSQL starts

    monkeypatch.setattr(EmbeddedServices, "start_postgres", boom)
    with pytest.raises(KeyboardInterrupt):
        running.start()
    assert running.servers == {}


def test_folders_of_dead_owners_are_swept_and_live_ones_kept(tmp_path) -> None:
    from insane.devkit.services import OWNER_FILE, ROOT_PREFIX, sweep_orphans

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan, alive, unowned = (tmp_path / f"{ROOT_PREFIX}{n}" for n in ("orphan", "alive", "unowned"))
    for folder in (orphan, alive, unowned):
        (folder / "pgdata").mkdir(parents=True)
    (orphan / OWNER_FILE).write_text(str(dead.pid))
    (alive / OWNER_FILE).write_text(str(os.getpid()))
    assert sweep_orphans(tmp_path) == [orphan]
    assert not orphan.exists() and alive.exists() and unowned.exists()


def test_services_write_their_owner_and_remove_their_folder() -> None:
    from insane.devkit.services import OWNER_FILE

    with EmbeddedServices(postgres=False) as running:
        root = running.root
        assert (root / OWNER_FILE).read_text() == str(os.getpid())
    assert not root.exists()
