"""Fixtures for the reliability tests: real relays, real Redis/PostgreSQL, real ONNX models, real faults.

Every test here is marked ``reliability`` (``pytest -m reliability`` runs just these); they are part of
the default run, so CI runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from insane.devkit import models
from tests.e2e.conftest import _need_ultralytics, fast_onnx, photos  # noqa: F401 - fixtures shared with e2e


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: fault, load and hostile-input proof (tests/reliability)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def small_onnx() -> Path:
    """YOLOv8n with random weights at 320×320: real inference work at a quarter of the 640 cost."""
    _need_ultralytics()
    cache = models.test_cache()
    return models.export_onnx(models.yolov8n_pt(cache), cache, 320)
