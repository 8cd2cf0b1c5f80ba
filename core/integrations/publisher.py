"""``insane mqtt publish``: the tenant's verdicts, from the relay's result stream out on MQTT.

    publisher = MqttPublisher(settings)      # INSANE_RELAY_URL, INSANE_API_KEY, INSANE_MQTT_* settings
    await publisher.run(stop)                # until ``stop`` is set; then "offline" and a clean exit

The stream's cursor is saved only after a verdict was acknowledged by the broker, so a restart, a
relay outage or a broker outage resumes at the first verdict not yet published, and none is
published as a new alarm twice. State lives in ``<INSANE_BRIDGE_STATE_DIR>/mqtt``.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from core.integrations.discovery import Topics
from core.integrations.mqtt_link import MqttConfig, MqttLink
from core.integrations.results import follow_results
from core.integrations.service import cancel, until_stopped
from core.integrations.statefile import StateFile
from core.integrations.verdicts import VerdictPublisher
from core.settings import Settings

log = logging.getLogger(__name__)


class MqttPublisher:
    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        if settings.api_key is None:
            raise ValueError("set INSANE_API_KEY to the tenant's API key")
        self.settings = settings
        self.api_key = settings.api_key
        self.folder = settings.bridge_state_dir / "mqtt"
        self.state = StateFile(self.folder / "state.json")
        self.topics = Topics(settings.mqtt_topic_prefix, settings.mqtt_discovery_prefix)
        self.link = MqttLink(
            MqttConfig.from_settings(settings, "publish", self.topics.availability),
            subscriptions=[self.topics.ha_status],
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        self.verdicts = VerdictPublisher(
            self.link, self.topics, self.state, settings.mqtt_off_delay_s, settings.mqtt_labels
        )
        self._own_http = http is None
        self.http = http or httpx.AsyncClient()
        self._tasks: list[asyncio.Task] = []
        self.following = asyncio.Event()  # the result stream is open

    async def _on_connect(self) -> None:
        await self.verdicts.announce()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.ha_status and payload.strip() == b"online":
            log.info("Home Assistant started: announcing the entities again")
            self._tasks.append(asyncio.create_task(self.verdicts.announce()))

    async def follow(self) -> None:
        key = self.api_key.get_secret_value()
        cursor = self.state.data.get("cursor")
        async for result in follow_results(self.http, self.settings.relay_url, key, cursor, self.following):
            if result.event is not None:
                await self.verdicts.publish(result.event)
            if result.cursor:
                self.state.data["cursor"] = result.cursor
                self.state.save()

    async def run(self, stop: asyncio.Event, hurry: asyncio.Event | None = None) -> None:
        link = asyncio.create_task(self.link.run(), name="mqtt")
        self._tasks = [
            asyncio.create_task(self.verdicts.run_off_timer(), name="off-timer"),
            asyncio.create_task(self.follow(), name="results"),
        ]
        try:
            await until_stopped(stop, [link, *self._tasks])
        finally:
            await cancel(self._tasks)
            await self.link.close()
            if self._own_http:
                await self.http.aclose()
            self.state.save()
