"""The worker tests' relay (leases idle 5 s, 10 deliveries, 64 moments) and a camera serving the sample photos."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from insane.devkit.camera import serve_images


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"lease_idle_s": 5.0, "max_deliveries": 10, "max_moments": 64}


@pytest.fixture(scope="module")
def image_server(sample_images: dict[str, bytes]) -> Iterator[str]:
    """A camera's snapshot server on loopback serving bus.jpg, zidane.jpg and frame1080.jpg; its base URL."""
    with serve_images(sample_images) as server:
        yield server.base
