"""Write the settings the user changed in the tray back to the TOML config file.

    path = save_settings({"relay_url": "https://relay.example", "worker_threads": 4})

Only top-level scalar keys are written (the settings are flat); keys already in the file and not
named here are kept. Comments in the file are not kept: the file is rewritten whole, atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.settings import ENV_PREFIX, default_config_file

log = logging.getLogger(__name__)


class ConfigWriteError(Exception):
    """The config file could not be read or written; ``str()`` is a sentence for the user."""


def config_path() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG") or default_config_file())


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigWriteError(f"{key}: {value} cannot be written to the config file")
        return repr(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string: the same escapes, \uXXXX included.
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(key, v) for v in value) + "]"
    raise ConfigWriteError(f"{key}: a {type(value).__name__} cannot be written to the config file")


def dumps(data: Mapping[str, Any]) -> str:
    lines = []
    for key, value in data.items():
        if not key.replace("_", "").isalnum():
            raise ConfigWriteError(f"{key!r} is not a setting name")
        lines.append(f"{key} = {_toml_value(key, value)}")
    return "\n".join(lines) + "\n"


def save_settings(changes: Mapping[str, Any], path: Path | None = None) -> Path:
    """Merge ``changes`` into the config file (``None`` removes a key) and return its path."""
    path = path or config_path()
    try:
        current = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        current = {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigWriteError(f"could not read {path}: {exc}") from exc
    for key, value in changes.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    text = dumps(current)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigWriteError(f"could not write {path}: {exc.strerror or exc}") from exc
    log.info("settings saved to %s (%s)", path, ", ".join(sorted(changes)))
    return path
