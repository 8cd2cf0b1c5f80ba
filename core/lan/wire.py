"""The DeepStack / CodeProject.AI detection API's wire format, shared by the relay and the worker's LAN API.

    min_conf = parse_min_confidence(form.get("min_confidence"))     # WireError(400) when not 0..1
    preds = predictions(detections, min_conf, limit=20, width=w, height=h)
    body = detection_body(preds, inference_ms=41, process_ms=52, round_trip_ms=60, model="yolov8n", ...)
    status, content = 200, encode(body)                              # bytes: always sent with Content-Length

What the servers those clients were written for answer, kept exactly:
- ``predictions``: ``{label, confidence, x_min, y_min, x_max, y_max}``, integer pixel boxes in the original
  image (truncated like DeepStack's ``int(x)``, within ``0..width`` and ``0..height``), confidence descending,
  none below ``min_confidence`` (default 0.4, sent as a string);
- at most 20 predictions unless the client asks for more (``max_predictions``): Frigate's ``deepstack``
  detector writes them into a 20-row array and fails at the 21st;
- CodeProject.AI's fields: ``message``, ``count``, ``inferenceMs``, ``processMs``, ``analysisRoundTripMs``,
  ``moduleId``, ``processedBy``, ``timestampUTC``, ``code: 200``;
- errors: ``{"success": false, "error": "..."}`` with DeepStack's status codes (400 no image or a bad
  ``min_confidence``, 401 a wrong key).

No Starlette here: :mod:`core.lan.form` reads the request, this module only shapes the answer.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any, Protocol

from pydantic import BaseModel, Field

DEFAULT_MIN_CONFIDENCE = 0.4
DEFAULT_MAX_PREDICTIONS = 20
MAX_PREDICTIONS_LIMIT = 1000
MODULE_ID = "InsaneAISecurity"
NO_IMAGE = "No valid image file found"
BAD_CONFIDENCE = "Invalid value for min_confidence"
CONFIDENCE_OVER_1 = "min_confidence cannot be greater than 1"
WRONG_KEY = "Incorrect api key"


class WireError(Exception):
    """An answer other than 200, in the API's own error form. ``str()`` is the ``error`` text."""

    def __init__(self, status: int, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.retry_after = status, error, retry_after

    def body(self) -> dict[str, Any]:
        return error_body(self.error, self.status)

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class Prediction(BaseModel):
    label: str
    confidence: float = Field(ge=0, le=1)
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class DetectionResponse(BaseModel):
    """A 200 answer of ``/v1/vision/detection`` and ``/v1/vision/custom/{model}``."""

    success: bool = True
    message: str = Field(description="'Found person, car...' or 'No objects found'")
    count: int
    predictions: list[Prediction]
    inferenceMs: int  # the wire names (camelCase) are the API's, not ours
    processMs: int
    analysisRoundTripMs: int
    moduleId: str = MODULE_ID
    moduleName: str
    command: str
    requestId: str
    inferenceDevice: str
    processedBy: str
    timestampUTC: str
    code: int = 200


class ErrorResponse(BaseModel):
    success: bool = False
    error: str
    code: int


class ModelList(BaseModel):
    """``/v1/vision/custom/list``: the model names ``/v1/vision/custom/{model}`` accepts."""

    success: bool = True
    models: list[str]
    moduleId: str = MODULE_ID
    code: int = 200


class DetectionLike(Protocol):
    """What a wire prediction reads of a detection (read-only, as core.protocol.Detection is frozen)."""

    @property
    def label(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    @property
    def box(self) -> tuple[float, float, float, float]: ...


def parse_min_confidence(raw: str | None) -> float:
    """DeepStack's rule: absent or empty is 0.4; not a number is 400; above 1 is 400 (below 0: 400 too)."""
    if raw is None or raw.strip() == "":
        return DEFAULT_MIN_CONFIDENCE
    try:
        value = float(raw.strip())
    except ValueError:
        raise WireError(400, BAD_CONFIDENCE) from None
    if not math.isfinite(value) or value < 0:
        raise WireError(400, BAD_CONFIDENCE)
    if value > 1:
        raise WireError(400, CONFIDENCE_OVER_1)
    return value


def parse_max_predictions(raw: str | None) -> int:
    """How many predictions the client takes at most: 20 unless it asks for more (1 to 1000)."""
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_PREDICTIONS
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PREDICTIONS_LIMIT:
        raise WireError(400, f"max_predictions: a whole number from 1 to {MAX_PREDICTIONS_LIMIT}")
    return int(text)


def _pixel(value: float, limit: int) -> int:
    # DeepStack and CodeProject.AI truncate with int(); a box never leaves the image.
    return min(max(int(value), 0), limit)


def predictions(
    detections: Iterable[DetectionLike], min_confidence: float, limit: int, width: int, height: int
) -> list[Prediction]:
    """The wire predictions: at least ``min_confidence``, most confident first, at most ``limit``."""
    kept = sorted((d for d in detections if d.confidence >= min_confidence), key=lambda d: -d.confidence)
    return [
        Prediction(
            label=d.label,
            confidence=float(d.confidence),
            x_min=_pixel(d.box[0], width),
            y_min=_pixel(d.box[1], height),
            x_max=_pixel(d.box[2], width),
            y_max=_pixel(d.box[3], height),
        )
        for d in kept[:limit]
    ]


def message(preds: list[Prediction]) -> str:
    """CodeProject.AI's summary: the first three labels, then '...'."""
    if not preds:
        return "No objects found"
    labels = ", ".join(p.label for p in preds[:3])
    return f"Found {labels}..." if len(preds) > 3 else f"Found {labels}"


def device(provider: str) -> str:
    """CodeProject.AI's ``inferenceDevice`` for an onnxruntime provider name."""
    name = provider.removesuffix("ExecutionProvider")
    return "CPU" if name in ("", "CPU") else "GPU"


def detection_body(
    preds: list[Prediction],
    *,
    inference_ms: float,
    process_ms: float,
    round_trip_ms: float,
    model: str,
    provider: str,
    command: str,
    request_id: str,
    processed_by: str | None = None,
) -> DetectionResponse:
    return DetectionResponse(
        message=message(preds),
        count=len(preds),
        predictions=preds,
        inferenceMs=round(inference_ms),
        processMs=round(process_ms),
        analysisRoundTripMs=round(round_trip_ms),
        moduleName=f"Insane AI Security ({model})" if model else "Insane AI Security",
        command=command,
        requestId=request_id,
        inferenceDevice=device(provider),
        processedBy=processed_by or socket.gethostname(),
        timestampUTC=formatdate(usegmt=True),
    )


def error_body(error: str, status: int) -> dict[str, Any]:
    return ErrorResponse(error=error, code=status).model_dump()


def encode(body: BaseModel | dict[str, Any]) -> bytes:
    """The JSON bytes of an answer (compact, UTF-8); the server sends them with a Content-Length."""
    data = body.model_dump() if isinstance(body, BaseModel) else body
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
