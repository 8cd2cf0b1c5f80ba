"""installer/relay/insane-relay.service and relay.env.example: a hardened unit, every relay setting documented."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import ENV_PREFIX, Settings
from insane.devkit import ROOT

RELAY = ROOT / "installer" / "relay"
UNIT = RELAY / "insane-relay.service"
ENV_FILE = RELAY / "relay.env.example"


def unit_service() -> dict[str, list[str]]:
    """The [Service] keys and their values (a key may repeat in systemd, so each maps to a list)."""
    seen: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#") and section == "Service":
            key, _, value = line.partition("=")
            seen.setdefault(key, []).append(value)
    return seen


def test_unit_runs_insane_relay_hardened() -> None:
    service = unit_service()
    assert service["ExecStart"] == ["/opt/insane/bin/insane relay"]
    assert service["EnvironmentFile"] == ["/etc/insane/relay.env"]
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == [value], key
    assert "User" not in service  # DynamicUser: no fixed account on the host


def _verifiable_copy(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this checkout's `insane`.
    insane = Path(sys.executable).with_name("insane")
    if not insane.exists():
        pytest.skip(f"no `insane` script beside {sys.executable} (pip install -e . first)")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/insane/bin/insane", str(insane)))
    return copy


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("no systemd-analyze here (Debian: apt-get install systemd)")
    unit = _verifiable_copy(tmp_path)
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    own = [line for line in done.stderr.splitlines() if unit.name in line]
    assert done.returncode == 0 and not own, done.stderr


def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("no systemd-analyze here (Debian: apt-get install systemd)")
    unit = _verifiable_copy(tmp_path)
    # --threshold is on a 0-100 scale; 20 is "2.0 OK" in systemd's words. This unit scores 1.2.
    done = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=20", str(unit)], capture_output=True, text=True, timeout=60
    )
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis (systemd < 250)")
    assert done.returncode == 0, done.stdout[-2000:]


def relay_setting_names() -> list[str]:
    """Fields of Settings in the settings module's relay sections (and before the first section).

    A section is a comment line at class-body indentation; it is a relay section when it names the relay.
    """
    source = (ROOT / "core" / "settings.py").read_text().split("class Settings(BaseSettings):", 1)[1]
    names, relay = [], True
    for line in source.splitlines():
        if re.match(r"^    # ", line):
            relay = "relay" in line.lower() and "relay's base url" not in line.lower()
        match = re.match(r"^    (\w+): ", line)
        if match and match.group(1) in Settings.model_fields and relay:
            names.append(match.group(1))
    return names


def env_template() -> tuple[dict[str, str], set[str]]:
    """(active assignments, every variable named in an assignment, active or commented out)."""
    active, named = {}, set()
    for line in ENV_FILE.read_text().splitlines():
        match = re.match(r"^(#?)(INSANE_\w+)=(.*)$", line)
        if match:
            named.add(match.group(2))
            if not match.group(1):
                active[match.group(2)] = match.group(3)
    return active, named


def test_every_relay_setting_is_in_the_env_template() -> None:
    names = relay_setting_names()
    assert {"database_url", "redis_url", "admin_token", "relay_port"} <= set(names)
    _, named = env_template()
    missing = [f"{ENV_PREFIX}{n.upper()}" for n in names if f"{ENV_PREFIX}{n.upper()}" not in named]
    assert not missing, f"document these in {ENV_FILE.relative_to(ROOT)}: {missing}"


def test_env_template_names_only_real_settings_with_valid_values() -> None:
    active, named = env_template()
    unknown = sorted(n for n in named if n.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields)
    assert not unknown
    settings = Settings(**{k.removeprefix(ENV_PREFIX).lower(): v for k, v in active.items()})
    assert settings.relay_host == "127.0.0.1"  # behind the proxy, never on a public interface
    assert settings.relay_migrate_on_start is True
