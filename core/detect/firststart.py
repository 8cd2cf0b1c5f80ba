"""The model on a headless worker's first start: present, or downloaded (and converted) into the model folder.

    path = ensure_model(settings)      # the .onnx to run; raises DetectorError / DownloadError saying why

A known model is fetched from its pinned source (or ``model_mirror``), size and SHA-256 checked, into
``model_dir`` (a volume in the container, never the image). A source that publishes only ``.pt`` weights
(YOLOv8n, the default) is converted to ONNX by the registry's torch-free converter (core/detect/onnxbuild).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.detect.base import ModelNotFound
from core.detect.download import Progress
from core.detect.registry import KNOWN, ModelRegistry, ModelSpec, looks_like_path

log = logging.getLogger(__name__)


def ensure_model(
    settings: Any,
    progress: Progress | None = None,
    client: Any = None,
    known: tuple[ModelSpec, ...] = KNOWN,
) -> Path:
    """The model file ``settings.model`` names, fetched (and converted) first when it is a known name not here."""
    registry = ModelRegistry(settings.model_dir, known, mirror=getattr(settings, "model_mirror", None))
    name = str(settings.model)
    try:
        return registry.resolve(name)
    except ModelNotFound:
        if looks_like_path(name) or name not in registry.known:
            raise
    log.info("model %s is not in %s: downloading it", name, settings.model_dir)
    Path(settings.model_dir).mkdir(parents=True, exist_ok=True)
    registry.download(name, progress=progress, client=client)
    path = registry.resolve(name)  # verified as any cached model is from here on
    log.info("model %s ready: %s", name, path)
    return path
