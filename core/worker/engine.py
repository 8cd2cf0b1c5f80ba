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
from core.protocol import LANES, EventResult, Heartbeat, LeasedEvent, MomentRef, MomentResult
from core.worker.backoff import Backoff
from core.worker.batcher import Batcher, InferenceError
from core.worker.config import WorkerConfig
from core.worker.jobs import Job
from core.worker.loading import PreloaderFactory, default_preloader_factory, fetch_errors
from core.worker.metrics import Metrics
from core.worker.pictures import MomentPicture, PicturePolicy, PictureStore
from core.worker.ports import Detector, LeaseSource, RelayUnavailable, RequestRejected, SourceError, TokenRejected
from core.worker.poster import Poster
from core.worker.state import EventSummary, MetricsSnapshot, WorkerState
from core.worker.throttle import Throttle, spread

log = logging.getLogger(__name__)


class WorkerNotRunning(Exception):
    """The worker is not running (starting, or stopped): it cannot review a single image now."""


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        source: LeaseSource,
        detector: Detector,
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
        self._metrics = Metrics(config.metrics_window_s, config.recent_events)
        self._throttle = Throttle(config.k_max, config.k_floor, config.drain_target_s)
        self._queue_depth: dict[str, int] = {lane: 0 for lane in LANES}
        self._subscribers: list[Callable[[MetricsSnapshot], None]] = []
        self._errors: dict[str, str] = {}
        self._state = WorkerState.STARTING
        self._paused = False
        self._leased_once = False
        self._stopping = False
        self._stopped = False
        self._jobs: dict[UUID, asyncio.Task] = {}
        self._job_info: dict[UUID, Job] = {}
        self._inflight_images = 0
        self._shrunk: OrderedDict[UUID, Job] = OrderedDict()
        self._recent: deque[bytes] = deque(maxlen=config.recent_moments)
        self._wake: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._drain = True
        self._batcher: Batcher | None = None
        self._preloader: Any = None
        self._decode: concurrent.futures.ThreadPoolExecutor | None = None
        self._poster: Poster | None = None
        self._pending_provider: str | None = None
        self._pictures = PictureStore(
            config.pictures_keep,
            config.pictures_max_bytes,
            PicturePolicy(dedicated_tenant, config.pictures_other_tenants),
        )
        self._introduced: asyncio.Event | None = None  # set once the first heartbeat was answered (or failed)

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
            batch_size=self._batcher.batch_size if self._batcher else 0,
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
        if self._batcher is not None:
            self._batcher.set_provider(name)
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
        held = [job.event.lease_id for job in self._job_info.values() if not job.backfill]
        if self._poster is not None:
            held += self._poster.lease_ids()
        return list(dict.fromkeys(held))[:4096]

    # ----- single images outside any event (the LAN API, core/lan) --------------------------------

    @property
    def batch_size(self) -> int:
        return self._batcher.batch_size if self._batcher is not None else 0

    @property
    def relay_busy(self) -> bool:
        """The worker holds relay work it has not finished reviewing."""
        return bool(self._jobs)

    async def prepare_image(self, data: bytes) -> Any:
        """One image decoded in the worker's decode pool; raises core.imageinfo.ImageError or WorkerNotRunning."""
        if self._decode is None or self._batcher is None or self._stopping or self._stopped:
            raise WorkerNotRunning("the worker is not running")
        return await asyncio.get_running_loop().run_in_executor(self._decode, self.detector.prepare, data)

    async def infer_prepared(self, prepared: Any, priority: tuple) -> list:
        """Its detections through the batcher shared with relay work (lower ``priority`` first; relay work is
        ``(0|1|2, ...)``); raises InferenceError, or WorkerNotRunning."""
        if self._batcher is None or self._stopped:
            raise WorkerNotRunning("the worker is not running")
        return await self._batcher.submit(prepared, priority)

    async def stop(self, drain: bool = True) -> None:
        """Stop leasing; with ``drain`` finish and post what is held (bounded by ``stop_timeout_s``),
        otherwise drop it (the relay re-delivers it after its lease deadline). Then close everything."""
        self._drain = drain
        self._stopping = True
        self._poke()
        if self._done is not None:
            await self._done.wait()
        elif not self._stopped:
            await self._close_owned()
            self._stopped = True
            self._set_state()

    # ----- the pipeline ------------------------------------------------------------------------

    async def run(self) -> None:
        if self._done is not None or self._stopped:
            raise RuntimeError("a Worker runs once; build a new one to run again")
        self._done = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._introduced = asyncio.Event()
        self._decode = concurrent.futures.ThreadPoolExecutor(self.config.decode_threads, "insane-decode")
        self._batcher = Batcher(
            self.detector,
            self.config.max_batch,
            self.config.batch_wait_s,
            self.config.latency_target_s,
            on_batch=self._on_batch,
            min_batch=self.config.threads,
        )
        if self._pending_provider:
            self._batcher.set_provider(self._pending_provider)
        self._batcher.start()
        self._poster = Poster(self.source, self.config, on_posted=self._on_posted, on_error=self._set_error)
        self._set_state()
        try:
            async with self._preloader_factory(self.source) as preloader:
                self._preloader = preloader
                loops = [
                    asyncio.create_task(self._lease_loop(), name="lease"),
                    asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
                    asyncio.create_task(self._tick_loop(), name="observe"),
                ]
                self._poster.start()
                try:
                    while not self._stopping:
                        self._wake.clear()
                        await self._wake.wait()
                finally:
                    await self._shutdown(loops)
        finally:
            await self._close_owned()
            self._stopped = True
            self._set_state()
            self._done.set()

    async def _shutdown(self, loops: list[asyncio.Task]) -> None:
        loops[0].cancel()  # the lease loop: a long-poll in flight is abandoned; the relay re-delivers
        await asyncio.wait([loops[0]])
        jobs = list(self._jobs.values())
        if jobs and self._drain:
            _, late = await asyncio.wait(jobs, timeout=self.config.stop_timeout_s)
            for task in late:
                task.cancel()
        else:
            for task in jobs:
                task.cancel()
        if jobs:
            await asyncio.wait(jobs)
        await self._poster.close(drain=self._drain, wait_s=self.config.stop_timeout_s)
        for task in loops[1:]:
            task.cancel()
        await asyncio.wait(loops[1:])

    async def _close_owned(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        if self._decode is not None:
            self._decode.shutdown(wait=False, cancel_futures=True)
        await self.source.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.detector.close)

    async def _lease_loop(self) -> None:
        backoff = Backoff(self.config.retry_min_s, self.config.retry_max_s)
        # The first heartbeat's answer says whose pictures this worker may keep: ask before taking work.
        await self._introduced.wait()
        while not self._stopping:
            room = self.config.lease_ahead_images - self._inflight_images
            if self._paused or (self._jobs and room < min(self._throttle.k.values())):
                await self._sleep_until_poked()
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
                self._start(event)
            if not resp.events and not self._jobs and not any(self._queue_depth.values()):
                self._backfill_one()
            self._set_state()

    def _start(self, event: LeasedEvent) -> None:
        if event.event_id in self._jobs:
            return  # a re-delivery of an event we are still reviewing
        self._throttle.observe_event(event.lane, len(event.moments))
        k = min(self._throttle.k[event.lane], len(event.moments))
        refs = [event.moments[i] for i in spread(len(event.moments), k)]
        self._launch(Job(event, refs))

    def _backfill_one(self) -> None:
        if not self.config.backfill or not self._shrunk:
            return
        _, job = self._shrunk.popitem(last=False)
        done = {m.index for m in job.earlier}
        refs = [m for m in job.event.moments if m.index not in done]
        log.info("back-filling event %s: %d more moments", job.event.event_id, len(refs))
        self._launch(Job(job.event, refs, backfill=True, earlier=job.earlier))

    def _launch(self, job: Job) -> None:
        self._preloader.prefetch(job.event, job.refs)
        self._inflight_images += len(job.refs)
        self._job_info[job.event.event_id] = job
        self._jobs[job.event.event_id] = asyncio.create_task(self._review(job), name=f"event {job.event.event_id}")

    async def _review(self, job: Job) -> None:
        try:
            moments = list(await asyncio.gather(*(self._moment(job, ref) for ref in job.refs)))
            if job.backfill and all(m.error is not None for m in moments):
                log.info("back-fill of event %s reviewed nothing more; not posted", job.event.event_id)
                return
            result = job.result(moments, self._metrics_model(), str(self.detector.provider))
            if job.shrunk and self.config.backfill:
                job.earlier = list(result.moments)
                self._remember_shrunk(job)
            self._poster.put(result, job)
        finally:
            self._inflight_images -= len(job.refs)
            self._jobs.pop(job.event.event_id, None)
            self._job_info.pop(job.event.event_id, None)
            self._preloader.forget(job.event.event_id)
            self._set_state()
            self._poke()

    async def _moment(self, job: Job, ref: MomentRef) -> MomentResult:
        t0 = time.monotonic()
        try:
            data = await self._preloader.get(job.event, ref)
        except fetch_errors() as exc:
            return self._moment_error(ref, f"fetch: {exc}")
        t1 = time.monotonic()
        job.note("fetch", t1 - t0)
        self._metrics.stage("fetch", t1 - t0)
        try:
            prepared = await asyncio.get_running_loop().run_in_executor(self._decode, self.detector.prepare, data)
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
            detections = await self._batcher.submit(prepared, (*job.priority, ref.index))
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

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._beat()
            self._introduced.set()
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

    def _update_depth(self, depth: dict[str, int]) -> None:
        if not depth:
            return
        self._queue_depth.update(depth)
        capacity = self._batcher.capacity_per_s() if self._batcher else 0.0
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
        if self._batcher is not None and self._batcher.provider_error:
            return self._batcher.provider_error
        return ""

    def _set_state(self) -> None:
        if self._stopped:
            state = WorkerState.STOPPED
        elif self._errors:
            state = WorkerState.ERROR
        elif self._paused:
            state = WorkerState.PAUSED
        elif self._jobs:
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
        if self._wake is not None:
            self._wake.set()
        if self._room is not None:
            self._room.set()
        self._set_state()

    async def _sleep_until_poked(self) -> None:
        self._room.clear()
        await self._room.wait()
