"""Rolling metrics: throughput over a window, latency percentiles per stage, totals, recent events.

Everything here runs on the event loop thread; the inference thread never touches it.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from core.worker.state import EventSummary

STAGES = ("fetch", "decode", "infer", "event")


class Rate:
    """Count per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._marks: deque[tuple[float, int]] = deque()
        self._first = 0.0

    def add(self, n: int = 1, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if not self._marks:
            self._first = now
        self._marks.append((now, n))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._marks and self._marks[0][0] < now - self.window_s:
            self._marks.popleft()

    def per_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if not self._marks:
            return 0.0
        # A worker that started 2 s ago is measured over 2 s, not over the whole window.
        span = min(self.window_s, max(now - self._first, 1e-3))
        return sum(n for _, n in self._marks) / span


class Samples:
    """The last ``size`` values of one latency, in seconds; percentiles in milliseconds."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def percentiles(self) -> dict[str, float]:
        if not self._values:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
        p50, p95, p99 = np.percentile(np.fromiter(self._values, float), [50, 95, 99]) * 1000.0
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


class WorkerMetrics:
    def __init__(self, window_s: float = 10.0, recent: int = 50) -> None:
        self.images = Rate(window_s)
        self.events = Rate(window_s)
        self.stages = {stage: Samples() for stage in STAGES}
        self.images_total = 0
        self.events_total = 0
        self.errors_total = 0
        self.recent: deque[EventSummary] = deque(maxlen=recent)
        self.batch_size = 0

    def image_done(self, n: int = 1) -> None:
        self.images_total += n
        self.images.add(n)

    def event_done(self, summary: EventSummary) -> None:
        self.events_total += 1
        self.events.add(1)
        self.stages["event"].add(summary.latency_s)
        self.recent.append(summary)

    def stage(self, name: str, seconds: float) -> None:
        self.stages[name].add(seconds)

    def latency_ms(self) -> dict[str, dict[str, float]]:
        return {stage: samples.percentiles() for stage, samples in self.stages.items()}
