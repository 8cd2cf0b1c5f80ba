"""``insane worker`` as a container runs it: SIGTERM drains (finishes and posts what it holds), the health file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from insane.commands.worker import check_health
from insane.devkit.client import enroll_worker, make_tenant, post_event
from insane.devkit.relay import count_results

pytestmark = pytest.mark.timeout(300)


async def test_sigterm_finishes_the_events_held_posts_them_and_exits_0(
    relay, relay_db, sample_images, yolov8n_onnx, tmp_path
):
    tenant = make_tenant(relay.url, tier="guardian")
    creds = enroll_worker(relay.url, name="drained")
    health = tmp_path / "health.json"
    env = dict(
        os.environ,
        INSANE_RELAY_URL=relay.url,
        INSANE_WORKER_TOKEN=creds.secret,
        INSANE_MODEL=str(yolov8n_onnx),
        INSANE_WORKER_THREADS="1",
        INSANE_WORKER_LEASE_WAIT_S="1",
        INSANE_WORKER_BATCH_SIZE="2",
    )
    events = [post_event(relay.url, tenant, uploads=[sample_images["bus.jpg"]] * 8) for _ in range(6)]
    proc = subprocess.Popen(  # noqa: ASYNC220  # Popen returns at once; reads go through an executor
        [sys.executable, "-m", "insane", "worker", "--json", "--health-file", str(health)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        loop = asyncio.get_running_loop()
        at_signal = None
        for _ in range(600):
            line = await loop.run_in_executor(None, proc.stdout.readline)
            if not line:
                break
            snap = json.loads(line)
            if snap["images_total"] > 0:  # inference under way: events are leased and in flight
                at_signal = snap
                assert check_health(health, 30)[0], check_health(health, 30)[1]
                proc.send_signal(signal.SIGTERM)
                break
        assert at_signal is not None
        out, err = await loop.run_in_executor(None, proc.communicate, None, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, err[-2000:]
    assert "stopping (finishing what is held)" in err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["state"] == "stopped"
    # It kept reviewing after the signal, and every event it finished is stored: nothing held was dropped.
    assert last["events_total"] > at_signal["events_total"]
    assert await count_results(relay_db, events) == last["events_total"]
    healthy, why = check_health(health, 30)
    assert not healthy and why.startswith("stopped")


def test_health_reads_fresh_stale_error_and_missing_status(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    assert check_health(path, 30) == (False, f"no status in {path} yet")
    now = time.time()
    path.write_text(json.dumps({"at": now, "state": "idle", "images_per_s": 0.0, "provider": "CPUExecutionProvider"}))
    assert check_health(path, 30, now + 5) == (True, "idle, 0.0 img/s on CPUExecutionProvider")
    healthy, why = check_health(path, 30, now + 31)
    assert not healthy and why == "status is 31 s old (the worker is stuck or gone; last state idle)"
    path.write_text(json.dumps({"at": now, "state": "error", "detail": "lease failed: relay unreachable"}))
    assert check_health(path, 30, now) == (False, "error: lease failed: relay unreachable")
    path.write_text("{half")
    assert not check_health(path, 30)[0] and "cannot read" in check_health(path, 30)[1]
    for junk in ("[1, 2]", '{"at": "yesterday"}', "{}", "null"):
        path.write_text(junk)
        assert check_health(path, 30) == (False, f"{path} is not a worker status (no numeric 'at')"), junk


def test_the_health_command_exits_1_when_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"at": time.time(), "state": "running", "images_per_s": 3.5, "provider": "CPU"}))
    cmd = [sys.executable, "-m", "insane", "worker", "--check-health", str(path)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "running, 3.5 img/s on CPU"
    path.write_text(json.dumps({"at": time.time() - 100, "state": "running"}))
    stale = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "old" in stale.stdout
