"""Auto-throttle: K, the number of moments reviewed per event, per lane.

When the relay's backlog would take longer than ``drain_target_s`` to clear at the measured
throughput, K shrinks — the standard lane first, Pro only once standard is at its floor, never below
a lane's floor. When the backlog drains, K grows back (doubling per step, so it does not oscillate).

    throttle = Throttle(k_max={"pro": 64, "standard": 32}, k_floor={"pro": 8, "standard": 4}, drain_target_s=60)
    throttle.update(queue_depth={"pro": 3, "standard": 900}, images_per_s=40.0)
    throttle.k["standard"]                  # e.g. 4
    spread(20, 5)                           # [0, 5, 10, 14, 19]: moments spread over the event
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from core.protocol import LANES, Lane
from core.settings import K_FLOOR, K_MAX

log = logging.getLogger(__name__)

# Shrink order: the lane whose K is cut first comes first (the reverse of the leasing order).
SHRINK_ORDER = LANES[::-1]


def spread(n: int, k: int) -> list[int]:
    """``k`` indices out of ``range(n)``, evenly spread, always with the first and the last."""
    if k >= n:
        return list(range(n))
    if k <= 0:
        return []
    if k == 1:
        return [0]
    picked = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    # Rounding can merge two picks when k is close to n; fill the gaps from the left.
    spare = (i for i in range(n) if i not in picked)
    while len(picked) < k:
        picked.append(next(spare))
    return sorted(picked)


class Throttle:
    def __init__(self, k_max: Mapping[Lane, int], k_floor: Mapping[Lane, int], drain_target_s: float) -> None:
        self.k_max = {lane: k_max.get(lane, K_MAX[lane]) for lane in LANES}
        self.k_floor = {lane: min(k_floor.get(lane, K_FLOOR[lane]), self.k_max[lane]) for lane in LANES}
        self.drain_target_s = drain_target_s
        self.k: dict[Lane, int] = dict(self.k_max)
        # Moments per event seen recently, per lane (what a queued event will cost at full K).
        self._moments: dict[Lane, float] = {lane: 20.0 for lane in LANES}

    def observe_event(self, lane: Lane, moments: int) -> None:
        if lane in self._moments and moments > 0:
            self._moments[lane] = 0.8 * self._moments[lane] + 0.2 * moments

    def cost(self, lane: Lane, k: int) -> float:
        """Images one queued event of this lane costs at K=k."""
        return min(float(k), self._moments[lane])

    def drain_s(
        self, queue_depth: Mapping[Lane, int], images_per_s: float, k: Mapping[Lane, int] | None = None
    ) -> float:
        ks = k or self.k
        images = sum(queue_depth.get(lane, 0) * self.cost(lane, ks[lane]) for lane in LANES)
        return images / images_per_s if images_per_s > 0 else (math.inf if images else 0.0)

    def update(self, queue_depth: Mapping[Lane, int], images_per_s: float) -> dict[Lane, int]:
        """Recompute K per lane from the backlog and the throughput; returns the new K."""
        if images_per_s <= 0:
            return dict(self.k)  # nothing measured yet: keep K
        budget = self.drain_target_s * images_per_s  # images we may have queued
        want = dict(self.k_max)
        for lane in SHRINK_ORDER:
            others = sum(queue_depth.get(o, 0) * self.cost(o, want[o]) for o in LANES if o != lane)
            depth = queue_depth.get(lane, 0)
            if depth and others + depth * self.cost(lane, want[lane]) > budget:
                fit = math.floor(max(0.0, budget - others) / depth)
                want[lane] = max(self.k_floor[lane], min(want[lane], fit))
        new: dict[Lane, int] = {}
        for lane in LANES:
            cur = self.k[lane]
            if want[lane] < cur:
                new[lane] = want[lane]
            elif want[lane] > cur:
                new[lane] = min(want[lane], max(cur * 2, self.k_floor[lane]))
            else:
                new[lane] = cur
        if new != self.k:
            log.info("K per lane %s -> %s (backlog %s, %.1f images/s)", self.k, new, queue_depth, images_per_s)
        self.k = new
        return dict(new)

    def shrunk(self, lane: Lane, moments: int) -> bool:
        return self.k[lane] < moments
