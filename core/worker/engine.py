"""The Worker: runs the whole pipeline until stopped, and tells observers how it is doing.

    worker = Worker(WorkerConfig(), source, detector, preloader_factory)
    task = asyncio.create_task(worker.run())
    ...
    await worker.stop()          # drain=True: finish the events it holds and post their results

The worker owns ``source`` and ``detector`` and closes both when it stops. Relay outages never
raise out of :meth:`run`: the state becomes ERROR with a reason, and every call is retried with
backoff. A result is kept until the relay has stored it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from uuid import UUID

from core.imageinfo import ImageError, probe
from core.protocol import LANES, EventResult, Heartbeat, Lane, LeasedEvent, MomentRef, MomentResult
from core.worker.backoff import Backoff
from core.worker.batcher import Batcher, InferenceError
from core.worker.config import WorkerConfig
from core.worker.jobs import Job
from core.worker.loading import PreloaderFactory, default_preloader_factory, fetch_errors
from core.worker.metrics import WorkerMetrics
from core.worker.pictures import MomentPicture, PicturePolicy, PictureStore
from core.worker.ports import (
    DetectorPort,
    LeaseSource,
    PreloaderPort,
    RelayUnavailable,
    RequestRejected,
    SourceError,
    TokenRejected,
)
from core.worker.poster import Poster
from core.worker.running import Review, Running
from core.worker.state import EventSummary, MetricsSnapshot, WorkerState
from core.worker.throttle import Throttle, spread

log = logging.getLogger(__name__)
SUSPECT_POLL_S = 0.05  # how often a suspect waiting to be reviewed alone looks whether it is alone


class WorkerNotRunning(Exception):
    """The worker is not running (starting, or stopped): it cannot review a single image now."""


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        source: LeaseSource,
        detector: DetectorPort,
        preloader_factory: PreloaderFactory | None = None,
        *,
        dedicated_tenant: UUID | None = None,
    ) -> None:
        """``dedicated_tenant``: the tenant this worker's token is dedicated to, where the caller knows it;
        the relay's heartbeat answers say it too, and they win."""
        self.config = config
        self.source = source
        self.detector = detector
        self._preloader_factory = preloader_factory or default_preloader_factory
        self._metrics = WorkerMetrics(config.metrics_window_s, config.recent_events)
        self._throttle = Throttle(config.k_max, config.k_floor, config.drain_target_s)
        self._queue_depth: dict[Lane, int] = {lane: 0 for lane in LANES}
        self._subscribers: list[Callable[[MetricsSnapshot], None]] = []
        self._errors: dict[str, str] = {}
        self._state = WorkerState.STARTING
        self._paused = False
        self._leased_once = False
        self._started = False  # run() was called (it runs once)
        self._stopping = False
        self._stopped = False
        self._done = asyncio.Event()  # run() has closed everything
        self._drain = True
        self._shrunk: OrderedDict[UUID, Job] = OrderedDict()
        self._recent: deque[bytes] = deque(maxlen=config.recent_moments)
        self._pending_provider: str | None = None  # asked for before the batcher exists
        self._pictures = PictureStore(
            config.pictures_keep,
            config.pictures_max_bytes,
            PicturePolicy(dedicated_tenant, config.pictures_other_tenants),
        )
        # The pipeline (batcher, decode pool, poster, preloader, reviews in flight): built by run().
        self._running: Running | None = None

    # ----- the public face -------------------------------------------------------------------

    @property
    def state(self) -> WorkerState:
        return self._state

    def snapshot(self) -> MetricsSnapshot:
        m = self._metrics
        return MetricsSnapshot(
            at=time.time(),
            state=self._state,
            state_detail=self._detail(),
            images_per_s=m.images.per_s(),
            events_per_s=m.events.per_s(),
            latency_ms=m.latency_ms(),
            queue_depth=dict(self._queue_depth),
            batch_size=self.batch_size,
            k=dict(self._throttle.k),
            provider=str(getattr(self.detector, "provider", "")),
            model=str(getattr(self.detector, "model_name", "")),
            threads=self.config.threads,
            images_total=m.images_total,
            events_total=m.events_total,
            errors_total=m.errors_total,
            recent=tuple(m.recent),
        )

    def subscribe(self, callback: Callable[[MetricsSnapshot], None]) -> Callable[[], None]:
        """Call ``callback(snapshot)`` on the loop thread ~1/s and on every state change."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def pause(self) -> None:
        """Stop leasing; the events already leased are finished and posted."""
        self._paused = True
        self._poke()

    def resume(self) -> None:
        self._paused = False
        self._poke()

    def set_provider(self, name: str) -> None:
        """Switch the execution provider between batches (e.g. the tray's GPU toggle)."""
        if name not in self.available_providers():
            raise ValueError(f"execution provider {name!r} is not available here; try {self.available_providers()}")
        if self._running is not None:
            self._running.batcher.set_provider(name)
        else:
            self._pending_provider = name

    def available_providers(self) -> list[str]:
        return list(self.detector.available_providers())

    def recent_moments(self) -> list[bytes]:
        """JPEG bytes of recent moments the model read, one per event, newest last (INT8 calibration)."""
        return list(self._recent)

    def moment_picture(self, event_id: UUID) -> MomentPicture | None:
        """The best reviewed moment of a recent event, with its detections, for the dashboard; None when
        none is kept: the event is not among the last ``pictures_keep``, no moment of it could be decoded,
        or it is another tenant's and :attr:`picture_policy` does not allow keeping those."""
        return self._pictures.get(event_id)

    @property
    def picture_policy(self) -> PicturePolicy:
        return self._pictures.policy

    def keep_other_tenants_pictures(self, on: bool) -> None:
        """The operator's choice: keep and show other tenants' pictures too (a shared worker's are all
        other tenants'). Turning it off forgets the ones already kept."""
        self._pictures.set_policy(replace(self._pictures.policy, other_tenants=on))

    def held_leases(self) -> list[str]:
        """Leases this worker is reviewing or holds an unstored result for. Every heartbeat renews them,
        so a review slower than the relay's lease deadline is not reclaimed and done twice."""
        held = self._running.held_leases() if self._running is not None else []
        return list(dict.fromkeys(held))[:4096]

    # ----- single images outside any event (the LAN API, core/lan) --------------------------------

    @property
    def batch_size(self) -> int:
        return self._running.batcher.batch_size if self._running is not None else 0

    @property
    def relay_busy(self) -> bool:
        """The worker holds relay work it has not finished reviewing."""
        return self._running is not None and bool(self._running.reviews)

    async def prepare_image(self, data: bytes) -> Any:
        """One image decoded in the worker's decode pool; raises core.imageinfo.ImageError or WorkerNotRunning."""
        if self._running is None or self._stopping or self._stopped:
            raise WorkerNotRunning("the worker is not running")
        return await asyncio.get_running_loop().run_in_executor(self._running.decode, self.detector.prepare, data)

    async def infer_prepared(self, prepared: Any, priority: tuple) -> list:
        """Its detections through the batcher shared with relay work (lower ``priority`` first; relay work is
        ``(0|1|2, ...)``); raises InferenceError, or WorkerNotRunning."""
        if self._running is None or self._stopped:
            raise WorkerNotRunning("the worker is not running")
        return await self._running.batcher.submit(prepared, priority)

    async def stop(self, drain: bool = True) -> None:
        """Stop leasing; with ``drain`` finish and post what is held (bounded by ``stop_timeout_s``),
        otherwise drop it (the relay re-delivers it after its lease deadline). Then close everything."""
        self._drain = drain
        self._stopping = True
        self._poke()
        if self._started:
            await self._done.wait()
        elif not self._stopped:
            await self._close_owned()
            self._stopped = True
            self._set_state()

    # ----- the pipeline ------------------------------------------------------------------------

    async def run(self) -> None:
        if self._started or self._stopped:
            raise RuntimeError("a Worker runs once; build a new one to run again")
        self._started = True
        self._set_state()
        try:
            async with self._preloader_factory(self.source) as preloader:
                run = self._running = self._start_pipeline(preloader)
                loops = [
                    asyncio.create_task(self._lease_loop(run), name="lease"),
                    asyncio.create_task(self._heartbeat_loop(run), name="heartbeat"),
                    asyncio.create_task(self._tick_loop(), name="observe"),
                ]
                run.poster.start()
                try:
                    while not self._stopping:
                        run.wake.clear()
                        await run.wake.wait()
                finally:
                    await self._shutdown(run, loops)
        finally:
            await self._close_owned()
            self._stopped = True
            self._set_state()
            self._done.set()

    def _start_pipeline(self, preloader: PreloaderPort) -> Running:
        batcher = Batcher(
            self.detector,
            self.config.max_batch,
            self.config.batch_wait_s,
            self.config.latency_target_s,
            on_batch=self._on_batch,
            min_batch=self.config.threads,
        )
        if self._pending_provider:
            batcher.set_provider(self._pending_provider)
        batcher.start()
        return Running(
            batcher=batcher,
            decode=concurrent.futures.ThreadPoolExecutor(self.config.decode_threads, "insane-decode"),
            poster=Poster(self.source, self.config, on_posted=self._on_posted, on_error=self._set_error),
            preloader=preloader,
        )

    async def _shutdown(self, run: Running, loops: list[asyncio.Task]) -> None:
        loops[0].cancel()  # the lease loop: a long-poll in flight is abandoned; the relay re-delivers
        await asyncio.wait([loops[0]])
        tasks = [review.task for review in run.reviews.values()]
        if tasks and self._drain:
            _, late = await asyncio.wait(tasks, timeout=self.config.stop_timeout_s)
            for task in late:
                task.cancel()
        else:
            for task in tasks:
                task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await run.poster.close(drain=self._drain, wait_s=self.config.stop_timeout_s)
        for task in loops[1:]:
            task.cancel()
        await asyncio.wait(loops[1:])

    async def _close_owned(self) -> None:
        if self._running is not None:
            await self._running.close()
        await self.source.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.detector.close)

    async def _lease_loop(self, run: Running) -> None:
        backoff = Backoff(self.config.retry_min_s, self.config.retry_max_s)
        # The first heartbeat's answer says whose pictures this worker may keep: ask before taking work.
        await run.introduced.wait()
        while not self._stopping:
            room = self.config.lease_ahead_images - run.inflight_images
            # While a suspect is in hand it is reviewed alone (_review): take nothing more until it is done.
            if self._paused or run.suspects() or (run.reviews and room < min(self._throttle.k.values())):
                run.room.clear()
                await run.room.wait()  # until _poke(): a review ended, pause/resume, stop
                continue
            per_event = max(1.0, min(self._throttle.cost(lane, self._throttle.k[lane]) for lane in LANES))
            want = max(1, min(self.config.lease_events, math.floor(room / per_event)))
            try:
                resp = await self.source.lease(want, self.config.lease_wait_s)
            except (RelayUnavailable, TokenRejected) as exc:
                self._set_error("lease", str(exc))
                await asyncio.sleep(backoff.next(getattr(exc, "retry_after", None)))
                continue
            except RequestRejected as exc:
                self._set_error("lease", str(exc))
                await asyncio.sleep(self.config.retry_max_s)
                continue
            backoff.reset()
            self._leased_once = True
            self._set_error("lease", None)
            self._update_depth(resp.queue_depth)
            for event in resp.events:
                self._start(run, event)
            if not resp.events and not run.reviews and not any(self._queue_depth.values()):
                self._backfill_one(run)
            self._set_state()

    def _start(self, run: Running, event: LeasedEvent) -> None:
        if event.event_id in run.reviews:
            return  # a re-delivery of an event we are still reviewing
        self._throttle.observe_event(event.lane, len(event.moments))
        k = min(self._throttle.k[event.lane], len(event.moments))
        refs = [event.moments[i] for i in spread(len(event.moments), k)]
        self._launch(run, Job(event, refs))

    def _backfill_one(self, run: Running) -> None:
        if not self.config.backfill or not self._shrunk:
            return
        _, job = self._shrunk.popitem(last=False)
        done = {m.index for m in job.earlier}
        refs = [m for m in job.event.moments if m.index not in done]
        log.info("back-filling event %s: %d more moments", job.event.event_id, len(refs))
        self._launch(run, Job(job.event, refs, backfill=True, earlier=job.earlier))

    def _launch(self, run: Running, job: Job) -> None:
        run.preloader.prefetch(job.event, job.refs)
        run.inflight_images += len(job.refs)
        task = asyncio.create_task(self._review(run, job), name=f"event {job.event.event_id}")
        run.reviews[job.event.event_id] = Review(job, task)

    async def _review(self, run: Running, job: Job) -> None:
        try:
            if job.suspect:
                # Delivered before without a result: it may be the image that kills the worker that decodes
                # it. Review it alone, once everything else in hand is reviewed and stored, so that if it
                # does, it takes no other event's delivery with it (those would reach the dead-letter limit
                # beside the poison).
                async with run.alone:
                    # A poll: the poster's queue draining has no event of its own, and this is rare and short.
                    while run.others_in_flight() and not self._stopping:  # noqa: ASYNC110
                        await asyncio.sleep(SUSPECT_POLL_S)
                    moments = list(await asyncio.gather(*(self._moment(run, job, ref) for ref in job.refs)))
            else:
                moments = list(await asyncio.gather(*(self._moment(run, job, ref) for ref in job.refs)))
            if job.backfill and all(m.error is not None for m in moments):
                log.info("back-fill of event %s reviewed nothing more; not posted", job.event.event_id)
                return
            result = job.result(moments, self._metrics_model(), str(self.detector.provider))
            if job.shrunk and self.config.backfill:
                job.earlier = list(result.moments)
                self._remember_shrunk(job)
            run.poster.put(result, job)
        finally:
            run.inflight_images -= len(job.refs)
            run.reviews.pop(job.event.event_id, None)
            run.preloader.forget(job.event.event_id)
            self._set_state()
            self._poke()

    async def _moment(self, run: Running, job: Job, ref: MomentRef) -> MomentResult:
        t0 = time.monotonic()
        try:
            data = await run.preloader.get(job.event, ref)
        except fetch_errors() as exc:
            return self._moment_error(ref, f"fetch: {exc}")
        t1 = time.monotonic()
        job.note("fetch", t1 - t0)
        self._metrics.stage("fetch", t1 - t0)
        try:
            prepared = await asyncio.get_running_loop().run_in_executor(run.decode, self.detector.prepare, data)
            width = getattr(prepared, "width", None)
            height = getattr(prepared, "height", None)
            if width is None or height is None:
                info = probe(data)
                width, height = info.width, info.height
        except ImageError as exc:
            return self._moment_error(ref, f"image: {exc}")
        if not job.backfill and ref is job.refs[len(job.refs) // 2]:
            self._recent.append(data)
        t2 = time.monotonic()
        job.note("decode", t2 - t1)
        self._metrics.stage("decode", t2 - t1)
        try:
            detections = await run.batcher.submit(prepared, (*job.priority, ref.index))
        except InferenceError as exc:
            return self._moment_error(ref, str(exc))
        t3 = time.monotonic()
        job.note("infer", t3 - t2)
        self._metrics.stage("infer", t3 - t2)
        event = job.event
        self._pictures.offer(
            MomentPicture(event.event_id, event.tenant_id, ref.index, bytes(data), width, height, tuple(detections))
        )
        return MomentResult(index=ref.index, detections=detections, width=width, height=height)

    def _moment_error(self, ref: MomentRef, reason: str) -> MomentResult:
        self._metrics.errors_total += 1
        log.warning("moment %d not reviewed: %s", ref.index, reason)
        return MomentResult(index=ref.index, error=reason[:500])

    def _remember_shrunk(self, job: Job) -> None:
        self._shrunk[job.event.event_id] = job
        while len(self._shrunk) > self.config.backfill_keep:
            self._shrunk.popitem(last=False)

    def _on_posted(self, result: EventResult, job: Job, duplicate: bool) -> None:
        if duplicate:
            # Another delivery of this event (ours or a stale worker's) was stored first; not ours to count.
            log.info("event %s already had a result; this review was not stored", result.event_id)
            return
        self._metrics.event_done(
            EventSummary(
                event_id=result.event_id,
                tenant_id=job.event.tenant_id,
                camera=job.event.camera,
                lane=job.event.lane,
                k=result.k,
                verdict=tuple(result.verdict),
                done_at=time.time(),
                latency_s=time.monotonic() - job.leased_at,
                backfill=result.backfill,
            )
        )
        self._set_state()

    def _on_batch(self, n: int, elapsed: float) -> None:
        self._metrics.image_done(n)
        self._metrics.batch_size = n

    def _metrics_model(self) -> str:
        return str(getattr(self.detector, "model_name", ""))

    async def _heartbeat_loop(self, run: Running) -> None:
        while True:
            await self._beat()
            run.introduced.set()
            await asyncio.sleep(self.config.heartbeat_s)

    async def _beat(self) -> None:
        beat = Heartbeat(
            paused=self._paused,
            provider=str(self.detector.provider),
            model=self._metrics_model(),
            metrics=self.snapshot().heartbeat_metrics(),
            leases=self.held_leases(),
        )
        try:
            resp = await self.source.heartbeat(beat)
        except SourceError as exc:
            log.debug("heartbeat failed: %s", exc)
            return
        self._update_depth(resp.queue_depth)
        if "dedicated_tenant" in resp.model_fields_set:  # a relay that says it (older ones do not)
            self._pictures.set_policy(replace(self._pictures.policy, dedicated_tenant=resp.dedicated_tenant))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.observe_every_s)
            self._set_state()
            self._notify()

    # ----- state -------------------------------------------------------------------------------

    def _update_depth(self, depth: dict[Lane, int]) -> None:
        if not depth:
            return
        self._queue_depth.update(depth)
        capacity = self._running.batcher.capacity_per_s() if self._running is not None else 0.0
        self._throttle.update(self._queue_depth, capacity or self._metrics.images.per_s())

    def _set_error(self, where: str, message: str | None) -> None:
        if message is None:
            if self._errors.pop(where, None) is not None:
                log.info("%s works again", where)
        elif self._errors.get(where) != message:
            log.warning("%s failed: %s", where, message)
            self._errors[where] = message
        self._set_state()

    def _detail(self) -> str:
        if self._errors:
            return "; ".join(self._errors.values())
        if self._running is not None and self._running.batcher.provider_error:
            return self._running.batcher.provider_error
        return ""

    def _set_state(self) -> None:
        if self._stopped:
            state = WorkerState.STOPPED
        elif self._errors:
            state = WorkerState.ERROR
        elif self._paused:
            state = WorkerState.PAUSED
        elif self.relay_busy:
            state = WorkerState.RUNNING
        elif not self._leased_once:
            state = WorkerState.STARTING
        else:
            state = WorkerState.IDLE
        if state != self._state:
            log.info("worker %s -> %s", self._state, state)
            self._state = state
            self._notify()

    def _notify(self) -> None:
        if not self._subscribers:
            return
        snap = self.snapshot()
        for callback in list(self._subscribers):
            try:
                callback(snap)
            except Exception:  # an observer's bug must not stop the worker
                log.exception("metrics subscriber %r failed", callback)

    def _poke(self) -> None:
        if self._running is not None:
            self._running.wake.set()
            self._running.room.set()
        self._set_state()
