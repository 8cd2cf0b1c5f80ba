"""Frigate's ``<prefix>/events`` messages, and which tracked objects the bridge forwards.

    message = parse_event(payload)        # FrigateEvent(type, before, after); BadEvent with the reason
    rules = Rules.from_settings(settings)
    rule = rules.accepts(message.after)   # CameraRule (moments, frame interval) or None: not forwarded

Frigate publishes ``new`` once a tracked object is no longer a possible false positive, ``update``
when it finds a better snapshot or the object changes zones, and ``end`` when the object is gone
(``end_time`` set). Only the fields the bridge uses are read; Frigate may add others. Ids and camera
names go into Frigate API paths, so they are held to Frigate's own forms.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.settings import Settings

log = logging.getLogger(__name__)

# Frigate ids are "<frame time>-<6 random characters>"; events made through its API look the same.
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_CAMERA = re.compile(r"[A-Za-z0-9_-]{1,100}")  # Frigate accepts no other camera names


class BadEvent(ValueError):
    """A message on the events topic that is not a Frigate event the bridge can use."""


class TrackedObject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    camera: str
    label: str = Field(min_length=1, max_length=64)
    start_time: float = Field(gt=0)
    end_time: float | None = None
    false_positive: bool = False
    has_snapshot: bool = False
    sub_label: Any = None  # a name or [name, score], set by face recognition, a user or this bridge
    current_zones: list[str] = Field(default_factory=list)
    entered_zones: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _EVENT_ID.fullmatch(value) or ".." in value:
            raise ValueError("not a Frigate event id")
        return value

    @field_validator("camera")
    @classmethod
    def _check_camera(cls, value: str) -> str:
        if not _CAMERA.fullmatch(value):
            raise ValueError("not a Frigate camera name (letters, digits, _ and -)")
        return value

    @property
    def sub_label_name(self) -> str | None:
        value = self.sub_label[0] if isinstance(self.sub_label, list | tuple) and self.sub_label else self.sub_label
        return value if isinstance(value, str) and value else None


class FrigateEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["new", "update", "end"]
    before: TrackedObject | None = None
    after: TrackedObject

    @property
    def ended(self) -> bool:
        return self.type == "end" or self.after.end_time is not None


def parse_event(payload: bytes) -> FrigateEvent:
    try:
        return FrigateEvent.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise BadEvent(f"{where}: {first['msg']}") from None


def idempotency_key(frigate_id: str) -> str:
    """The relay's Idempotency-Key for a tracked object: a retry, a restart or a second post is one event."""
    return f"frigate:{frigate_id}"


@dataclass(frozen=True)
class CameraRule:
    labels: frozenset[str] | None
    zones: frozenset[str] | None
    moments: int
    frame_interval_s: float


def _set(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


@dataclass(frozen=True)
class Rules:
    """Cameras, labels and zones to forward; ``overrides`` replace the defaults for one camera."""

    cameras: frozenset[str] | None
    default: CameraRule
    overrides: dict[str, CameraRule]
    disabled: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        default = CameraRule(
            _set(settings.frigate_labels),
            _set(settings.frigate_zones),
            settings.frigate_moments,
            settings.frigate_frame_interval_s,
        )
        overrides, disabled = {}, set()
        for camera, o in settings.frigate_camera_overrides.items():
            if not o.enabled:
                disabled.add(camera)
            overrides[camera] = CameraRule(
                _set(o.labels) if o.labels is not None else default.labels,
                _set(o.zones) if o.zones is not None else default.zones,
                o.moments or default.moments,
                o.frame_interval_s or default.frame_interval_s,
            )
        cameras = _set(settings.frigate_cameras)
        if cameras is not None:
            for camera in set(overrides) - cameras:
                log.warning("frigate_camera_overrides names %s, which frigate_cameras does not list: ignored", camera)
        return cls(cameras, default, overrides, frozenset(disabled))

    def rule(self, camera: str) -> CameraRule | None:
        if camera in self.disabled or (self.cameras is not None and camera not in self.cameras):
            return None
        return self.overrides.get(camera, self.default)

    def accepts(self, obj: TrackedObject) -> CameraRule | None:
        rule = self.rule(obj.camera)
        if rule is None or obj.false_positive:
            return None
        if rule.labels is not None and obj.label not in rule.labels:
            return None
        if rule.zones is not None and not rule.zones.intersection(obj.entered_zones):
            return None
        return rule
