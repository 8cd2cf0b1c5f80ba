"""``insane worker --enroll CODE`` against a real relay: the token it prints works; a bad code exits 2."""

from __future__ import annotations

import os
import subprocess

import httpx

from insane.devkit import INSANE
from insane.devkit.client import admin_headers, make_tenant
from insane.devkit.relay import RelayServer


def _enroll(relay: RelayServer, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, INSANE_RELAY_URL=relay.url)
    return subprocess.run(
        [*INSANE, "worker", "--enroll", code, "--name", "cli-test"], env=env, capture_output=True, text=True, timeout=60
    )


def test_enroll_prints_a_working_token_and_the_dedicated_tenant(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    code = httpx.post(f"{relay.url}/admin/enroll-codes", json={"tenant": tenant.id}, headers=admin_headers()).json()
    done = _enroll(relay, code["code"])
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("iw_") and "\n" not in token
    assert f"--dedicated-tenant {tenant.id}" in done.stderr
    r = httpx.post(f"{relay.url}/v1/worker/heartbeat", json={}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    # A code works once.
    again = _enroll(relay, code["code"])
    assert again.returncode == 2 and "did not accept this code" in again.stderr and again.stdout == ""


def test_enroll_with_a_malformed_code_says_so(relay: RelayServer) -> None:
    done = _enroll(relay, "short")
    assert done.returncode == 2
    assert "does not look like an enrollment code" in done.stderr


def test_no_enroll_code_reads_as_a_command_line_option() -> None:
    from relay.tenants import new_enroll_code

    codes = [new_enroll_code() for _ in range(2000)]  # without the check, ~31 of them start with "-"
    assert not [c for c in codes if c.startswith("-")]
    assert len(set(codes)) == len(codes) and {len(c) for c in codes} == {24}
