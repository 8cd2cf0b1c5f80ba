"""The reliability tests: real relays, real Redis/PostgreSQL, real ONNX models, real faults.

Every test here is marked ``reliability`` (``pytest -m reliability`` runs just these); they are part of
the default run, so CI runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: fault, load and hostile-input proof (tests/reliability)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)
