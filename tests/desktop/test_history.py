"""The charts' ring buffers: bounded in time and in memory, one series per metric."""

from __future__ import annotations

import pytest

from core.worker import WorkerState
from desktop.history import MetricsHistory, nice_ceiling
from tests.desktop.test_status import snap


def test_flattens_a_snapshot_into_series() -> None:
    h = MetricsHistory(span_s=60)
    h.add(snap(WorkerState.RUNNING), at=100.0)
    names = set(h.names())
    assert {
        "images_per_s",
        "events_per_s",
        "batch_size",
        "queue:pro",
        "queue:standard",
        "k:pro",
        "latency_p50:event",
        "latency_p95:event",
    } <= names
    assert "latency_p99:event" not in names  # the charts draw p50 and p95 only
    assert h.series("queue:standard") == [(100.0, 5.0)]


def test_keeps_only_the_span() -> None:
    h = MetricsHistory(span_s=10)
    for t in range(30):
        h.add_values(float(t), {"x": float(t)})
    ts = [t for t, _ in h.series("x")]
    assert ts[0] == 19.0 and ts[-1] == 29.0


def test_memory_is_bounded_whatever_the_rate() -> None:
    h = MetricsHistory(span_s=1000, max_points=50)
    for i in range(500):
        h.add_values(i * 0.001, {"x": 1.0})
    assert len(h) == 50


def test_a_clock_step_back_starts_over() -> None:
    h = MetricsHistory(span_s=100)
    h.add_values(50.0, {"x": 1.0})
    h.add_values(10.0, {"x": 2.0})
    assert h.series("x") == [(10.0, 2.0)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MetricsHistory(span_s=0)


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 1), (0.3, 1), (1.5, 2), (3, 5), (7, 10), (12, 20), (24, 25), (26, 50), (99, 100), (101, 200), (2400, 2500)],
)
def test_nice_ceiling(value: float, top: float) -> None:
    assert nice_ceiling(value) == top
