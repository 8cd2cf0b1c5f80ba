"""What a chaos run does and how its report reads: the plan (sizes, rates, deadlines, phases), the
counts of one phase, and the report as a table.

    plan = Plan.quick(model, phases=("workers",))     # Plan.full(model) for bench/chaos.py
    print(table(report))                              # one row per phase, and the totals
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Plan:
    model: str
    workers: int = 3
    moments: int = 5  # per event
    image_wh: tuple[int, int] = (320, 240)
    submit_rate: float = 8.0  # events per second offered by the cameras
    worker_events: int = 1000
    worker_kills: int = 50
    redis_events: int = 400
    redis_kills: int = 3
    pg_events: int = 200
    pg_down_s: float = 10.0
    poison_events: int = 200
    relay_events: int = 200
    balanced_events: int = 300
    disk_events: int = 200
    disk_full_s: float = 8.0
    max_deliveries: int = 5
    lease_idle_s: float = 6.0  # the workers heartbeat (and renew their leases) every third of it
    requeue_after_s: float = 12.0
    reconcile_interval_s: float = 2.0
    drain_timeout_s: float = 180.0
    seed: int = 8
    phases: tuple[str, ...] = ("workers", "redis", "postgres", "poison", "relay", "disk", "balanced")

    @classmethod
    def full(cls, model: str, **overrides) -> Plan:
        return cls(model=model, **overrides)

    @classmethod
    def quick(cls, model: str, **overrides) -> Plan:
        values: dict[str, Any] = dict(
            model=model,
            workers=2,
            moments=3,
            submit_rate=10.0,
            worker_events=30,
            worker_kills=3,
            redis_events=20,
            redis_kills=1,
            pg_events=15,
            pg_down_s=3.0,
            poison_events=6,
            relay_events=40,
            balanced_events=40,
            disk_events=30,
            disk_full_s=3.0,
            max_deliveries=3,
            lease_idle_s=3.0,
            requeue_after_s=5.0,
            reconcile_interval_s=1.0,
            drain_timeout_s=60.0,
        )
        values.update(overrides)
        return cls(**values)

    @property
    def total_moments(self) -> int:
        events = (
            self.worker_events
            + self.redis_events
            + self.pg_events
            + self.poison_events
            + self.relay_events
            + self.disk_events
            + self.balanced_events
        )
        return events * self.moments + (3 if "poison" in self.phases else 0)


@dataclass
class Phase:
    name: str
    faults: int = 0
    submitted: int = 0
    accepted: int = 0
    lost: int = 0
    duplicate_rows: int = 0
    unexpected_failed: int = 0
    unstored_202: int = 0
    requeued: int = 0
    re_reviews: int = 0
    dead_letters: int = 0
    answers_503: int = 0
    answers_503_without_retry_after: int = 0
    server_errors: int = 0
    moment_errors: int = 0
    moments_reviewed: int = 0
    crashes: int = 0
    stored_not_acked: int | None = None  # relay phase: results committed, then the relay killed before acking
    poison_deliveries: int | None = None
    poison_status: str | None = None
    seconds: float = 0.0
    retried: dict[str, int] = field(default_factory=dict)  # answers that made a camera retry, by status
    notes: list[str] = field(default_factory=list)


COLUMNS = [
    ("faults", "faults"),
    ("accepted", "events"),
    ("lost", "lost"),
    ("duplicate_rows", "dup rows"),
    ("re_reviews", "dup answers"),
    ("requeued", "re-queued"),
    ("dead_letters", "dead"),
    ("unexpected_failed", "failed"),
    ("unstored_202", "202 unstored"),
    ("answers_503", "503s"),
    ("crashes", "crashes"),
    ("retried", "cameras retried on"),
    ("seconds", "s"),
]


def _cell(value: object) -> str:
    if isinstance(value, dict):  # {"503": 31, "transport": 2} -> "503×31 transport×2"
        return " ".join(f"{k}×{v}" for k, v in sorted(value.items())) or "-"
    return str(value)


def table(report: dict) -> str:
    rows = [[ph["name"]] + [_cell(ph[key]) for key, _ in COLUMNS] for ph in report["phases"]]
    totals = report["totals"]
    total = {**totals, "seconds": report["seconds"]}
    rows.append(["total"] + [_cell(total.get(key, "")) for key, _ in COLUMNS])
    head = ["phase"] + [label for _, label in COLUMNS]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
