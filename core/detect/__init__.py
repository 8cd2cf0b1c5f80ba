"""The detector engine: YOLOv8 models behind backends picked by a ``type`` key.

    from core.detect import load_detector, detector_config_from_settings
    det = load_detector(detector_config_from_settings(settings))
    prepared = [det.prepare(jpeg) for jpeg in images]      # thread-safe, from a pool
    detections = det.detect(prepared)                       # one batch, from one inference thread
    det.close()

A backend registers itself with :func:`core.detect.base.backend`; :data:`DetectorConfig` is the union
of the registered configs, discriminated by ``type``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, TypeAdapter

from core.detect import onnx_backend, ultralytics_backend  # noqa: F401  # registers the backends
from core.detect.base import (
    BackendConfig,
    Detector,
    DetectorError,
    ModelNotFound,
    Prepared,
    backends,
)
from core.detect.onnx_backend import OnnxConfig
from core.detect.registry import ModelRegistry
from core.detect.ultralytics_backend import UltralyticsConfig

if TYPE_CHECKING:
    DetectorConfig = BackendConfig  # what every member of the union below is
else:
    DetectorConfig = Annotated[
        Union[tuple(cls.config_class for cls in backends().values())],  # noqa: UP007  # built at run time
        Field(discriminator="type"),
    ]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(DetectorConfig)

__all__ = [
    "BackendConfig",
    "Detector",
    "DetectorConfig",
    "DetectorError",
    "ModelNotFound",
    "OnnxConfig",
    "Prepared",
    "UltralyticsConfig",
    "detector_config_from_settings",
    "load_detector",
    "parse_detector_config",
]


def parse_detector_config(data: dict[str, Any]) -> BackendConfig:
    """A backend config from plain data, e.g. ``{"type": "onnx", "path": "m.onnx", "conf": 0.4}``."""
    return _ADAPTER.validate_python(data)


def load_detector(config: BackendConfig | dict[str, Any]) -> Detector:
    if isinstance(config, dict):
        config = parse_detector_config(config)
    for cls in backends().values():
        if isinstance(config, cls.config_class):
            return cls(config)
    raise DetectorError(f"no backend registered for config type {type(config).__name__}")


def _gpu_options(settings: Any) -> dict[str, Any]:
    """The onnx backend's GPU knobs from the settings: precision, engine cache, TensorRT's largest batch."""
    from core.settings import default_model_dir

    # Default: "engines" beside the model cache, so a desktop's TensorRT engines survive a restart too.
    cache = getattr(settings, "gpu_cache_dir", None) or default_model_dir().parent / "engines"
    return {
        "precision": getattr(settings, "detect_precision", "auto"),
        "cache_dir": str(cache),
        "profile_batch": max(getattr(settings, "worker_gpu_batch_max", 0), getattr(settings, "worker_batch_size", 1)),
    }


def detector_config_from_settings(settings: Any, **overrides: Any) -> BackendConfig:
    """The detector config for ``settings.model`` (a registry name or a path); ``.pt`` picks ultralytics."""
    registry = ModelRegistry.from_settings(settings)
    model = str(overrides.pop("model", None) or settings.model)
    kind = "pt" if model.endswith(".pt") else "onnx"
    path = registry.resolve(model, kind)
    data: dict[str, Any] = {"path": str(path), "name": path.stem if "/" in model or "\\" in model else model}
    if kind == "pt":
        data["type"] = "ultralytics"
    else:
        data.update(type="onnx", threads=settings.worker_threads, use_gpu=settings.use_gpu)
        data.update(_gpu_options(settings))
    for field in ("conf", "iou", "classes", "imgsz", "rect"):
        value = getattr(settings, f"detect_{field}", None)
        if value is not None:
            data[field] = value
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_detector_config(data)
