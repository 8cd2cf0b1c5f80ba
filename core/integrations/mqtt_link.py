"""One MQTT connection that comes back after the broker goes away.

    link = MqttLink(MqttConfig.from_settings(settings, "bridge", topics.availability),
                    subscriptions=["frigate/events"], on_message=handle, on_connect=announce)
    task = asyncio.create_task(link.run())
    await link.publish("insane/front_door/verdict", payload, retain=True)   # QoS 1; waits out an outage
    await link.close()          # "offline" on the availability topic, then a clean disconnect

Each connection publishes ``online`` (retained) on the availability topic and leaves ``offline`` as
its Last Will, subscribes with QoS 1, then runs ``on_connect`` (discovery, current states). A lost
connection is retried with backoff, 1 s to 30 s. ``publish`` returns once the broker acknowledged
the message (PUBACK); if the connection drops first, the message is sent again on the next one, so
it may arrive twice, never zero times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiomqtt

from core.backoff import Backoff
from core.settings import Settings

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
MessageHandler = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    client_id: str
    availability_topic: str
    # A persistent session: the broker keeps the subscriptions and queues QoS 1 messages while the
    # client is away for a moment (a restart of the client, not of a broker without persistence).
    persistent: bool = False
    keepalive: int = 30

    @classmethod
    def from_settings(
        cls, settings: Settings, role: str, availability_topic: str, persistent: bool = False
    ) -> MqttConfig:
        parts = urlsplit(settings.mqtt_url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=settings.mqtt_username,
            password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
            client_id=settings.mqtt_client_id or f"insane-{role}-{socket.gethostname()}"[:64],
            availability_topic=availability_topic,
            persistent=persistent,
        )


class LinkClosed(Exception):
    """The link was closed while a message was still waiting for a connection."""


class MqttLink:
    def __init__(
        self,
        config: MqttConfig,
        subscriptions: Sequence[str] = (),
        on_message: MessageHandler | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.on_connect = on_connect
        self.connected = asyncio.Event()
        self.connections = 0  # successful connections so far (tests and logs)
        self._client: aiomqtt.Client | None = None
        self._closing = False
        self._runner: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    def _new_client(self) -> aiomqtt.Client:
        c = self.config
        return aiomqtt.Client(
            c.host,
            c.port,
            username=c.username,
            password=c.password,
            identifier=c.client_id,
            clean_session=not c.persistent,
            keepalive=c.keepalive,
            timeout=PUBLISH_TIMEOUT_S,
            will=aiomqtt.Will(c.availability_topic, "offline", qos=1, retain=True),
            tls_context=ssl.create_default_context() if c.tls else None,
        )

    async def run(self) -> None:
        """Connect, and connect again whenever the connection is lost, until :meth:`close`."""
        self._runner = asyncio.current_task()
        backoff = Backoff(1.0, 30.0)
        where = f"{self.config.host}:{self.config.port}"
        while not self._closing:
            delay = backoff.next()
            try:
                async with self._new_client() as client:
                    await client.publish(self.config.availability_topic, "online", qos=1, retain=True)
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=1)
                    self._client = client
                    self.connections += 1
                    self.connected.set()
                    backoff.reset()
                    log.info("connected to the MQTT broker %s as %s", where, self.config.client_id)
                    if self.on_connect is not None:
                        self._spawn(self.on_connect())
                    async for message in client.messages:
                        await self._deliver(message)
            except aiomqtt.MqttError as exc:
                if self._closing:
                    return
                log.warning("MQTT broker %s: %s; connecting again in %.1f s", where, exc, delay)
            finally:
                self.connected.clear()
                self._client = None
            await asyncio.sleep(delay)

    async def _deliver(self, message: aiomqtt.Message) -> None:
        if self.on_message is None:
            return
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        await self.on_message(message.topic.value, payload)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        """Publish with QoS 1 and return once the broker has it; waits for a connection if there is none."""
        while True:
            if self._closing and not self.connected.is_set():
                raise LinkClosed(f"not published to {topic}: the MQTT link is closed")
            await self.connected.wait()
            client = self._client
            if client is None:
                await asyncio.sleep(0.05)
                continue
            try:
                await client.publish(topic, payload, qos=1, retain=retain, timeout=PUBLISH_TIMEOUT_S)
                return
            except aiomqtt.MqttError as exc:
                log.debug("publish to %s failed (%s); it is sent again once connected", topic, exc)
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        """Say ``offline`` on the availability topic (a clean exit leaves no Last Will) and disconnect."""
        self._closing = True
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.config.availability_topic, "offline", qos=1, retain=True, timeout=2)
        for task in [*self._tasks, *([self._runner] if self._runner else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._runner] if self._runner else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
