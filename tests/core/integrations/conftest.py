"""Real parts for the bridge tests: Debian's mosquitto on a loopback port, a Frigate stand-in, a relay.

broker = Mosquitto(tmp_path); broker.start(); broker.url        # mqtt://127.0.0.1:PORT
async with MqttProbe(broker) as probe: await probe.wait_for("insane/front_door/verdict")
await publish(broker, "frigate/events", frigate_message("new", obj))
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import cv2
import numpy as np
import pytest

from core.settings import load_settings
from insane.devkit.client import make_tenant
from insane.devkit.relay import RelayServer
from insane.devkit.services import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: no broker outlives the tests


class Mosquitto:
    """Debian's mosquitto as a child process on a free loopback port; ``restart`` keeps the port."""

    def __init__(self, folder: Path, passwords: dict[str, str] | None = None) -> None:
        if not os.path.exists(MOSQUITTO):
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (./dev.sh setup does)")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"log_dest file {folder / 'mosquitto.log'}"]
        if os.geteuid() == 0:
            lines.append("user root")  # as root it would switch to the mosquitto user, who cannot read tmp_path
        if passwords:
            pwfile = folder / "passwords"
            for user, password in passwords.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", *(["-c"] if not pwfile.exists() else []), str(pwfile), user, password],
                    check=True,
                )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()[-1000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)

    def restart(self, down_s: float = 0.0, sig: int = signal.SIGKILL) -> None:
        self.stop(sig)
        time.sleep(down_s)
        self.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    running = Mosquitto(tmp_path / "mosquitto")
    running.start()
    try:
        yield running
    finally:
        running.stop()


class MqttProbe:
    """A plain subscriber, as Home Assistant is one: every message on ``topics``, retained ones first."""

    def __init__(self, broker: Mosquitto, topics: tuple[str, ...] = ("#",)) -> None:
        self.broker, self.topics = broker, topics
        self.messages: list[tuple[str, bytes, bool]] = []
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> MqttProbe:
        client = aiomqtt.Client("127.0.0.1", self.broker.port, identifier=f"probe-{uuid.uuid4().hex[:8]}")
        await self._stack.enter_async_context(client)
        for topic in self.topics:
            await client.subscribe(topic, qos=1)
        task = asyncio.create_task(self._read(client))
        self._stack.push_async_callback(_cancel, task)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _read(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in client.messages:
                self.messages.append((m.topic.value, bytes(m.payload or b""), bool(m.retain)))

    def last(self, topic: str) -> bytes | None:
        return next((p for t, p, _ in reversed(self.messages) if t == topic), None)

    def all(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == topic]

    async def wait_for(self, topic: str, payload: bytes | None = None, within: float = 30.0, count: int = 1) -> bytes:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            hits = [p for p in self.all(topic) if payload is None or p == payload]
            if len(hits) >= count:
                return hits[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {payload!r} on {topic} within {within} s; got {self.all(topic)[-5:]}")


async def until(predicate, within: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what}")


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def publish(broker: Mosquitto, topic: str, payload: bytes | str, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"frigate-{uuid.uuid4().hex[:8]}") as client:
        await client.publish(topic, payload, qos=1, retain=retain)


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


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"lease_idle_s": 5.0, "max_deliveries": 10, "max_moments": 64}


@pytest.fixture
def tenant(relay: RelayServer):
    return make_tenant(relay.url, tier="pro")


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
