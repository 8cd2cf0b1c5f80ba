"""The bridge tests' fixtures: a mosquitto broker per test, the relay's settings, a tenant per test.

Helpers live in plain modules beside this one: ``mosquitto`` (broker, probe, publish) and ``bridge_kit``
(Frigate's messages, snapshots, bridge settings).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from insane.devkit.client import make_tenant
from insane.devkit.relay import RelayServer
from tests.core.integrations.mosquitto import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    running = Mosquitto(tmp_path / "mosquitto")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"lease_idle_s": 5.0, "max_deliveries": 10, "max_moments": 64}


@pytest.fixture
def fresh_tenant(relay: RelayServer):
    """A Pro tenant of its own per test (the root `tenant` is one per module): tests count its rows."""
    return make_tenant(relay.url, tier="pro")
