"""The worker engine's knobs, as one frozen value (built from :class:`core.settings.Settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.protocol import Lane
from core.settings import K_FLOOR, K_MAX


@dataclass(frozen=True)
class WorkerConfig:
    # Leasing: how many events per lease call, how long to long-poll, how far to lease ahead of inference.
    lease_events: int = 8
    lease_wait_s: float = 10.0
    lease_ahead_images: int = 64  # keep at most this many leased moments not yet inferred
    heartbeat_s: float = 5.0
    # Dynamic batcher: a batch closes at B images or after batch_wait_s; B adapts so that one batch
    # takes about latency_target_s of inference, between 1 and min(max_batch, detector.max_batch).
    max_batch: int = 8
    batch_wait_s: float = 0.02
    latency_target_s: float = 0.5
    decode_threads: int = 2
    threads: int = 1  # inference threads (reported in metrics; the detector was built with them)
    # Auto-throttle: K per lane shrinks when the backlog would take longer than drain_target_s to clear.
    k_max: dict[Lane, int] = field(default_factory=lambda: dict(K_MAX))
    k_floor: dict[Lane, int] = field(default_factory=lambda: dict(K_FLOOR))
    drain_target_s: float = 60.0
    backfill: bool = True
    backfill_keep: int = 256  # shrunk events remembered for back-fill
    recent_moments: int = 32  # one moment per event kept in memory (JPEG bytes) to calibrate INT8 on
    # Retries while the relay is unreachable.
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    # Metrics.
    metrics_window_s: float = 10.0
    recent_events: int = 50
    # The dashboard's pictures: the best moment of each of the last pictures_keep events, within
    # pictures_max_bytes of fetched images; other tenants' only when the operator allows it.
    pictures_keep: int = 50
    pictures_max_bytes: int = 32 << 20
    pictures_other_tenants: bool = False
    observe_every_s: float = 1.0
    stop_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.lease_events < 1 or self.max_batch < 1 or self.decode_threads < 1:
            raise ValueError("lease_events, max_batch and decode_threads must be at least 1")
        if self.pictures_keep < 0 or self.pictures_max_bytes < 0:
            raise ValueError("pictures_keep and pictures_max_bytes must be 0 or more")
        for lane, floor in self.k_floor.items():
            if floor < 1 or floor > self.k_max.get(lane, floor):
                raise ValueError(f"k_floor[{lane}]={floor} must be between 1 and k_max")
