"""`insane relay migrate`, `insane relay worker-acl` and `insane tenant` as an operator runs them."""

from __future__ import annotations

import json
import subprocess

from insane.devkit import INSANE
from insane.devkit.relay import fresh_database


def insane(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*INSANE, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_migrate_then_manage_tenants(services, insane_env: dict[str, str]) -> None:
    env = dict(insane_env, INSANE_DATABASE_URL=fresh_database(services, migrate=False))
    first = insane(env, "relay", "migrate")
    assert first.returncode == 0 and "001_init.sql" in first.stdout
    again = insane(env, "relay", "migrate")
    assert again.returncode == 0 and "applied 0 migration" in again.stdout

    made = json.loads(insane(env, "tenant", "--json", "create", "acme", "--tier", "pro").stdout)
    assert made["tier"] == "pro" and made["api_key"].startswith("ik_")
    assert insane(env, "tenant", "create", "acme").returncode == 1
    key = insane(env, "tenant", "key", "add", "acme").stdout.strip()
    assert key.startswith("ik_") and key != made["api_key"]
    assert insane(env, "tenant", "key", "revoke", key).returncode == 0
    revoked_again = insane(env, "tenant", "key", "revoke", key)
    assert revoked_again.returncode == 1 and "no active key" in revoked_again.stderr
    assert insane(env, "tenant", "tier", "acme", "guardian").returncode == 0
    bad_tier = insane(env, "tenant", "tier", "acme", "gold")
    assert bad_tier.returncode == 1 and "no tier 'gold'" in bad_tier.stderr
    listed = json.loads(insane(env, "tenant", "--json", "list").stdout)
    assert [(t["name"], t["tier"], t["keys"]) for t in listed] == [("acme", "guardian", 1)]
    code = json.loads(insane(env, "tenant", "--json", "enroll-code", "--tenant", "acme").stdout)
    assert len(code["code"]) >= 16 and code["dedicated_tenant"] == made["id"]

    bad_hook = insane(env, "tenant", "webhook", "acme", "http://0177.0.0.1:8080/hook")
    assert bad_hook.returncode == 1 and "webhook URL refused: not a valid URL" in bad_hook.stderr
    odd_port = insane(env, "tenant", "webhook", "acme", "https://hooks.example.com:7443/hook")
    assert odd_port.returncode == 1 and "port 7443 is not allowed" in odd_port.stderr
    assert json.loads(insane(env, "tenant", "--json", "ports", "acme", "7443").stdout) == [7443]
    assert insane(env, "tenant", "webhook", "acme", "https://hooks.example.com:7443/hook").returncode == 0
    bad_port = insane(env, "tenant", "ports", "acme", "70000")
    assert bad_port.returncode == 1 and "1 to 65535" in bad_port.stderr


def test_worker_acl_prints_least_privilege_rules(insane_env: dict[str, str]) -> None:
    out = insane(insane_env, "relay", "worker-acl", "garage", "--password", "s3cret-pass")
    assert out.returncode == 0
    line = out.stdout.strip()
    assert line.startswith("ACL SETUSER garage reset on >s3cret-pass") and "-@all" in line
    words = line.split()
    for forbidden in ("+xack", "+xtrim", "+xdel", "+xgroup", "+eval", "+keys", "+xadd", "+@all"):
        assert forbidden not in words
    tenant = "0f8c5c3e-5d6a-4c55-9a55-4bd7a2f4c7a1"
    dedicated = insane(insane_env, "relay", "worker-acl", "home", "--password", "s3cret-pass", "--tenant", tenant)
    assert dedicated.returncode == 0 and f'"~insane:{{t:{tenant}}}:*"' in dedicated.stdout
    assert "{pool}" not in dedicated.stdout and "+zadd" not in dedicated.stdout
    assert insane(insane_env, "relay", "worker-acl", "x", "--tenant", "not-a-tenant").returncode == 2


def test_relay_exits_2_without_its_services(insane_env: dict[str, str]) -> None:
    env = {k: v for k, v in insane_env.items() if k not in ("INSANE_DATABASE_URL", "INSANE_REDIS_URL")}
    assert insane(env, "relay", "--port", "0").returncode == 2
    assert insane(env, "tenant", "list").returncode == 2
