"""What the worker tells its observers: its state and a snapshot of its metrics.

The tray app and ``insane worker`` read only these frozen values; they never reach into the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from core.protocol import ClassVerdict, Lane


class WorkerState(StrEnum):
    STARTING = "starting"  # loading, first lease not answered yet
    RUNNING = "running"  # events in flight
    IDLE = "idle"  # connected, nothing to do
    PAUSED = "paused"  # not leasing (the batch in flight still finishes)
    ERROR = "error"  # relay unreachable, token rejected, ...; retrying (see state_detail)
    STOPPED = "stopped"


@dataclass(frozen=True)
class EventSummary:
    """One finished event, for the dashboard's recent list."""

    event_id: UUID
    camera: str
    lane: str
    k: int
    verdict: tuple[ClassVerdict, ...]
    done_at: float  # time.time()
    latency_s: float  # lease to result stored
    backfill: bool = False
    tenant_id: UUID | None = None  # whose event (its picture is kept only where the picture policy allows)


@dataclass(frozen=True)
class MetricsSnapshot:
    at: float
    state: WorkerState
    state_detail: str
    images_per_s: float
    events_per_s: float
    latency_ms: dict[str, dict[str, float]]  # stage ("fetch", "decode", "infer", "event") -> {"p50", "p95", "p99"}
    queue_depth: dict[Lane, int]  # entries waiting at the relay
    batch_size: int
    k: dict[Lane, int]  # current K per lane
    provider: str
    model: str
    threads: int
    images_total: int
    events_total: int
    errors_total: int
    recent: tuple[EventSummary, ...] = field(default_factory=tuple)

    def heartbeat_metrics(self) -> dict[str, float]:
        """The flat numbers the relay receives in heartbeats (and exports as Prometheus gauges)."""
        out = {
            "images_per_s": self.images_per_s,
            "events_per_s": self.events_per_s,
            "batch_size": float(self.batch_size),
            "images_total": float(self.images_total),
            "events_total": float(self.events_total),
            "errors_total": float(self.errors_total),
        }
        for lane, k in self.k.items():
            out[f"k_{lane}"] = float(k)
        for stage, pcts in self.latency_ms.items():
            for name, value in pcts.items():
                out[f"latency_{stage}_{name}_ms"] = value
        return {name: value for name, value in out.items() if math.isfinite(value)}  # the relay refuses NaN
