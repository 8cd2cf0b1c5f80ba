"""One leased event's review: its chosen moments through fetch → decode → batch, then its result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from core.protocol import LANE_RANK, LANES, EventResult, LeasedEvent, MomentRef, MomentResult
from core.worker.verdict import verdict


@dataclass
class Job:
    event: LeasedEvent
    refs: list[MomentRef]  # the moments chosen for this review (K of them)
    leased_at: float = field(default_factory=time.monotonic)
    backfill: bool = False
    earlier: list[MomentResult] = field(default_factory=list)  # a back-fill's moments reviewed before
    stage_s: dict[str, float] = field(default_factory=lambda: {"fetch": 0.0, "decode": 0.0, "infer": 0.0})

    @property
    def priority(self) -> tuple:
        # Pro before standard, older events before newer, moments in order; back-fills after everything.
        return (len(LANES) if self.backfill else LANE_RANK[self.event.lane], self.event.created_at.timestamp())

    def note(self, stage: str, seconds: float) -> None:
        # The slowest moment's time per stage: moments run concurrently, so a sum would overstate it.
        self.stage_s[stage] = max(self.stage_s[stage], seconds)

    @property
    def suspect(self) -> bool:
        """Delivered before without a result (its worker died, or let the lease lapse): maybe a poison."""
        return not self.backfill and self.event.deliveries > 1

    @property
    def shrunk(self) -> bool:
        return len(self.refs) + len(self.earlier) < len(self.event.moments)

    def result(self, moments: list[MomentResult], model: str, provider: str) -> EventResult:
        done = sorted([*self.earlier, *moments], key=lambda m: m.index)
        timings = {stage: round(s * 1000.0, 3) for stage, s in self.stage_s.items()}
        timings["total"] = round((time.monotonic() - self.leased_at) * 1000.0, 3)
        return EventResult(
            event_id=self.event.event_id,
            lease_id=None if self.backfill else self.event.lease_id,
            k=len(done),
            moments=done,
            verdict=verdict(m for m in done if m.error is None),
            timings_ms=timings,
            model=model,
            provider=provider,
            backfill=self.backfill,
        )
