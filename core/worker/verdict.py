"""The per-event verdict: for each class, in how many moments it was seen, best and median confidence."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from core.protocol import ClassVerdict, MomentResult


def verdict(moments: Iterable[MomentResult]) -> list[ClassVerdict]:
    """One entry per label seen, most moments first (then best confidence, then label).

    A moment counts once per class however many boxes it has; its confidence for the class is the
    best of those boxes, and the median is taken over the moments the class was seen in.
    """
    per_class: dict[str, list[float]] = {}
    for moment in moments:
        best_here: dict[str, float] = {}
        for det in moment.detections:
            best_here[det.label] = max(best_here.get(det.label, 0.0), det.confidence)
        for label, conf in best_here.items():
            per_class.setdefault(label, []).append(conf)
    out = [
        ClassVerdict(label=label, moments=len(confs), best=max(confs), median=float(statistics.median(confs)))
        for label, confs in per_class.items()
    ]
    out.sort(key=lambda v: (-v.moments, -v.best, v.label))
    return out
