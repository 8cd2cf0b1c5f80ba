"""Verdicts out on MQTT: a JSON verdict per camera, ON/OFF per label with an off-delay, HA discovery.

    verdicts = VerdictPublisher(link, topics, state, off_delay_s=30, labels=None)
    await verdicts.announce()                      # on each (re)connect: discovery, last verdicts, states
    await verdicts.publish(event)                  # a result from the relay's stream (summary + k)
    asyncio.create_task(verdicts.run_off_timer())  # OFF once a label's off-delay has passed

A verdict for an event already published is not published again; one with a larger k (a back-fill)
updates the verdict topic but fires no new alarm. A result older than the off-delay (a replay after an
outage) is published as history (``"replayed": true``) and turns nothing ON: old alarms are not
replayed as new ones. What was published, which entities exist and which labels are ON are kept in
the state file, so a restart neither repeats alarms nor forgets entities.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from core.integrations.discovery import Topics
from core.integrations.mqtt_link import MqttLink
from core.integrations.results import Seen
from core.integrations.statefile import StateFile

log = logging.getLogger(__name__)

MIN_FRESH_S = 60.0  # a result done less than this ago is live, whatever the off-delay (clock skew, latency)


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def summarize(event: dict[str, Any]) -> str:
    """The sensor's state: ``person 12/24 (0.91), car 2/24 (0.40)``, at most 255 characters."""
    if event.get("status") == "failed":
        return f"review failed: {event.get('error') or 'no reason given'}"[:255]
    verdict = sorted(event.get("verdict") or [], key=lambda v: -float(v.get("best", 0)))
    if not verdict:
        return "nothing seen"
    k = event.get("k") or event.get("n_moments") or 0
    return ", ".join(f"{v['label']} {v['moments']}/{k} ({float(v['best']):.2f})" for v in verdict)[:255]


def verdict_json(event: dict[str, Any], replayed: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    created, done = _time(event.get("created_at")), _time(event.get("done_at"))
    return {
        "event_id": event["id"],
        "camera": event["camera"],
        "time": event.get("time"),
        "hint": event.get("hint"),
        "status": event.get("status"),
        "labels": [
            {"label": v["label"], "moments": v["moments"], "best": round(v["best"], 3), "median": round(v["median"], 3)}
            for v in event.get("verdict") or []
        ],
        "k": event.get("k"),
        "moments": event.get("n_moments"),
        "latency_s": round((done - created).total_seconds(), 3) if created and done else None,
        "summary": summarize(event),
        "replayed": replayed,
        **(extra or {}),
    }


class VerdictPublisher:
    def __init__(
        self,
        link: MqttLink,
        topics: Topics,
        state: StateFile,
        off_delay_s: float,
        labels: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link, self.topics, self.state = link, topics, state
        self.off_delay_s = off_delay_s
        self.labels = None if labels is None else frozenset(labels)
        self.clock = clock
        self.seen = Seen(state.data.get("published"))
        self.entities: dict[str, list[str]] = state.data.setdefault("entities", {})
        self.last: dict[str, dict[str, Any]] = state.data.setdefault("last_verdict", {})
        self.on_until: dict[str, float] = state.data.setdefault("on_until", {})  # "camera\tlabel" -> epoch
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one announce or publish at a time keeps entities and states coherent

    def _save(self) -> None:
        self.state.data["published"] = self.seen.dump()
        self.state.save()

    async def _announce_camera(self, camera: str) -> None:
        topic, config = self.topics.verdict_sensor(camera)
        await self.link.publish(topic, json.dumps(config), retain=True)

    async def _announce_label(self, camera: str, label: str) -> None:
        topic, config = self.topics.binary_sensor(camera, label)
        await self.link.publish(topic, json.dumps(config), retain=True)

    async def _state(self, camera: str, label: str) -> None:
        on = self.on_until.get(f"{camera}\t{label}", 0) > self.clock()
        await self.link.publish(self.topics.label(camera, label), "ON" if on else "OFF", retain=True)

    async def announce(self) -> None:
        """Everything Home Assistant needs after a restart of it, of the broker or of this process."""
        async with self._lock:
            for camera, labels in list(self.entities.items()):
                await self._announce_camera(camera)
                for label in labels:
                    await self._announce_label(camera, label)
                    await self._state(camera, label)
                if camera in self.last:
                    await self.link.publish(self.topics.verdict(camera), json.dumps(self.last[camera]), retain=True)
        log.info("announced %d cameras to Home Assistant", len(self.entities))

    def wants(self, label: str) -> bool:
        return self.labels is None or label in self.labels

    async def ensure(self, camera: str, labels: Iterable[str] = ()) -> None:
        """Discovery configs for a camera and its labels, the first time they are seen."""
        known = self.entities.get(camera)
        if known is None:
            await self._announce_camera(camera)
            known = self.entities[camera] = []
        for label in labels:
            if self.wants(label) and label not in known:
                await self._announce_label(camera, label)
                known.append(label)
                await self._state(camera, label)

    async def publish(self, event: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
        """Publish one result; returns ``new``, ``update`` or ``repeat`` (nothing published)."""
        status = self.seen.status(event)
        if status == "repeat":
            return status
        camera = event["camera"]
        done = _time(event.get("done_at"))
        now = self.clock()
        fresh = done is not None and now - done.timestamp() <= max(self.off_delay_s, MIN_FRESH_S)
        labels = [v["label"] for v in event.get("verdict") or [] if self.wants(v["label"])]
        async with self._lock:
            await self.ensure(camera, labels)
            payload = verdict_json(event, replayed=not fresh, extra=extra)
            await self.link.publish(self.topics.verdict(camera), json.dumps(payload), retain=True)
            self.last[camera] = payload
            if status == "new" and fresh:
                for label in labels:
                    self.on_until[f"{camera}\t{label}"] = now + self.off_delay_s
                    await self.link.publish(self.topics.label(camera, label), "ON", retain=True)
                self._wake.set()
            self.seen.add(event)
            self._save()
        log.info("verdict for %s on %s: %s%s", event["id"], camera, payload["summary"], "" if fresh else " (history)")
        return status

    async def run_off_timer(self) -> None:
        """Turn each label OFF once its off-delay has passed (also those ON before a restart)."""
        while True:
            now = self.clock()
            due = [key for key, until in self.on_until.items() if until <= now]
            for key in due:
                camera, label = key.split("\t", 1)
                async with self._lock:
                    if self.on_until.get(key, 0) > self.clock():
                        continue  # a new verdict extended it meanwhile
                    await self.link.publish(self.topics.label(camera, label), "OFF", retain=True)
                    self.on_until.pop(key, None)
                    self._save()
            wait = min((until - self.clock() for until in self.on_until.values()), default=3600.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, wait))
