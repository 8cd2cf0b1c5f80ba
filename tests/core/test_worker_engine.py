"""The worker engine (core/worker/engine.py) alone, with fakes at its three seams (core/worker/ports.py): a
relay that hands out what a test puts in it, a preloader serving blobs from memory, a detector that reads a
moment's bytes as its label. The real batcher, throttle, poster and metrics run; no network, no model.
The same engine against a real relay, real Redis and real models: tests/e2e/test_worker_*.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from core.preload import FetchError
from core.protocol import (
    Detection,
    EventResult,
    Heartbeat,
    HeartbeatResponse,
    LeasedEvent,
    LeaseResponse,
    MomentRef,
    ResultsResponse,
)
from core.worker import (
    DetectorPort,
    LeaseSource,
    PreloaderPort,
    RelayUnavailable,
    Worker,
    WorkerConfig,
    WorkerState,
)

QUICK: dict[str, Any] = dict(
    lease_wait_s=0.05,
    heartbeat_s=0.05,
    batch_wait_s=0.001,
    retry_min_s=0.01,
    retry_max_s=0.05,
    observe_every_s=0.05,
    stop_timeout_s=5.0,
)


# ----- the fakes, one per port -------------------------------------------------------------------------


class FakeRelay:
    """A LeaseSource: ``offer()`` queues events for the next lease; it records what the worker sends back."""

    def __init__(self) -> None:
        self.waiting: list[LeasedEvent] = []
        self.posted: list[EventResult] = []
        self.beats: list[Heartbeat] = []
        self.lease_calls = 0
        self.lease_failures: list[Exception] = []  # raised by the next lease calls, in order
        self.post_failures: list[Exception] = []  # raised by the next post_results calls, in order
        self.closed = False
        self._offered = asyncio.Event()

    def offer(self, *events: LeasedEvent) -> None:
        self.waiting.extend(events)
        self._offered.set()

    async def lease(self, max_events: int, wait_s: float) -> LeaseResponse:
        self.lease_calls += 1
        if self.lease_failures:
            raise self.lease_failures.pop(0)
        if not self.waiting:
            self._offered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._offered.wait(), wait_s)
        events, self.waiting = self.waiting[:max_events], self.waiting[max_events:]
        return LeaseResponse(events=events, queue_depth={"pro": 0, "standard": len(self.waiting)})

    async def fetch_blob(self, blob: str, event: LeasedEvent) -> bytes:
        raise AssertionError("the fake preloader serves blobs itself")

    async def post_results(self, results: Sequence[EventResult]) -> ResultsResponse:
        if self.post_failures:
            raise self.post_failures.pop(0)
        seen = {r.event_id for r in self.posted if not r.backfill}
        dups = [r.event_id for r in results if not r.backfill and r.event_id in seen]
        self.posted.extend(results)
        stored = [r.event_id for r in results if r.event_id not in dups]
        return ResultsResponse(stored=stored, duplicates=dups, acked=len(results))

    async def heartbeat(self, beat: Heartbeat) -> HeartbeatResponse:
        self.beats.append(beat)
        return HeartbeatResponse(queue_depth={"pro": 0, "standard": len(self.waiting)})

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakePreloader:
    """A PreloaderPort over an in-memory dict of blobs; a missing blob is a FetchError, as a 404 would be."""

    blobs: dict[str, bytes]
    prefetched: list[tuple[UUID, list[int]]] = field(default_factory=list)
    forgotten: list[UUID] = field(default_factory=list)

    def prefetch(self, event: LeasedEvent, moments: Sequence[MomentRef]) -> None:
        self.prefetched.append((event.event_id, [m.index for m in moments]))

    async def get(self, event: LeasedEvent, moment: MomentRef) -> bytes:
        await asyncio.sleep(0)
        if moment.blob not in self.blobs:
            raise FetchError(f"blob {moment.blob} is gone")
        return self.blobs[moment.blob]

    def forget(self, event_id: UUID) -> None:
        self.forgotten.append(event_id)


@dataclass(frozen=True)
class Prepared:
    label: str
    width: int = 64
    height: int = 48


class FakeDetector:
    """A DetectorPort: a moment's bytes are its label (b"" finds nothing); ``gate`` holds inference back."""

    max_batch: int | None = 4
    model_name = "fake-v1"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[list[str]] = []
        self.providers: list[str] = []
        self.closed = False
        self._provider = "CPUExecutionProvider"

    @property
    def provider(self) -> str:
        return self._provider

    def prepare(self, data: bytes) -> Prepared:
        return Prepared(data.decode())

    def detect(self, batch: list[Prepared]) -> list[list[Detection]]:
        assert self.gate.wait(10), "the test never opened the gate"
        self.batches.append([p.label for p in batch])
        return [
            [Detection(label=p.label, class_id=0, confidence=0.9, box=(1, 2, 30, 40))] if p.label else [] for p in batch
        ]

    def set_provider(self, name: str) -> None:
        self.providers.append(name)
        self._provider = name

    def available_providers(self) -> list[str]:
        return ["CPUExecutionProvider", "FakeGPUExecutionProvider"]

    def close(self) -> None:
        self.closed = True


def test_the_fakes_fit_the_ports() -> None:
    assert isinstance(FakeRelay(), LeaseSource)
    relay_port: LeaseSource = FakeRelay()  # the static check of the same (mypy)
    preloader: PreloaderPort = FakePreloader({})
    detector: DetectorPort = FakeDetector()
    assert relay_port and preloader and detector


# ----- the harness ---------------------------------------------------------------------------------------


def event(labels: Sequence[str], lane: str = "standard") -> LeasedEvent:
    """An event whose moment i is blob ``"<event>-<i>"``; ``labels`` are what the detector will find."""
    event_id = uuid.uuid4()
    return LeasedEvent(
        lease_id=f"lease-{event_id.hex[:8]}",
        event_id=event_id,
        tenant_id=uuid.uuid4(),
        lane=lane,
        camera="front_door",
        created_at=datetime.now(UTC),
        moments=[MomentRef(index=i, blob=f"{event_id}-{i}") for i in range(len(labels))],
    )


@dataclass
class Harness:
    worker: Worker
    relay: FakeRelay
    detector: FakeDetector
    preloader: FakePreloader
    task: asyncio.Task[None]

    def give(self, *labelled: Sequence[str], lane: str = "standard") -> list[LeasedEvent]:
        """Events with these moments' labels, leased to the worker next."""
        events = [event(labels, lane) for labels in labelled]
        for ev, labels in zip(events, labelled, strict=True):
            self.preloader.blobs.update({f"{ev.event_id}-{i}": label.encode() for i, label in enumerate(labels)})
        self.relay.offer(*events)
        return events

    def results(self, event: LeasedEvent) -> list[EventResult]:
        return [r for r in self.relay.posted if r.event_id == event.event_id]


async def until(predicate: Callable[[], object], within: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(paused: bool = False, provider: str | None = None, **config: Any) -> AsyncIterator[Harness]:
    relay, detector, preloader = FakeRelay(), FakeDetector(), FakePreloader({})

    @contextlib.asynccontextmanager
    async def factory(source: LeaseSource) -> AsyncIterator[PreloaderPort]:
        assert source is relay
        yield preloader

    worker = Worker(WorkerConfig(**{**QUICK, **config}), relay, detector, factory)
    if paused:
        worker.pause()
    if provider:
        worker.set_provider(provider)
    task = asyncio.create_task(worker.run())
    harness = Harness(worker, relay, detector, preloader, task)
    try:
        yield harness
    finally:
        detector.gate.set()
        await asyncio.wait_for(worker.stop(), 10)
        await task


# ----- the tests -----------------------------------------------------------------------------------------


async def test_a_leased_event_is_reviewed_and_its_result_posted_with_its_verdict() -> None:
    async with running() as h:
        (ev,) = h.give(["person", "person", "car", ""])
        await until(lambda: h.results(ev), what="the result posted")
        (result,) = h.results(ev)
        assert result.lease_id == ev.lease_id and not result.backfill
        assert result.k == 4 and [m.index for m in result.moments] == [0, 1, 2, 3]
        assert [(v.label, v.moments) for v in result.verdict] == [("person", 2), ("car", 1)]
        assert result.moments[0].width == 64 and result.moments[0].height == 48
        assert result.model == "fake-v1" and result.provider == "CPUExecutionProvider"
        assert set(result.timings_ms) == {"fetch", "decode", "infer", "total"}
        assert h.preloader.prefetched == [(ev.event_id, [0, 1, 2, 3])]
        await until(lambda: ev.event_id in h.preloader.forgotten, what="the preloader told to forget the event")
        await until(lambda: h.worker.snapshot().events_total == 1, what="the event counted")
        snap = h.worker.snapshot()
        assert snap.images_total == 4 and snap.errors_total == 0
        assert [s.event_id for s in snap.recent] == [ev.event_id]
        await until(lambda: h.worker.state == WorkerState.IDLE, what="idle once done")
    assert h.worker.state == WorkerState.STOPPED
    assert h.relay.closed and h.detector.closed  # the worker owns its source and detector


async def test_a_moment_that_cannot_be_fetched_is_an_error_and_the_rest_of_the_event_goes_on() -> None:
    async with running() as h:
        (ev,) = h.give(["person", "person", "person"])
        del h.preloader.blobs[f"{ev.event_id}-1"]
        await until(lambda: h.results(ev), what="the result posted")
        (result,) = h.results(ev)
        assert result.moments[1].error is not None and result.moments[1].error.startswith("fetch: ")
        assert [m.error for m in (result.moments[0], result.moments[2])] == [None, None]
        assert [(v.label, v.moments) for v in result.verdict] == [("person", 2)]
        assert h.worker.snapshot().errors_total == 1


async def test_k_shrinks_to_the_lane_limit_and_the_rest_is_back_filled_when_idle() -> None:
    async with running(k_max={"pro": 8, "standard": 2}, k_floor={"pro": 1, "standard": 1}) as h:
        (ev,) = h.give(["a", "b", "c", "d", "e"])
        await until(lambda: len(h.results(ev)) == 2, what="the review and its back-fill posted")
        first, backfill = h.results(ev)
        assert first.k == 2 and [m.index for m in first.moments] == [0, 4]  # spread: the first and the last
        assert backfill.backfill and backfill.lease_id is None  # a back-fill holds no lease
        assert backfill.k == 5 and [m.index for m in backfill.moments] == [0, 1, 2, 3, 4]
        assert [v.label for v in backfill.verdict] == ["a", "b", "c", "d", "e"]
        assert h.preloader.prefetched == [(ev.event_id, [0, 4]), (ev.event_id, [1, 2, 3])]


async def test_a_relay_outage_is_state_error_with_its_reason_and_leasing_comes_back() -> None:
    async with running() as h:
        h.relay.lease_failures = [RelayUnavailable("relay unreachable: connection refused")] * 3
        seen: list[WorkerState] = []
        h.worker.subscribe(lambda snap: seen.append(snap.state))
        (ev,) = h.give(["person"])
        await until(lambda: h.results(ev), what="the result posted after the outage")
        assert WorkerState.ERROR in seen
        await until(lambda: h.worker.state == WorkerState.IDLE, what="no error once leasing works")
        assert h.worker.snapshot().state_detail == ""


async def test_a_result_is_kept_and_its_lease_renewed_until_the_relay_stores_it() -> None:
    async with running() as h:
        h.relay.post_failures = [RelayUnavailable("503")] * 5
        (ev,) = h.give(["person"])
        await until(lambda: h.worker.state == WorkerState.ERROR, what="the failed post shown")
        assert "results not delivered yet" in h.worker.snapshot().state_detail
        assert ev.lease_id in h.worker.held_leases()
        await until(lambda: any(ev.lease_id in b.leases for b in h.relay.beats), what="a heartbeat renewing it")
        await until(lambda: h.results(ev), what="the result stored once the relay is back")
        assert len(h.results(ev)) == 1
        await until(lambda: not h.worker.held_leases(), what="the lease let go once stored")


async def test_a_slow_review_keeps_its_lease_and_a_redelivery_of_it_is_not_reviewed_twice() -> None:
    async with running() as h:
        h.detector.gate.clear()
        (ev,) = h.give(["person", "car"])
        await until(lambda: h.worker.relay_busy and h.worker.state == WorkerState.RUNNING, what="reviewing")
        await until(lambda: any(ev.lease_id in b.leases for b in h.relay.beats), what="the lease renewed")
        h.relay.offer(ev)  # the relay delivers it again (say its lease deadline passed)
        await until(lambda: not h.relay.waiting, what="the re-delivery leased")
        h.detector.gate.set()
        await until(lambda: h.results(ev), what="the result posted")
        await asyncio.sleep(0.1)
        assert len(h.results(ev)) == 1
        assert sorted(label for batch in h.detector.batches for label in batch) == ["car", "person"]


async def test_stop_with_drain_finishes_and_posts_what_it_holds() -> None:
    async with running() as h:
        h.detector.gate.clear()
        (ev,) = h.give(["person"])
        await until(lambda: h.worker.relay_busy, what="reviewing")
        stopping = asyncio.create_task(h.worker.stop(drain=True))
        await asyncio.sleep(0.1)
        assert not stopping.done() and h.worker.state != WorkerState.STOPPED
        h.detector.gate.set()
        await asyncio.wait_for(stopping, 10)
        assert [r.event_id for r in h.relay.posted] == [ev.event_id]
        assert h.worker.state == WorkerState.STOPPED


async def test_stop_without_drain_drops_what_it_holds_for_the_relay_to_deliver_again() -> None:
    async with running() as h:
        h.detector.gate.clear()
        h.give(["person"])
        await until(lambda: h.worker.relay_busy, what="reviewing")
        stopping = asyncio.create_task(h.worker.stop(drain=False))
        await until(lambda: not h.worker.relay_busy, what="the review dropped")
        h.detector.gate.set()  # the batch in flight still ends before the detector is closed
        await asyncio.wait_for(stopping, 10)
        assert h.relay.posted == [] and h.worker.state == WorkerState.STOPPED


async def test_pause_stops_leasing_and_resume_starts_it_again() -> None:
    async with running(paused=True) as h:
        (ev,) = h.give(["person"])
        await until(lambda: h.relay.beats, what="the first heartbeat")
        await asyncio.sleep(0.2)
        assert h.relay.lease_calls == 0 and h.worker.state == WorkerState.PAUSED
        assert h.relay.beats[-1].paused
        h.worker.resume()
        await until(lambda: h.results(ev), what="the result posted after resume")


async def test_a_provider_chosen_before_run_is_applied_before_the_first_batch() -> None:
    async with running(provider="FakeGPUExecutionProvider") as h:
        (ev,) = h.give(["person"])
        await until(lambda: h.results(ev), what="the result posted")
        assert h.detector.providers == ["FakeGPUExecutionProvider"]
        assert h.results(ev)[0].provider == "FakeGPUExecutionProvider"
        with pytest.raises(ValueError, match="not available"):
            h.worker.set_provider("NoSuchExecutionProvider")


async def test_a_worker_runs_once_and_one_stopped_before_it_ran_closes_what_it_owns() -> None:
    relay, detector = FakeRelay(), FakeDetector()
    worker = Worker(WorkerConfig(**QUICK), relay, detector)
    await worker.stop()
    assert worker.state == WorkerState.STOPPED and relay.closed and detector.closed
    assert worker.held_leases() == [] and worker.batch_size == 0 and not worker.relay_busy
    with pytest.raises(RuntimeError, match="runs once"):
        await worker.run()


async def test_a_suspect_is_reviewed_alone_after_what_was_in_hand_and_before_more_is_taken() -> None:
    """An event delivered before without a result may be the image that killed its worker: it waits until
    what is in hand is reviewed and stored, is reviewed alone, and nothing more is leased meanwhile."""
    async with running() as h:
        h.detector.gate.clear()
        (first,) = h.give(["person", "car"])
        await until(lambda: any(e == first.event_id for e, _ in h.preloader.prefetched), what="the first in hand")
        suspect = event(["person"]).model_copy(update={"deliveries": 2})
        h.preloader.blobs[f"{suspect.event_id}-0"] = b"suspect"
        h.relay.offer(suspect)
        await until(lambda: any(e == suspect.event_id for e, _ in h.preloader.prefetched), what="the suspect leased")
        (later,) = h.give(["dog"])
        await asyncio.sleep(0.3)
        assert h.detector.batches == []  # the gate holds the first event; the suspect has not started
        h.detector.gate.set()
        await until(lambda: h.results(later), what="all three reviewed")
        order = [r.event_id for r in h.relay.posted]
        assert order == [first.event_id, suspect.event_id, later.event_id]
        assert ["suspect"] in h.detector.batches  # alone in its batch
