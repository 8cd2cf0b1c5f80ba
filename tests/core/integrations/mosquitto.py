"""Debian's mosquitto as a child process on a loopback port, and a plain MQTT subscriber to watch it.

    broker = Mosquitto(tmp_path); broker.start(); broker.url        # mqtt://127.0.0.1:PORT
    async with MqttProbe(broker) as probe: await probe.wait_for("insane/front_door/verdict")
    await publish(broker, "frigate/events", frigate_message("new", obj))

The ``broker`` fixture (conftest.py) starts one per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import aiomqtt

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
