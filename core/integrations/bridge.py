"""``insane bridge frigate``: a second opinion on every object Frigate tracks, written back to Frigate.

    bridge = FrigateBridge(settings)       # INSANE_API_KEY, INSANE_RELAY_URL, INSANE_FRIGATE_*, INSANE_MQTT_*
    await bridge.run(stop, hurry)          # until ``stop``; ``hurry`` (a second Ctrl-C) cuts the grace short

    <prefix>/events ─▶ Rules ─▶ Collector (snapshot + latest.jpg frames) ─▶ Spool (disk) ─▶ POST /v1/events
        (Idempotency-Key frigate:<id>) ─▶ result stream ─▶ sub-label on Frigate + verdict on MQTT

Every event goes through the on-disk spool, so a relay outage or a crash loses nothing that was
collected; the key makes a second post of the same object a no-op on the relay. Results come from the
relay's result stream, resumed from its saved cursor; a slow check of the events still waiting covers
results the stream missed and failed reviews. On stop, collection ends at once (each object keeps
the moments already taken and gets its snapshot), the queue is posted for up to ``STOP_GRACE_S``, and
what is left stays on disk for the next start. State lives in ``<INSANE_BRIDGE_STATE_DIR>/frigate``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import httpx

from core.backoff import Backoff
from core.integrations.collector import Collector
from core.integrations.discovery import Topics
from core.integrations.frigate_api import FrigateApi, FrigateError
from core.integrations.frigate_events import BadEvent, Rules, idempotency_key, parse_event
from core.integrations.mqtt_link import MqttConfig, MqttLink
from core.integrations.relay_api import Accepted, Rejected, RelayApi, RelayError
from core.integrations.results import follow_results
from core.integrations.service import cancel, until_stopped
from core.integrations.spool import Entry, Spool
from core.integrations.statefile import StateFile
from core.integrations.sublabel import SubLabelWriter, sub_label
from core.integrations.verdicts import VerdictPublisher
from core.settings import Settings

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
COLLECT_GRACE_S = 15.0
CHECK_EVERY_S = 15.0  # events posted this long ago without a result are looked up on the relay
NO_PICTURE_GIVE_UP_S = 3600.0  # an object Frigate gave no picture of is asked for its snapshot this long
REMEMBER = 5000


class FrigateBridge:
    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        if settings.api_key is None:
            raise ValueError("set INSANE_API_KEY to the tenant's API key")
        self.settings = settings
        self.api_key = settings.api_key
        self.folder = settings.bridge_state_dir / "frigate"
        self.state = StateFile(self.folder / "state.json")
        self.spool = Spool(self.folder / "spool", settings.bridge_spool_mb * 2**20)
        self.rules = Rules.from_settings(settings)
        self.topics = Topics(settings.mqtt_topic_prefix, settings.mqtt_discovery_prefix)
        self.events_topic = f"{settings.frigate_topic_prefix}/events"
        self.link = MqttLink(
            MqttConfig.from_settings(settings, "bridge", self.topics.availability, persistent=True),
            subscriptions=[self.events_topic, self.topics.ha_status],
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        self.verdicts = VerdictPublisher(
            self.link, self.topics, self.state, settings.mqtt_off_delay_s, settings.mqtt_labels
        )
        self._own_http = http is None
        self.http = http or httpx.AsyncClient()
        password = settings.frigate_password.get_secret_value() if settings.frigate_password else None
        self.frigate = FrigateApi(self.http, settings.frigate_url, settings.frigate_username, password)
        self.relay = RelayApi(self.http, settings.relay_url, self.api_key.get_secret_value())
        self.sub_labels = SubLabelWriter(self.frigate)
        self.seen: OrderedDict[str, None] = OrderedDict.fromkeys(self.state.data.get("seen_frigate", []))
        self.pending: dict[str, dict[str, Any]] = self.state.data.setdefault("pending", {})
        self.frigate_of: dict[str, str] = self.state.data.setdefault("frigate_of", {})
        self.collectors: dict[str, Collector] = {}
        self.named: OrderedDict[str, str] = OrderedDict()  # Frigate id -> the sub-label Frigate last showed
        self.following = asyncio.Event()  # the result stream is open
        self.accepting = True
        self.posted = 0
        self._spooled = asyncio.Event()  # something was queued
        self._empty = asyncio.Event()  # the queue was found empty
        self._tasks: set[asyncio.Task] = set()
        self._bad_logged = 0.0

    # MQTT in ------------------------------------------------------------------------------------
    async def _on_connect(self) -> None:
        await self.verdicts.announce()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.events_topic:
            self._on_frigate(payload)
        elif topic == self.topics.ha_status and payload.strip() == b"online":
            log.info("Home Assistant started: announcing the entities again")
            self._spawn(self.verdicts.announce())

    def _on_frigate(self, payload: bytes) -> None:
        if not self.accepting:
            return
        try:
            message = parse_event(payload)
        except BadEvent as exc:
            if time.monotonic() - self._bad_logged > 60:  # one line a minute for a noisy publisher
                self._bad_logged = time.monotonic()
                log.warning("ignored a message on %s that is not a Frigate event: %s", self.events_topic, exc)
            return
        obj = message.after
        if obj.sub_label_name:
            self.named[obj.id] = obj.sub_label_name  # face recognition, a user, or this bridge named it
            while len(self.named) > REMEMBER:
                self.named.popitem(last=False)
        running = self.collectors.get(obj.id)
        if running is not None:
            running.update(message)
            return
        if obj.id in self.seen:
            return  # already collected (an update after the end, or our own sub-label coming back)
        rule = self.rules.accepts(obj)
        if rule is None:
            return  # may pass later (an update that enters a zone)
        collector = Collector(self.frigate, obj, rule, self.settings.frigate_max_event_s)
        collector.update(message)
        self.collectors[obj.id] = collector
        self._spawn(self._collect(collector), name=f"collect-{obj.id}")
        log.info("Frigate event %s: %s on %s; collecting %d moments", obj.id, obj.label, obj.camera, rule.moments)

    def _spawn(self, coro, name: str | None = None) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Collect and queue ---------------------------------------------------------------------------
    async def _collect(self, collector: Collector) -> None:
        try:
            got = await collector.run()
        except asyncio.CancelledError:
            got = collector.taken()  # a hurried stop: keep what was taken
            self._queue(got.obj, got.images, got.errors)
            raise
        finally:
            self.collectors.pop(collector.obj.id, None)
        self._queue(got.obj, got.images, got.errors)

    def _queue(self, obj, images: list[bytes], errors: list[str]) -> None:
        meta = {
            "camera": obj.camera,
            "time": datetime.fromtimestamp(obj.start_time, UTC).isoformat(),
            "hint": obj.label,
            "label": obj.label,
            "idempotency_key": idempotency_key(obj.id),
            "frigate_id": obj.id,
            "sub_label": obj.sub_label_name,
            "errors": errors,
            "queued_at": time.time(),
        }
        try:
            self.spool.put(meta, images)
        except OSError as exc:  # a full or read-only disk: nothing else can keep it
            log.error("Frigate event %s could not be queued on disk and is lost: %s", obj.id, exc)
            return
        self.seen[obj.id] = None
        while len(self.seen) > REMEMBER:
            self.seen.popitem(last=False)
        self._save()
        self._empty.clear()
        self._spooled.set()
        log.info("Frigate event %s: %d moments queued, %d errors", obj.id, len(images), len(errors))

    def _save(self) -> None:
        self.state.data["seen_frigate"] = list(self.seen)
        self.state.save()

    # Post ---------------------------------------------------------------------------------------
    async def _post_loop(self) -> None:
        backoff = Backoff(1.0, 60.0)
        while True:
            self._spooled.clear()
            entries = self.spool.entries()
            if not entries:
                self._empty.set()
                await self._spooled.wait()
                continue
            entry = entries[0]
            if not entry.meta["images"] and not await self._fill(entry):
                await asyncio.sleep(backoff.next())
                continue
            outcome = await self.relay.post(entry.meta, entry.images())
            if isinstance(outcome, Accepted):
                self._accepted(entry, outcome)
                backoff.reset()
            elif isinstance(outcome, Rejected):
                self.spool.reject(entry, f"the relay refused event {entry.meta['idempotency_key']}: {outcome.reason}")
            else:
                delay = backoff.next(outcome.after_s)
                level = logging.ERROR if outcome.key_refused else logging.WARNING
                log.log(
                    level, "relay: %s; %d events queued, next try in %.1f s", outcome.reason, len(self.spool), delay
                )
                await asyncio.sleep(delay)

    def _accepted(self, entry: Entry, outcome: Accepted) -> None:
        meta = entry.meta
        self.pending[outcome.event_id] = {
            "frigate_id": meta["frigate_id"],
            "label": meta["label"],
            "sub_label": meta.get("sub_label"),
            "errors": meta.get("errors", []),
            "posted_at": time.time(),
        }
        self.frigate_of[outcome.event_id] = meta["frigate_id"]
        while len(self.frigate_of) > REMEMBER:
            self.frigate_of.pop(next(iter(self.frigate_of)))
        self._save()  # before the spool entry goes: a crash in between posts it again, harmlessly
        self.spool.remove(entry)
        if not len(self.spool):
            self._empty.set()
        self.posted += 1
        log.info(
            "Frigate event %s: posted as %s%s",
            meta["frigate_id"],
            outcome.event_id,
            " (the relay had it already)" if outcome.replayed else "",
        )

    async def _fill(self, entry: Entry) -> bool:
        """An object Frigate gave no picture of: ask for its snapshot again, for up to an hour."""
        try:
            snapshot = await self.frigate.snapshot(entry.meta["frigate_id"])
        except FrigateError as exc:
            if time.time() - entry.meta.get("queued_at", 0) > NO_PICTURE_GIVE_UP_S:
                self.spool.reject(entry, f"Frigate gave no picture of event {entry.meta['frigate_id']}: {exc}")
            return False
        self.spool.update(entry, entry.meta, [snapshot])
        return True

    # Results ------------------------------------------------------------------------------------
    async def _follow(self) -> None:
        key = self.api_key.get_secret_value()
        cursor = self.state.data.get("cursor")
        async for result in follow_results(self.http, self.settings.relay_url, key, cursor, self.following):
            if result.event is not None:
                await self._handle(result.event)
            if result.cursor:
                self.state.data["cursor"] = result.cursor
                self.state.save()

    async def _handle(self, event: dict[str, Any]) -> None:
        pend = self.pending.pop(event["id"], None)
        frigate_id = self.frigate_of.get(event["id"])
        extra = {"frigate_event_id": frigate_id} if frigate_id else None
        if pend is not None:
            extra = {**(extra or {}), "moment_errors": pend["errors"]}
        await self.verdicts.publish(event, extra)
        if pend is None:
            return
        self.state.save()
        if event.get("status") != "done":
            log.warning("Frigate event %s: the review failed (%s)", pend["frigate_id"], event.get("error"))
        elif _foreign(name := self.named.get(pend["frigate_id"]) or pend.get("sub_label")):
            log.info("Frigate event %s keeps its sub-label %r", pend["frigate_id"], name)
        else:
            text, score = sub_label(pend["label"], event, self.settings.frigate_label_map)
            self._spawn(self.sub_labels.write(pend["frigate_id"], text, score))

    async def _check_pending(self) -> None:
        """Results the stream did not bring (it was down, or the review failed) are looked up directly."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            now = time.time()
            due = [
                (event_id, p)
                for event_id, p in self.pending.items()
                if now - p["posted_at"] > CHECK_EVERY_S and now - p.get("checked", 0) > CHECK_EVERY_S
            ][:20]
            for event_id, pend in due:
                pend["checked"] = now
                try:
                    view = await self.relay.event(event_id)
                except RelayError as exc:
                    log.debug("could not look up event %s: %s", event_id, exc)
                    break
                if view is None:
                    self.pending.pop(event_id, None)
                    log.warning("the relay no longer has event %s (Frigate %s)", event_id, pend["frigate_id"])
                elif view.get("status") in ("done", "failed") and event_id in self.pending:
                    await self._handle(view)

    # Life ---------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, hurry: asyncio.Event | None = None) -> None:
        hurry = hurry or asyncio.Event()
        if len(self.spool):
            log.info("%d events queued from before; posting them first", len(self.spool))
        link = asyncio.create_task(self.link.run(), name="mqtt")
        workers = [
            asyncio.create_task(self._post_loop(), name="post"),
            asyncio.create_task(self._follow(), name="results"),
            asyncio.create_task(self._check_pending(), name="check"),
            asyncio.create_task(self.verdicts.run_off_timer(), name="off-timer"),
        ]
        try:
            await until_stopped(stop, [link, *workers])
        finally:
            await self._finish(workers, hurry)

    async def _finish(self, workers: list[asyncio.Task], hurry: asyncio.Event) -> None:
        self.accepting = False
        for collector in list(self.collectors.values()):
            collector.stop()
        collecting = [t for t in self._tasks if t.get_name().startswith("collect-")]
        if collecting:
            await _first(asyncio.wait(collecting, timeout=COLLECT_GRACE_S), hurry.wait())
            await cancel(collecting)  # a hurried stop queues what each one took
        if len(self.spool) and not hurry.is_set():
            log.info("posting %d queued events before stopping (Ctrl-C again to stop now)", len(self.spool))
            await _first(self._empty.wait(), hurry.wait(), asyncio.sleep(STOP_GRACE_S))
        await cancel([*workers, *self._tasks])
        await self.link.close()
        if self._own_http:
            await self.http.aclose()
        self._save()
        if len(self.spool):
            log.info("%d events stay queued in %s; they are posted at the next start", len(self.spool), self.folder)


def _foreign(name: str | None) -> bool:
    """A sub-label someone else set (a face, a plate, a user), which the verdict must not replace."""
    return name is not None and name not in ("", "not confirmed") and "✓" not in name


async def _first(*aws) -> None:
    """Wait for the first of several awaitables; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel(tasks)
