"""core/detect/catalog.py: the user's own models, pinned like the known ones and fetched by name."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.detect.base import ModelNotFound
from core.detect.catalog import CatalogError, load_catalog
from core.detect.registry import ModelRegistry

SHA = "ab" * 32


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_entries_become_pinned_models_of_the_registry(tmp_path: Path) -> None:
    entry = {"name": "yard", "url": "https://nas.local/m/yard.pt", "sha256": SHA.upper(), "size": 123}
    path = _write(tmp_path, {"models": [entry, {**entry, "name": "gate", "url": "http://nas.local/gate.onnx"}]})
    yard, gate = load_catalog(path)
    assert (yard.name, yard.sources[0].kind, yard.sources[0].sha256, yard.sources[0].size) == ("yard", "pt", SHA, 123)
    assert gate.sources[0].kind == "onnx" and gate.description == "from http://nas.local/gate.onnx"
    reg = ModelRegistry.from_settings(SimpleNamespace(model_dir=tmp_path / "models", model_catalog=path))
    assert {"yolov8n", "fall-yolov8s", "yard", "gate"} <= set(reg.known)
    with pytest.raises(ModelNotFound, match="insane model download yard"):
        reg.resolve("yard")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{", "not valid JSON"),
        ([], r'expected \{"models": \[...\]\}'),
        ({"models": [{"name": "yolov8n", "url": "https://x/y.pt", "sha256": SHA, "size": 1}]}, "known model's name"),
        ({"models": [{"name": "../x", "url": "https://x/y.pt", "sha256": SHA, "size": 1}]}, r"models\[0\]\.name"),
        ({"models": [{"name": "a", "url": "file:///etc/passwd.pt", "sha256": SHA, "size": 1}]}, r"\.url: an http"),
        ({"models": [{"name": "a", "url": "https://x/y.zip", "sha256": SHA, "size": 1}]}, "must end in .pt or .onnx"),
        ({"models": [{"name": "a", "url": "https://x/y.pt", "sha256": "12", "size": 1}]}, "64 hexadecimal"),
        ({"models": [{"name": "a", "url": "https://x/y.pt", "sha256": SHA, "size": True}]}, "size in bytes"),
        ({"models": [{"name": "a", "url": "https://x/a.pt", "sha256": SHA, "size": 1}] * 2}, "appears twice"),
    ],
)
def test_a_bad_catalogue_is_named_with_the_entry_and_the_field(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, data))


def test_a_missing_catalogue_says_so(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(tmp_path / "absent.json")
