"""What the bridge tests feed the bridge: Frigate's ``frigate/events`` messages, snapshots, bridge settings.

obj = tracked(frigate_id(), camera="front_door", label="person")
await publish(broker, "frigate/events", frigate_message("new", obj))
settings = bridge_settings(tmp_path, broker, relay.url, tenant.secret)
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.settings import load_settings
from tests.core.integrations.mosquitto import Mosquitto


def tracked(
    event_id: str,
    camera: str = "front_door",
    label: str = "person",
    start: float | None = None,
    end: float | None = None,
    zones: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One tracked object as Frigate's documentation shows it in ``before`` and ``after``."""
    start = start or time.time()
    obj = {
        "id": event_id,
        "camera": camera,
        "frame_time": start + 1.2,
        "snapshot": {
            "frame_time": start + 1.0,
            "box": [415, 489, 528, 700],
            "area": 12728,
            "region": [260, 446, 660, 846],
            "score": 0.77546,
            "attributes": [],
        },
        "label": label,
        "sub_label": None,
        "top_score": 0.958984375,
        "false_positive": False,
        "start_time": start,
        "end_time": end,
        "score": 0.7890625,
        "box": [424, 500, 536, 712],
        "area": 23744,
        "ratio": 2.113207,
        "region": [264, 450, 667, 853],
        "current_zones": zones or [],
        "entered_zones": zones or [],
        "thumbnail": None,
        "has_snapshot": True,
        "has_clip": True,
        "active": True,
        "stationary": False,
        "motionless_count": 0,
        "position_changes": 2,
        "attributes": {},
        "current_attributes": [],
    }
    obj.update(extra)
    return obj


def frigate_message(kind: str, after: dict[str, Any], before: dict[str, Any] | None = None) -> bytes:
    """A ``frigate/events`` message: ``new``, ``update`` or ``end`` with ``before`` and ``after``."""
    if kind == "end" and after.get("end_time") is None:
        after = {**after, "end_time": time.time(), "active": False}
    return json.dumps({"type": kind, "before": before or after, "after": after}).encode()


def frigate_id(start: float | None = None) -> str:
    """An id in Frigate's form: ``<frame time>-<6 random letters and digits>``."""
    return f"{start or time.time():.6f}-{uuid.uuid4().hex[:6]}"


def jpeg(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    """A small real JPEG (noise, so that no two are alike)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return data.tobytes()


def bridge_settings(folder: Path, broker: Mosquitto, relay_url: str, api_key: str, **overrides: Any):
    values: dict[str, Any] = dict(
        relay_url=relay_url,
        api_key=api_key,
        mqtt_url=broker.url,
        mqtt_client_id=f"test-{uuid.uuid4().hex[:8]}",
        bridge_state_dir=folder,
        frigate_frame_interval_s=0.05,
        mqtt_off_delay_s=2.0,
    )
    values.update(overrides)
    return load_settings(**values)
