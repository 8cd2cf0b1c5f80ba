"""The worker's pure parts: verdict, moment spreading, auto-throttle, rolling metrics, the batcher."""

from __future__ import annotations

import asyncio
import itertools
import threading

import numpy as np
import pytest

from core.detect.base import DetectorError
from core.protocol import Detection, MomentResult
from core.worker.batcher import Batcher, InferenceError
from core.worker.metrics import Rate, Samples
from core.worker.throttle import Throttle, spread
from core.worker.verdict import verdict


def det(label: str, conf: float) -> Detection:
    return Detection(label=label, class_id=0, confidence=conf, box=(0, 0, 1, 1))


def test_verdict_counts_moments_once_per_class_with_best_and_median():
    moments = [
        MomentResult(index=0, detections=[det("person", 0.9), det("person", 0.5), det("car", 0.4)]),
        MomentResult(index=1, detections=[det("person", 0.6)]),
        MomentResult(index=2, detections=[det("person", 0.3)]),
        MomentResult(index=3, detections=[]),
    ]
    v = verdict(moments)
    assert [c.label for c in v] == ["person", "car"]
    person = v[0]
    assert (person.moments, person.best, person.median) == (3, 0.9, 0.6)
    assert (v[1].moments, v[1].best, v[1].median) == (1, 0.4, 0.4)
    assert verdict([]) == []


@pytest.mark.parametrize("n,k", [(20, 5), (20, 2), (7, 6), (64, 8), (3, 10), (10, 1), (100, 99)])
def test_spread_includes_first_and_last_and_is_even(n, k):
    picked = spread(n, k)
    assert len(picked) == min(n, k) and picked == sorted(set(picked))
    assert picked[0] == 0
    if min(n, k) > 1:
        assert picked[-1] == n - 1
    if 1 < k < n:
        gaps = [b - a for a, b in itertools.pairwise(picked)]
        assert max(gaps) - min(gaps) <= max(1, n // k)


def test_throttle_shrinks_standard_first_then_pro_never_below_floor_and_grows_back():
    t = Throttle(k_max={"pro": 20, "standard": 20}, k_floor={"pro": 8, "standard": 4}, drain_target_s=10)
    for lane in ("pro", "standard"):
        t.observe_event(lane, 20)
        t._moments[lane] = 20.0
    # 10 images/s, 10 s target: 100 images of budget. 2 Pro events (40) + 10 standard at 20 (200) = too much.
    k = t.update({"pro": 2, "standard": 10}, 10.0)
    assert k["pro"] == 20 and k["standard"] == 6  # (100 - 40) / 10
    # A bigger backlog: standard hits its floor, then Pro shrinks, but not below its floor.
    k = t.update({"pro": 50, "standard": 500}, 10.0)
    assert k == {"pro": 8, "standard": 4}
    # Drained: K doubles per update back to the maximum.
    steps = [t.update({"pro": 0, "standard": 0}, 10.0) for _ in range(4)]
    assert steps[0] == {"pro": 16, "standard": 8}
    assert steps[-1] == {"pro": 20, "standard": 20}
    # No throughput measured yet: K stays.
    assert t.update({"pro": 99, "standard": 999}, 0.0) == {"pro": 20, "standard": 20}


def test_rate_and_samples():
    r = Rate(10.0)
    for i in range(20):
        r.add(1, now=100.0 + i * 0.5)
    assert r.per_s(now=110.0) == pytest.approx(21 / 10, rel=0.2)
    assert r.per_s(now=200.0) == 0.0
    s = Samples()
    for i in range(1, 101):
        s.add(i / 1000)
    p = s.percentiles()
    assert p["p50"] == pytest.approx(50.5) and p["p99"] > p["p95"] > p["p50"]


class RecordingDetector:
    """A detector at the seam: records the batches and the thread they ran on."""

    max_batch = 4
    model_name = "rec"

    def __init__(self, fail_provider: bool = False) -> None:
        self.provider = "CPUExecutionProvider"
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set once a batch is in detect()
        self.fail_provider = fail_provider
        self.pending: str | None = None

    def available_providers(self):
        return ["CPUExecutionProvider", "AltCPU"]

    def set_provider(self, name):
        self.pending = name

    def detect(self, batch):
        self.entered.set()
        self.gate.wait(10)
        if self.pending:
            pending, self.pending = self.pending, None
            if self.fail_provider:
                raise DetectorError(f"cannot load on {pending}")
            self.provider = pending
        if -1 in batch:
            raise RuntimeError("bad tensor")
        self.threads.add(threading.get_ident())
        self.batches.append(list(batch))
        return [[det(str(x), 0.5)] for x in batch]


async def test_batcher_fills_batches_by_priority_off_the_loop():
    d = RecordingDetector()
    d.gate.clear()  # hold the first batch so the rest queue up
    b = Batcher(d, max_batch=8, max_wait_s=0.05, latency_target_s=10)
    b.start()
    first = b.submit(0, (1, 0))
    assert await asyncio.to_thread(d.entered.wait, 10)  # the first batch (one image) is running and blocked
    futures = [b.submit(i, (1, i)) for i in range(1, 6)] + [b.submit(100, (0, 0))]
    d.gate.set()
    results = await asyncio.gather(first, *futures)
    assert [r[0].label for r in results] == ["0", "1", "2", "3", "4", "5", "100"]
    assert d.batches[0] == [0]
    assert d.batches[1] == [100, 1, 2, 3]  # capped by the detector's max_batch, Pro (priority 0) first
    assert d.batches[2] == [4, 5]
    assert threading.get_ident() not in d.threads and len(d.threads) == 1
    await b.close()


async def test_batcher_failed_batch_and_failed_provider_switch():
    d = RecordingDetector(fail_provider=True)
    b = Batcher(d, max_batch=4, max_wait_s=0.01)
    b.start()
    with pytest.raises(InferenceError, match="bad tensor"):
        await b.submit(-1)
    b.set_provider("AltCPU")
    out = await b.submit(7)
    assert out[0].label == "7" and d.provider == "CPUExecutionProvider"
    assert "cannot use AltCPU" in (b.provider_error or "")
    assert b.capacity_per_s() > 0
    await b.close()


class Frame:
    """A prepared image at the seam: only its tensor's shape matters to the batcher."""

    def __init__(self, tag: str, shape: tuple[int, int]) -> None:
        self.tag = tag
        self.tensor = np.empty((3, *shape), np.uint8)

    def __repr__(self) -> str:
        return self.tag


class ShapeDetector(RecordingDetector):
    max_batch = 8

    def detect(self, batch):
        shapes = {f.tensor.shape for f in batch}
        if len(shapes) != 1:
            raise RuntimeError(f"a batch of mixed shapes {shapes}")
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([f.tag for f in batch])
        return [[det(f.tag, 0.5)] for f in batch]


async def test_batcher_runs_one_shape_per_batch_and_starves_none():
    d = ShapeDetector()
    d.gate.clear()
    b = Batcher(d, max_batch=3, max_wait_s=0.01, latency_target_s=10)
    b.start()
    first = b.submit(Frame("w0", (384, 640)), (1, 0))
    assert await asyncio.to_thread(d.entered.wait, 10)
    # Interleaved cameras: 16:9 (w), 4:3 (q) and portrait (p) frames, in priority order w1, q1, p1, w2, ...
    frames = []
    for i in range(1, 5):
        frames += [(Frame(f"w{i}", (384, 640)), (1, 10 * i)), (Frame(f"q{i}", (480, 640)), (1, 10 * i + 1))]
        frames += [(Frame(f"p{i}", (640, 384)), (1, 10 * i + 2))]
    pro = Frame("pro", (640, 384))
    futures = [b.submit(f, prio) for f, prio in frames] + [b.submit(pro, (0, 99))]
    d.gate.set()
    results = await asyncio.gather(first, *futures)
    assert [r[0].label for r in results] == ["w0"] + [f.tag for f, _ in frames] + ["pro"]
    assert d.batches[0] == ["w0"]
    # Pro first (its shape leads), then the highest-priority shape each time, filled in priority order.
    assert d.batches[1:] == [["pro", "p1", "p2"], ["w1", "w2", "w3"], ["q1", "q2", "q3"], ["p3", "p4"], ["w4"], ["q4"]]
    await b.close()


async def test_batch_size_adapts_per_shape_by_pixels():
    d = ShapeDetector()
    b = Batcher(d, max_batch=64, max_wait_s=0.001, latency_target_s=1.0)
    d.max_batch = 64
    b = Batcher(d, max_batch=64, max_wait_s=0.001, latency_target_s=1.0)
    b._adapt(4, 0.4, 384 * 640)  # 0.1 s per 384×640 image
    assert b.size_for((3, 384, 640)) == 10
    assert b.size_for((3, 640, 640)) == 5  # 0.167 s per image: fewer per batch
    assert b.size_for(None) == 10  # no shape known: per image
    assert b.capacity_per_s() == pytest.approx(10)
