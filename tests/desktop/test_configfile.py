"""Settings changed in the tray are written to the TOML file and read back by load_settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.settings import load_settings
from desktop.configfile import ConfigWriteError, dumps, save_settings


def test_round_trip_through_load_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cfg" / "config.toml"
    path.parent.mkdir()
    path.write_text('log_level = "DEBUG"\nrelay_port = 9000\n')
    monkeypatch.setenv("INSANE_CONFIG", str(path))
    save_settings({"relay_url": 'https://relay.example/"odd"\\path', "worker_threads": 3, "use_gpu": True})
    settings = load_settings()
    assert settings.relay_url == 'https://relay.example/"odd"\\path'
    assert settings.worker_threads == 3
    assert settings.use_gpu is True
    assert settings.log_level == "DEBUG" and settings.relay_port == 9000  # untouched keys are kept
    save_settings({"relay_port": None})
    assert "relay_port" not in tomllib.loads(path.read_text())


def test_values_that_toml_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ConfigWriteError, match="cannot be written"):
        dumps({"x": float("nan")})
    with pytest.raises(ConfigWriteError, match="cannot be written"):
        dumps({"x": {"nested": 1}})
    with pytest.raises(ConfigWriteError, match="not a setting name"):
        dumps({"a b": 1})


def test_unicode_and_paths_round_trip() -> None:
    data = {"model": Path("/home/zoë/models/fall.onnx"), "name": "caméra\tcour", "sizes": [1, 2.5]}
    assert tomllib.loads(dumps(data)) == {
        "model": "/home/zoë/models/fall.onnx",
        "name": "caméra\tcour",
        "sizes": [1, 2.5],
    }


def test_broken_file_is_our_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("this is = = not toml")
    with pytest.raises(ConfigWriteError, match="could not read"):
        save_settings({"model": "x"}, path=path)
