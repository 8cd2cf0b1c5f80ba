"""What every detector backend is: its config base, the prepared-image type, and the registry by type key.

A backend subclasses :class:`Detector`, names its config class (a :class:`BackendConfig` subclass with a
``type: Literal["key"]`` field) and registers with ``@backend``; :func:`core.detect.load_detector` then
builds it from a config without ever naming it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.protocol import Detection


class DetectorError(Exception):
    """The detector cannot be built or run. ``str()`` is a message fit to show the user."""


class ModelNotFound(DetectorError):
    """No model file for the configured name or path."""


class BackendConfig(BaseModel):
    """Settings shared by every backend; a backend adds its own fields and a ``type`` literal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    path: str = Field(description="the model file (a path; names are resolved by the registry beforehand)")
    name: str | None = Field(None, description="a display name; default: the file's stem")
    conf: float = Field(0.25, ge=0, le=1, description="minimum confidence")
    iou: float = Field(0.7, ge=0, le=1, description="IoU above which NMS drops the weaker box of a class")
    max_det: int = Field(300, ge=1, le=30000)
    classes: tuple[str, ...] | None = Field(None, description="only these class names (None: all)")
    class_conf: dict[str, float] = Field(default_factory=dict, description="per-class minimum confidence")
    imgsz: int | tuple[int, int] | None = Field(
        None,
        description="the long side of each frame's input (default: the model's own); a pair (h, w): one fixed input",
    )
    rect: bool | None = Field(
        None,
        description="None: each frame letterboxed to its own aspect, as Ultralytics' predict; True: every frame "
        "into one rect_aspect input (640 → 384×640); False: every frame into a square",
    )
    rect_aspect: float = Field(16 / 9, gt=1, le=4, description="width/height of the frames rect is made for")
    max_pixels: int = Field(50_000_000, ge=1, description="refuse images with more pixels than this")
    reduced_decode: bool = Field(True, description="decode large JPEGs at 1/2, 1/4 or 1/8 size when enough")
    decoder: Literal["auto", "opencv", "simplejpeg", "pillow"] = Field(
        "auto", description="the image decoder (core/detect/decode.py); auto: the fastest installed"
    )

    @field_validator("class_conf")
    @classmethod
    def _check_class_conf(cls, value: dict[str, float]) -> dict[str, float]:
        for name, threshold in value.items():
            if not 0 <= threshold <= 1:
                raise ValueError(f"class_conf[{name!r}]={threshold} is not between 0 and 1")
        return value


@dataclass(slots=True)
class Prepared:
    """One image, decoded and letterboxed, ready to join a batch.

    ``tensor`` is the letterboxed image, uint8 RGB ``(3, h, w)`` in the input shape chosen for it (frames
    of different aspects get different shapes; a backend batches them by shape and scales them to its own
    dtype); ``gain``/``pad`` map the model's pixels back to the original image's.
    """

    tensor: np.ndarray
    width: int  # original image, after EXIF orientation
    height: int
    gain: tuple[float, float]  # model pixels per original pixel (x, y)
    pad: tuple[float, float]  # letterbox padding in model pixels (x, y)
    decode_scale: int = 1  # 1, 2, 4 or 8: how much the JPEG decoder reduced the image


_BACKENDS: dict[str, type[Detector]] = {}


def backend(cls: type[Detector]) -> type[Detector]:
    """Class decorator: register a backend under its config's ``type`` literal."""
    key = cls.config_class.model_fields["type"].default
    if not isinstance(key, str) or key in _BACKENDS:
        raise TypeError(f"backend {cls.__name__}: type key {key!r} is missing or already registered")
    _BACKENDS[key] = cls
    return cls


def backends() -> dict[str, type[Detector]]:
    return dict(_BACKENDS)


class Detector(abc.ABC):
    """A loaded model. ``prepare`` is thread-safe; ``detect`` is called from one inference thread."""

    config_class: ClassVar[type[BackendConfig]]

    model_name: str
    labels: list[str]
    input_size: tuple[int, int]  # (h, w): the fixed input, or the box each frame's own input fits in
    max_batch: int | None  # None: any batch size
    provider_note: str = ""  # a line saying which provider runs and why, where the backend has one

    @abc.abstractmethod
    def __init__(self, config: BackendConfig) -> None:
        """Load the model; ``config`` is an instance of the backend's own ``config_class``."""

    @property
    @abc.abstractmethod
    def provider(self) -> str: ...

    @abc.abstractmethod
    def available_providers(self) -> list[str]: ...

    @abc.abstractmethod
    def set_provider(self, name: str) -> None:
        """Switch the execution provider; takes effect at the next batch."""

    @abc.abstractmethod
    def prepare(self, data: bytes) -> Prepared: ...

    @abc.abstractmethod
    def detect(self, batch: list[Prepared]) -> list[list[Detection]]: ...

    def close(self) -> None:  # noqa: B027  # optional for backends holding nothing
        """Release the model; the detector cannot be used afterwards."""

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@runtime_checkable
class RawModel(Protocol):
    """A detector that also runs its bare model on a ready input batch, without decode or NMS (the ONNX
    backend does; Ultralytics' does not): what batch tuning and the raw throughput figures time.

        if isinstance(det, RawModel):
            det.run(np.zeros((4, 3, *det.input_size), det.dtype))
    """

    input_size: tuple[int, int]
    dtype: np.dtype

    def run(self, tensor: np.ndarray) -> np.ndarray: ...
