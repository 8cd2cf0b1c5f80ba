"""Settings: typed, validated at start, exact messages, exit code 2 from the entry point."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings, reference
from insane.devkit import INSANE


def test_defaults_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.relay_port == 8787
    assert settings.worker_threads >= 1
    assert settings.relay_url == "http://127.0.0.1:8787"


def test_environment_and_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('relay_port = 9000\nmodel = "fall-yolov8s"\n')
    monkeypatch.setenv("INSANE_CONFIG", str(config))
    monkeypatch.setenv("INSANE_RELAY_PORT", "9100")
    settings = load_settings()
    assert settings.relay_port == 9100  # the environment beats the file
    assert settings.model == "fall-yolov8s"
    assert load_settings(relay_port=9200).relay_port == 9200  # a flag beats both


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("INSANE_RELAY_PORT", "eighty", "INSANE_RELAY_PORT='eighty' is invalid: Input should be a valid integer"),
        ("INSANE_RELAY_PORT", "70000", "expected a TCP port from 0 to 65535"),
        ("INSANE_DATABASE_URL", "mysql://x", "must start with postgresql://"),
        ("INSANE_REDIS_URL", "http://x", "must start with redis://"),
        ("INSANE_WORKER_THREADS", "0", "INSANE_WORKER_THREADS='0' is invalid"),
        ("INSANE_LOG_LEVEL", "LOUD", "expected one of DEBUG, INFO, WARNING, ERROR"),
        ("INSANE_USE_GPU", "maybe", "expected true or false"),
    ],
)
def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert expected in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_admin_token_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSANE_ADMIN_TOKEN", "short")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "short" not in str(info.value)
    assert "INSANE_ADMIN_TOKEN" in str(info.value)


def test_unknown_toml_key_and_broken_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("relay_prot = 1\n")
    monkeypatch.setenv("INSANE_CONFIG", str(config))
    with pytest.raises(SettingsError, match="unknown setting 'relay_prot'"):
        load_settings()
    config.write_text("relay_port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings()
    monkeypatch.setenv("INSANE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="INSANE_CONFIG: no such file"):
        load_settings()


def test_toml_value_error_names_the_file_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('relay_port = "x"\n')
    monkeypatch.setenv("INSANE_CONFIG", str(config))
    with pytest.raises(SettingsError, match=r"relay_port \(config file\)='x' is invalid"):
        load_settings()


def test_worker_k_max_pro_is_still_read_by_its_old_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("worker_k_max = 40\n")
    monkeypatch.setenv("INSANE_CONFIG", str(config))
    assert load_settings().worker_k_max_pro == 40  # the old TOML key
    monkeypatch.setenv("INSANE_WORKER_K_MAX", "30")
    assert load_settings().worker_k_max_pro == 30  # the old variable, which beats the file as before
    monkeypatch.setenv("INSANE_WORKER_K_MAX_PRO", "20")
    assert load_settings().worker_k_max_pro == 20  # the new name wins over the old
    assert load_settings(worker_k_max_pro=10).worker_k_max_pro == 10  # and a flag over both
    monkeypatch.setenv("WORKER_K_MAX", "5")  # only INSANE_ variables are settings
    monkeypatch.delenv("INSANE_WORKER_K_MAX_PRO")
    monkeypatch.delenv("INSANE_WORKER_K_MAX")
    assert load_settings().worker_k_max_pro == 40


def test_a_bad_value_under_the_old_name_names_the_old_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INSANE_WORKER_K_MAX", "0")
    with pytest.raises(SettingsError, match=r"^INSANE_WORKER_K_MAX='0' is invalid"):
        load_settings()
    monkeypatch.delenv("INSANE_WORKER_K_MAX")
    config = tmp_path / "config.toml"
    config.write_text("worker_k_max = 0\n")
    monkeypatch.setenv("INSANE_CONFIG", str(config))
    with pytest.raises(SettingsError, match=r"^worker_k_max \(config file\)=0 is invalid"):
        load_settings()
    assert "INSANE_WORKER_K_MAX_PRO" in [row[0] for row in reference()]


def test_relay_with_bad_setting_exits_2_with_one_line() -> None:
    env = dict(os.environ, INSANE_REDIS_URL="http://localhost:6379")
    result = subprocess.run([*INSANE, "relay", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "insane: invalid setting: INSANE_REDIS_URL='http://localhost:6379' is invalid: must start with "
        "redis://, rediss:// or unix://; expected a Redis URL, redis://[:password@]host:port/db"
    ]
    assert "Traceback" not in result.stderr


def test_reference_lists_every_setting() -> None:
    names = [row[0] for row in reference()]
    assert "INSANE_RELAY_PORT" in names and "INSANE_DATABASE_URL" in names


def test_every_subcommand_explains_itself() -> None:
    from insane.cli import COMMANDS

    for name, _ in COMMANDS:
        result = subprocess.run([*INSANE, name, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (name, result.stderr)
        assert f"usage: insane {name}" in result.stdout


def test_bridge_settings_from_the_file_with_a_table_per_camera(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'frigate_cameras = ["front_door", "driveway"]\n'
        'frigate_label_map = { person = ["person", "Normal"] }\n'
        "[frigate_camera_overrides.driveway]\n"
        'labels = ["car"]\n'
        "moments = 30\n"
    )
    monkeypatch.setenv("INSANE_CONFIG", str(config))
    s = load_settings(mqtt_url="mqtts://broker.lan", frigate_url="http://frigate:5000/")
    assert (
        s.frigate_camera_overrides["driveway"].labels == ["car"]
        and s.frigate_camera_overrides["driveway"].moments == 30
    )
    assert s.frigate_label_map == {"person": ["person", "Normal"]} and s.frigate_url == "http://frigate:5000"
    config.write_text("[frigate_camera_overrides.driveway]\nmoments = 0\ncolour = 'red'\n")
    with pytest.raises(SettingsError) as err:
        load_settings()
    lines = str(err.value).splitlines()
    assert "frigate_camera_overrides (config file)=0 is invalid: driveway.moments: Input should be greater" in lines[0]
    assert "driveway.colour: Extra inputs are not permitted" in lines[1]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("INSANE_MQTT_URL", "tcp://broker", "must be mqtt://host[:port] or mqtts://host[:port]"),
        ("INSANE_MQTT_URL", "mqtt://user:pw@broker", "the user goes in INSANE_MQTT_USERNAME"),
        ("INSANE_MQTT_URL", "mqtt://broker:99999", "Port out of range"),
        ("INSANE_MQTT_TOPIC_PREFIX", "insane/#", "must be a topic without wildcards"),
        ("INSANE_FRIGATE_URL", "frigate:5000", "must start with http:// or https://"),
        ("INSANE_FRIGATE_LABELS", '["person"', "is invalid: Input should be a valid list; expected Frigate labels"),
        (
            "INSANE_FRIGATE_LABEL_MAP",
            "{person: x}",
            "INSANE_FRIGATE_LABEL_MAP is not valid JSON; expected model labels",
        ),
        ("INSANE_FRIGATE_MOMENTS", "0", "INSANE_FRIGATE_MOMENTS='0' is invalid"),
    ],
)
def test_bad_bridge_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert expected in str(err.value)


def test_bridge_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSANE_MQTT_PASSWORD", "x" * 5000)
    monkeypatch.setenv("INSANE_API_KEY", '["not", "a", "string"]')
    with pytest.raises(SettingsError) as err:
        load_settings(frigate_password=["neither"])
    assert "xxxxx" not in str(err.value) and "neither" not in str(err.value) and "********" in str(err.value)
