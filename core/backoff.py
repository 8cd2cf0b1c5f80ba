"""Exponential backoff with full jitter, shared by every retry loop (the worker, the bridges)."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` gives the next delay in seconds; ``reset()`` after a success."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high, self.n = low, high, 0

    def next(self, hint: float | None = None) -> float:
        self.n += 1
        cap = min(self.high, self.low * 2 ** min(self.n - 1, 30))
        delay = random.uniform(self.low, max(self.low, cap))  # jitter, not a secret
        return max(delay, hint or 0.0)

    def reset(self) -> None:
        self.n = 0
