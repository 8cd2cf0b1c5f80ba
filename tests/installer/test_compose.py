"""installer/relay/compose.yaml: only the proxy is reachable from outside; Redis and PostgreSQL are not."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from insane.devkit import ROOT

RELAY = ROOT / "installer" / "relay"
SECRETS = {
    "RELAY_DOMAIN": "relay.example.com",
    "ACME_EMAIL": "admin@example.com",
    "POSTGRES_PASSWORD": "a" * 32,
    "INSANE_APP_DB_PASSWORD": "b" * 32,
    "REDIS_PASSWORD": "c" * 32,
    "INSANE_ADMIN_TOKEN": "d" * 32,
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((RELAY / "compose.yaml").read_text())


def published_ports(service: dict) -> list[str]:
    """The host side of each published port, in either the short ("443:443") or the long syntax."""
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append(str(entry.get("published", entry.get("target"))))
        else:
            parts = str(entry).split("/")[0].split(":")
            found.append(parts[-2] if len(parts) >= 2 else parts[0])
    return found


def service_networks(service: dict) -> set[str]:
    # A list of names, or a mapping of name -> options: set() of either gives the names.
    return set(service.get("networks", ["default"]))


def test_only_the_proxy_publishes_a_port_and_only_443(compose: dict) -> None:
    publishing = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert publishing == {"proxy"}
    assert published_ports(compose["services"]["proxy"]) == ["443"]
    for name, svc in compose["services"].items():
        assert svc.get("network_mode") is None, f"{name} must not share the host's network"


def test_redis_and_postgres_live_on_an_internal_network_only(compose: dict) -> None:
    networks = compose["networks"]
    for name in ("redis", "postgres"):
        nets = service_networks(compose["services"][name])
        assert nets, name
        for net in nets:
            assert networks[net].get("internal") is True, f"{name} is on {net}, which is not internal"
            assert not networks[net].get("external"), f"{name} is on {net}, an external network"
    # ...and the proxy cannot reach them at all: it shares no network with them.
    proxy_nets = service_networks(compose["services"]["proxy"])
    assert not proxy_nets & (
        service_networks(compose["services"]["redis"]) | service_networks(compose["services"]["postgres"])
    )


def test_redis_is_durable_and_password_protected_without_the_password_in_argv(compose: dict) -> None:
    redis = compose["services"]["redis"]
    script = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "appendonly yes" in script
    assert "requirepass $$REDIS_PASSWORD" in script
    assert "maxmemory-policy noeviction" in script  # evicting a stream would lose queued work
    assert "--requirepass" not in script  # a command-line password shows in `ps` on the host
    assert "redis-data:/data" in redis["volumes"]


def test_the_relay_reaches_its_stores_by_service_name_with_passwords(compose: dict) -> None:
    env = compose["services"]["relay"]["environment"]
    assert env["INSANE_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")
    assert "@redis:6379" in env["INSANE_REDIS_URL"]
    assert "@postgres:5432/" in env["INSANE_DATABASE_URL"]
    assert env["INSANE_APP_DATABASE_URL"].startswith("postgresql://insane_app:${INSANE_APP_DB_PASSWORD")
    assert compose["services"]["relay"]["build"]["dockerfile"] == "installer/relay/Dockerfile"
    assert (RELAY / compose["services"]["relay"]["build"]["context"] / "pyproject.toml").is_file()


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` plugin and no docker-compose here (Debian: apt-get install docker-compose)")
    # The same layout as the repository, with the operator's two files made from their examples.
    work = tmp_path / "installer" / "relay"
    shutil.copytree(RELAY, work, ignore=shutil.ignore_patterns(".env", "relay.env"))
    shutil.copy(RELAY / "relay.env.example", work / "relay.env")
    (tmp_path / "pyproject.toml").touch()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), **SECRETS}
    done = subprocess.run([*cli, "config"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == {"proxy", "relay", "postgres", "redis"}
    assert "c" * 32 in resolved["services"]["relay"]["environment"]["INSANE_REDIS_URL"]

    # Without the secrets compose refuses to start rather than run Redis without a password.
    env_without = {k: v for k, v in env.items() if k != "REDIS_PASSWORD"}
    refused = subprocess.run([*cli, "config"], cwd=work, env=env_without, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "REDIS_PASSWORD" in refused.stderr


def test_caddyfile_proxies_to_the_relay_with_tls_on_443_only(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("no caddy here (Debian: apt-get install caddy)")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RELAY_DOMAIN": "relay.example.com",
        "ACME_EMAIL": "admin@example.com",
    }
    done = subprocess.run(
        [caddy, "adapt", "--config", str(RELAY / "Caddyfile"), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    text = json.dumps(config)
    assert '"dial": "relay:8787"' in text
    assert '"relay.example.com"' in text
    issuers = config["apps"]["tls"]["automation"]["policies"][0]["issuers"]
    assert issuers[0]["challenges"]["http"]["disabled"] is True
    assert config["apps"]["http"]["servers"]["srv0"]["listen"] == [":443"]
