"""A migrated database and a running relay per test module (real PostgreSQL, Redis, uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.ssrf import SsrfGuard
from insane.devkit.relay import RelayServer, fresh_database, relay_settings


@pytest.fixture(scope="module")
def relay_db(services) -> str:
    return fresh_database(services)


@pytest.fixture(scope="module")
def relay(services, relay_db: str) -> Iterator[RelayServer]:
    """A relay whose background loops are off: tests drive the reconciler and webhooks by hand."""
    settings = relay_settings(
        services, relay_db, lease_idle_s=1.0, max_deliveries=3, requeue_after_s=0.5, max_moments=32
    )
    with RelayServer(settings, webhook_guard=SsrfGuard(frozenset({"127.0.0.1"})), background=False) as running:
        yield running
