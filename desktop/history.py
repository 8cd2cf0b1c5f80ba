"""Ring buffers of the worker's metrics, for the dashboard's charts.

    history = MetricsHistory(span_s=300)
    history.add(snapshot)                      # about once a second
    history.series("queue:pro")                # [(t, value), ...] oldest first, within the span

Series names: ``images_per_s``, ``events_per_s``, ``batch_size``, ``latency_p50:<stage>``,
``latency_p95:<stage>``, ``queue:<lane>``, ``k:<lane>``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any


def flatten(snapshot: Any) -> dict[str, float]:
    """The chartable numbers of one metrics snapshot, by series name."""
    values: dict[str, float] = {
        "images_per_s": float(snapshot.images_per_s),
        "events_per_s": float(snapshot.events_per_s),
        "batch_size": float(snapshot.batch_size),
    }
    for stage, quantiles in (snapshot.latency_ms or {}).items():
        for q in ("p50", "p95"):
            if q in quantiles:
                values[f"latency_{q}:{stage}"] = float(quantiles[q])
    for lane, depth in (snapshot.queue_depth or {}).items():
        values[f"queue:{lane}"] = float(depth)
    for lane, k in (snapshot.k or {}).items():
        values[f"k:{lane}"] = float(k)
    return values


class MetricsHistory:
    """The last ``span_s`` seconds of metrics; memory is bounded by ``max_points`` whatever the rate."""

    def __init__(self, span_s: float = 300.0, max_points: int = 1200) -> None:
        if span_s <= 0 or max_points < 2:
            raise ValueError("span_s must be > 0 and max_points >= 2")
        self.span_s = span_s
        self._points: deque[tuple[float, Mapping[str, float]]] = deque(maxlen=max_points)

    def __len__(self) -> int:
        return len(self._points)

    def add(self, snapshot: Any, at: float | None = None) -> None:
        self.add_values(float(snapshot.at if at is None else at), flatten(snapshot))

    def add_values(self, at: float, values: Mapping[str, float]) -> None:
        if self._points and at < self._points[-1][0]:
            # A clock step back (suspend, NTP): start over rather than draw a line backwards in time.
            self._points.clear()
        self._points.append((at, dict(values)))
        while self._points and self._points[0][0] < at - self.span_s:
            self._points.popleft()

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, values in self._points:
            seen.update(dict.fromkeys(values))
        return list(seen)

    def series(self, name: str) -> list[tuple[float, float]]:
        return [(t, values[name]) for t, values in self._points if name in values]

    def latest(self) -> tuple[float, Mapping[str, float]] | None:
        return self._points[-1] if self._points else None

    def __iter__(self) -> Iterator[tuple[float, Mapping[str, float]]]:
        return iter(self._points)


def nice_ceiling(value: float) -> float:
    """The chart's y-axis top: the next of 1, 2, 2.5, 5 × 10^n at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)
