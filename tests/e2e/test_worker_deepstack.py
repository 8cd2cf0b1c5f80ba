"""`insane worker --serve-deepstack`: the headless worker serves the DeepStack API beside its relay work,
both answered, and it stops cleanly; a port in use is a clear error and exit status 2."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from codeprojectai import core as cpai

from insane.devkit.client import enroll_worker, make_tenant, post_event, wait_done

pytestmark = pytest.mark.timeout(300)


def worker_env(relay_url: str, token: str, model) -> dict[str, str]:
    return dict(
        os.environ,
        INSANE_RELAY_URL=relay_url,
        INSANE_WORKER_TOKEN=token,
        INSANE_MODEL=str(model),
        INSANE_WORKER_THREADS="2",
        INSANE_WORKER_LEASE_WAIT_S="1",
    )


async def test_lan_requests_and_relay_events_are_both_answered(relay, sample_images, fall_model_onnx) -> None:
    tenant = make_tenant(relay.url, tier="pro")
    creds = enroll_worker(relay.url, name="with-lan-api")
    proc = subprocess.Popen(  # noqa: ASYNC220  # Popen returns at once; reads go through an executor
        [sys.executable, "-m", "insane", "worker", "--json", "--serve-deepstack", "127.0.0.1:0"],
        env=worker_env(relay.url, creds.secret, fall_model_onnx),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    loop = asyncio.get_running_loop()
    try:
        port = None
        for _ in range(50):
            line = await loop.run_in_executor(None, proc.stderr.readline)
            found = re.search(r"API on http://127\.0\.0\.1:(\d+)/v1/vision/detection", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "the worker did not say where the API serves"
        # Relay work (3 events of 6 moments) and LAN requests at the same time: both finish.
        events = [post_event(relay.url, tenant, uploads=[sample_images["bus.jpg"]] * 6) for _ in range(3)]
        client = cpai.CodeProjectAIObject(ip="127.0.0.1", port=port, min_confidence=0.4)
        lan = [loop.run_in_executor(None, client.detect, sample_images["bus.jpg"]) for _ in range(4)]
        answers = await asyncio.gather(*lan)
        assert all([p["label"] for p in preds] == ["Normal"] * 4 for preds in answers)
        views = await wait_done(relay.url, tenant, events, timeout_s=180)
        assert all(v["status"] == "done" and v["k"] == 6 for v in views.values())
        lan_stats = None
        for _ in range(20):
            snap = json.loads(await loop.run_in_executor(None, proc.stdout.readline))
            if snap.get("lan", {}).get("requests_total") == 4:
                lan_stats = snap["lan"]
                break
        assert lan_stats is not None and lan_stats["errors_total"] == 0
        proc.send_signal(signal.SIGTERM)
        assert await loop.run_in_executor(None, proc.wait, 60) == 0
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0  # the API stopped with the worker
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()


def test_a_port_in_use_is_a_clear_error(relay, fall_model_onnx) -> None:
    creds = enroll_worker(relay.url, name="port-taken")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "insane", "worker", "--serve-deepstack", f"127.0.0.1:{port}"],
            env=worker_env(relay.url, creds.secret, fall_model_onnx),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2
    assert f"DeepStack API: cannot listen on 127.0.0.1:{port}" in done.stderr


def test_a_bad_address_is_refused_before_anything_starts(relay, fall_model_onnx) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "insane", "worker", "--serve-deepstack", "localhost:http"],
        env=worker_env(relay.url, "iw_x_" + "y" * 30, fall_model_onnx),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "INSANE_SERVE_DEEPSTACK='localhost:http' is invalid" in done.stderr
