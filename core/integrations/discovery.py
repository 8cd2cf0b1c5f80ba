"""Verdict topics and Home Assistant MQTT discovery configs.

    topics = Topics(prefix="insane", discovery="homeassistant")
    topics.verdict("front_door")            # insane/front_door/verdict     (JSON, retained)
    topics.label("front_door", "person")    # insane/front_door/person      (ON / OFF, retained)
    topics.availability                     # insane/status                 (online / offline, Last Will)
    topic, config = topics.binary_sensor("front_door", "person")   # homeassistant/binary_sensor/insane/...

Home Assistant's conventions: one device per camera (``identifiers``), a ``unique_id`` per entity, an
``availability`` topic fed by the Last Will, an ``origin``; configs are retained so Home Assistant finds
them after it restarts. Camera and label names become topic levels and ids through :func:`slug`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    VERSION = version("insane-ai-security")
except PackageNotFoundError:  # a source checkout that was never installed
    VERSION = "0+unknown"
ORIGIN = {"name": "Insane AI Security", "sw": VERSION}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def slug(name: str) -> str:
    """A topic level and id part: letters, digits, ``_`` and ``-``; a changed name gets a short hash so
    that ``front door`` and ``front_door`` stay apart."""
    clean = _UNSAFE.sub("_", name)[:64] or "_"
    if clean == name:
        return clean
    return f"{clean}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class Topics:
    prefix: str = "insane"
    discovery: str = "homeassistant"

    @property
    def availability(self) -> str:
        return f"{self.prefix}/status"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth message: ``online`` when it (re)starts; discovery is sent again then."""
        return f"{self.discovery}/status"

    def verdict(self, camera: str) -> str:
        return f"{self.prefix}/{slug(camera)}/verdict"

    def label(self, camera: str, label: str) -> str:
        return f"{self.prefix}/{slug(camera)}/{slug(label)}"

    def _device(self, camera: str) -> dict[str, Any]:
        return {
            "identifiers": [f"{self.prefix}_{slug(camera)}"],
            "name": camera,
            "manufacturer": "Insane AI Security",
            "model": "AI review of camera events",
            "sw_version": VERSION,
        }

    def _common(self, camera: str) -> dict[str, Any]:
        return {
            "availability": [{"topic": self.availability}],
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": self._device(camera),
            "origin": ORIGIN,
            "qos": 1,
        }

    def binary_sensor(self, camera: str, label: str) -> tuple[str, dict[str, Any]]:
        object_id = f"{slug(camera)}_{slug(label)}"
        config = {
            "name": label,
            "unique_id": f"{self.prefix}_{object_id}",
            "state_topic": self.label(camera, label),
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "occupancy",
            **self._common(camera),
        }
        return f"{self.discovery}/binary_sensor/{self.prefix}/{object_id}/config", config

    def verdict_sensor(self, camera: str) -> tuple[str, dict[str, Any]]:
        object_id = f"{slug(camera)}_verdict"
        config = {
            "name": "last verdict",
            "unique_id": f"{self.prefix}_{object_id}",
            "state_topic": self.verdict(camera),
            "value_template": "{{ value_json.summary }}",
            "json_attributes_topic": self.verdict(camera),
            "icon": "mdi:shield-search",
            **self._common(camera),
        }
        return f"{self.discovery}/sensor/{self.prefix}/{object_id}/config", config
