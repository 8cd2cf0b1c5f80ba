"""The relay tests' relay: background loops off (tests drive the reconciler and webhooks by hand), short
deadlines, and webhooks allowed to loopback."""

from __future__ import annotations

from typing import Any

import pytest

from core.ssrf import SsrfGuard


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"lease_idle_s": 1.0, "max_deliveries": 3, "requeue_after_s": 0.5, "max_moments": 32}


@pytest.fixture(scope="module")
def relay_app_options() -> dict[str, Any]:
    return {"webhook_guard": SsrfGuard(frozenset({"127.0.0.1"})), "background": False}
