"""Models of your own, fetched by name like the known ones: a JSON catalogue named by INSANE_MODEL_CATALOG.

    {"models": [{"name": "yard", "url": "https://nas.local/models/yard.pt",
                 "sha256": "9f2c…", "size": 22502634, "description": "our yard, 3 classes"}]}

    registry = ModelRegistry(model_dir, known=KNOWN + load_catalog(Path("models.json")))

Each entry is pinned like a known model (size and SHA-256, checked before anything is kept); a ``.pt`` URL
is converted to ONNX after the download, a ``.onnx`` URL is used as it is. A catalogue cannot redefine a
known model's name: ``yolov8n`` always means the pinned Ultralytics weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.detect.base import DetectorError
from core.detect.registry import KNOWN, ModelSource, ModelSpec

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_BYTES = 1 << 20


class CatalogError(DetectorError):
    """The catalogue file cannot be used; ``str()`` names the file, the entry and what is wrong."""


def load_catalog(path: Path) -> tuple[ModelSpec, ...]:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise CatalogError(f"model catalogue {path}: larger than {MAX_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"model catalogue {path}: cannot be read ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"model catalogue {path}: not valid JSON ({exc})") from exc
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise CatalogError(f'model catalogue {path}: expected {{"models": [...]}}')
    specs = [_spec(entry, f"model catalogue {path}: models[{i}]") for i, entry in enumerate(entries)]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise CatalogError(f"model catalogue {path}: a name appears twice")
    return tuple(specs)


def _spec(entry: Any, where: str) -> ModelSpec:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected an object")
    name, url, sha, size = (entry.get(k) for k in ("name", "url", "sha256", "size"))
    if not isinstance(name, str) or not NAME.match(name):
        raise CatalogError(f"{where}.name: letters, digits, '.', '_' or '-', at most 64")
    if any(spec.name == name for spec in KNOWN):
        raise CatalogError(f"{where}.name: {name!r} is a known model's name and cannot be redefined")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise CatalogError(f"{where}.url: an http(s) URL")
    kind = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
    if kind not in ("pt", "onnx"):
        raise CatalogError(f"{where}.url: must end in .pt or .onnx")
    if not isinstance(sha, str) or not SHA256.match(sha.lower()):
        raise CatalogError(f"{where}.sha256: 64 hexadecimal digits")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise CatalogError(f"{where}.size: the file's size in bytes")
    description = entry.get("description")
    description = description if isinstance(description, str) else f"from {url}"
    source = ModelSource(kind, sha.lower(), size, url=url)
    return ModelSpec(name, description[:200], str(entry.get("license", "")), (source,))
