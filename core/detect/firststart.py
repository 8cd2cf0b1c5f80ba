"""The model on a headless worker's first start: present, or downloaded (and converted) into the model folder.

    path = ensure_model(settings)      # the .onnx to run; raises DetectorError / DownloadError saying why

A known model is fetched from its pinned source (or ``model_mirror``), size and SHA-256 checked, into
``model_dir`` (a volume in the container, never the image). A source that publishes only ``.pt`` weights
is converted to ONNX by :func:`convert_pt`, the one place the conversion is called from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.detect.base import DetectorError, ModelNotFound
from core.detect.download import Progress
from core.detect.registry import KNOWN, ModelRegistry, ModelSpec, looks_like_path

log = logging.getLogger(__name__)


def convert_pt(pt: Path, model_dir: Path, name: str) -> Path:
    """``model_dir/NAME.onnx`` from downloaded ``.pt`` weights, with what this install has for it."""
    from core.detect.export import export_onnx

    try:
        return export_onnx(pt, model_dir, name=name)
    except DetectorError as exc:
        raise DetectorError(
            f"{name} comes as .pt weights ({pt}) and this install cannot convert them: {exc}. "
            f"Convert it elsewhere (insane model export {pt.name}) and put {name}.onnx in {model_dir}, "
            "or choose a model published as ONNX (insane model list)"
        ) from exc


def ensure_model(
    settings: Any,
    progress: Progress | None = None,
    convert: Callable[[Path, Path, str], Path] = convert_pt,
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
    fetched = registry.download(name, progress=progress, client=client)
    if fetched.suffix == ".pt":
        fetched = convert(fetched, Path(settings.model_dir), name)
    path = registry.resolve(name)  # verified as any cached model is from here on
    log.info("model %s ready: %s", name, path)
    return path
