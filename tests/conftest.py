"""Shared fixtures: real Redis and PostgreSQL, started by the same code as `insane services up`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from insane.devkit.services import EmbeddedServices

# Nothing in the tests may read the developer's own config or write into their folders.
os.environ.setdefault("INSANE_CONFIG", "")
os.environ.pop("INSANE_CONFIG", None)
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

ROOT = Path(__file__).resolve().parent.parent
INSANE = [sys.executable, "-m", "insane"]


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")}
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["XDG_STATE_HOME"] = str(home / "state")
    os.environ["XDG_CACHE_HOME"] = os.environ.get("INSANE_TEST_CACHE") or str(home / "cache")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def services() -> Iterator[EmbeddedServices]:
    """One throwaway Redis and PostgreSQL for the whole run (fsync off: these are tests, not figures)."""
    with EmbeddedServices(durable=False) as running:
        yield running


@pytest.fixture
def insane_env(services: EmbeddedServices) -> dict[str, str]:
    """Environment for a child `insane` process pointed at the test services."""
    env = dict(os.environ)
    env.update(INSANE_DATABASE_URL=services.database_url, INSANE_REDIS_URL=services.redis_url)
    return env
