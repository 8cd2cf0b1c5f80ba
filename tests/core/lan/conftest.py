"""The LAN API tests' workers: a real worker (real ONNX models through onnxruntime) serving the DeepStack API
on a loopback port, one per module, with and without a key (tests/core/lan/harness.py builds them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from insane.devkit.deepstack import WorkerThread, fixed_coco_model, grid_boxes
from tests.core.lan.harness import lan_worker


@pytest.fixture(scope="session")
def crowd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COCO labels, 25 people that never overlap (0.95 down to 0.71) on every image."""
    return fixed_coco_model(tmp_path_factory.mktemp("models") / "crowd.onnx", grid_boxes(25))


@pytest.fixture(scope="module")
def lan(fall_model_onnx: Path) -> Iterator[WorkerThread]:
    with lan_worker(fall_model_onnx) as running:
        yield running


@pytest.fixture(scope="module")
def keyed_lan(fall_model_onnx: Path) -> Iterator[WorkerThread]:
    with lan_worker(fall_model_onnx, key="lan-secret-1") as running:
        yield running
