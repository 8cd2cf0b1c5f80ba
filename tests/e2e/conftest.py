"""A real relay (PostgreSQL + Redis), a loopback image server and real ONNX models for the worker tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from insane.devkit import models
from insane.devkit.camera import serve_images
from insane.devkit.client import allow_private_hosts, make_tenant
from insane.devkit.relay import RelayServer, fresh_database, relay_settings


def _need_ultralytics() -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("needs the export extra: ultralytics is not importable (pip install '.[export]')")


@pytest.fixture(scope="session")
def person_onnx() -> Path:
    """Real trained YOLOv8s (classes Normal, Fall: people), dynamic batch, 640."""
    _need_ultralytics()
    cache = models.test_cache()
    return models.export_onnx(models.fall_model_pt(cache), cache, 640)


@pytest.fixture(scope="session")
def fast_onnx() -> Path:
    """YOLOv8n, random weights: for plumbing tests where only speed and shapes matter."""
    _need_ultralytics()
    cache = models.test_cache()
    return models.export_onnx(models.yolov8n_pt(cache), cache, 640)


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    _need_ultralytics()
    return models.sample_images()


@pytest.fixture(scope="module")
def image_server(photos) -> Iterator[str]:
    with serve_images(photos) as server:
        yield server.base


@pytest.fixture(scope="module")
def relay_db(services) -> str:
    return fresh_database(services)


@pytest.fixture(scope="module")
def relay(services, relay_db) -> Iterator[RelayServer]:
    settings = relay_settings(services, relay_db, lease_idle_s=5.0, max_deliveries=10, max_moments=64)
    with RelayServer(settings) as running:
        yield running


@pytest.fixture(scope="module")
def tenant(relay):
    creds = make_tenant(relay.url, tier="pro")
    allow_private_hosts(relay.url, creds.id, ["127.0.0.1"])
    return creds
