"""The moments of one tracked object: frames of its camera while it lasts, then Frigate's snapshot of it.

    collector = Collector(api, obj, rule, max_event_s=60)
    task = asyncio.create_task(collector.run())   # -> Collected(obj, images, errors)
    collector.update(message)                     # later MQTT messages; ``end`` stops the frames
    collector.stop()                              # Ctrl-C: no more frames, snapshot without retries
    collector.taken()                             # what it holds so far, when it must be kept at once

Frames come from ``/api/<camera>/latest.jpg`` every ``rule.frame_interval_s`` until the object ends,
``rule.moments - 1`` frames are taken, or ``max_event_s`` has passed. The snapshot
(``/api/events/<id>/snapshot.jpg``, Frigate's best picture of the object) goes first. A frame Frigate
fails to give is a per-moment error and the next tick takes its place; a snapshot it fails to give is
asked for again twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from core.integrations.frigate_api import FrigateApi, FrigateError
from core.integrations.frigate_events import CameraRule, FrigateEvent, TrackedObject

log = logging.getLogger(__name__)

SNAPSHOT_RETRIES_S = (0.5, 1.5)


@dataclass
class Collected:
    obj: TrackedObject
    images: list[bytes]
    errors: list[str] = field(default_factory=list)


class Collector:
    def __init__(self, api: FrigateApi, obj: TrackedObject, rule: CameraRule, max_event_s: float) -> None:
        self.api, self.obj, self.rule, self.max_event_s = api, obj, rule, max_event_s
        self.frames: list[bytes] = []
        self.snapshot: bytes | None = None
        self.errors: list[str] = []
        self._ended = asyncio.Event()
        self._stopping = False

    def update(self, message: FrigateEvent) -> None:
        self.obj = message.after
        if message.ended:
            self._ended.set()

    def stop(self) -> None:
        self._stopping = True
        self._ended.set()

    def taken(self) -> Collected:
        images = ([self.snapshot] if self.snapshot else []) + self.frames
        return Collected(self.obj, images, list(self.errors))

    def _error(self, what: str, exc: FrigateError) -> None:
        self.errors.append(f"{what}: {exc}")
        log.warning("Frigate event %s: %s: %s", self.obj.id, what, exc)

    async def run(self) -> Collected:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.max_event_s
        wanted = self.rule.moments - 1  # one moment is the snapshot
        tick = 0
        while len(self.frames) < wanted and not self._ended.is_set() and loop.time() < deadline:
            tick += 1
            at = loop.time()
            try:
                self.frames.append(await self.api.latest(self.obj.camera))
            except FrigateError as exc:
                self._error(f"frame {tick} (+{at - started:.1f} s)", exc)
            pause = min(at + self.rule.frame_interval_s, deadline) - loop.time()
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), pause)
        await self._take_snapshot()
        return self.taken()

    async def _take_snapshot(self) -> None:
        waits = () if self._stopping else SNAPSHOT_RETRIES_S
        for attempt in range(len(waits) + 1):
            try:
                self.snapshot = await self.api.snapshot(self.obj.id)
                return
            except FrigateError as exc:
                if attempt == len(waits):
                    self._error("snapshot", exc)
                    return
                await asyncio.sleep(waits[attempt])
