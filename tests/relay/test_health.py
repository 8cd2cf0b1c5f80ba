"""The relay process answers its health endpoints over real HTTP, against real PostgreSQL and Redis."""

from __future__ import annotations

import re
import signal
import subprocess

import httpx

from insane.devkit import INSANE


def test_relay_health_and_readiness(insane_env: dict[str, str]) -> None:
    with subprocess.Popen(
        [*INSANE, "relay", "--port", "0"],
        env=insane_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            line = proc.stdout.readline()
            url = re.match(r"relay listening on (http://\S+)", line)[1]
            assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 200
            assert ready.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            proc.kill()
