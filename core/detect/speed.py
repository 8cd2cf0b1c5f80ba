"""Throughput measurements shared by ``insane model bench`` and ``bench/detect.py``.

    raw = measure_raw(det, tensors, batch=4, seconds=5)        # session.run on ready tensors
    full = measure_pipeline(det, jpegs, batch=4, seconds=5)    # JPEG bytes to boxes, decode in a pool
    runs = alternate({"fp32": lambda: measure_raw(a, ...), "int8": lambda: measure_raw(b, ...)}, rounds=5)

Figures are images per second over whole passes, after one warm-up batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.detect.base import Detector, RawModel
from core.detect.preprocess import to_input


def _timed(step: Callable[[], int], seconds: float, min_rounds: int = 3) -> float:
    step()  # warm-up: allocations, thread pools, kernel selection
    done, rounds, t0 = 0, 0, time.perf_counter()
    while rounds < min_rounds or time.perf_counter() - t0 < seconds:
        done += step()
        rounds += 1
    return done / (time.perf_counter() - t0)


def measure_raw(det: RawModel, tensors: Sequence[np.ndarray], batch: int, seconds: float) -> float:
    """The ceiling: the model alone on ready batch tensors (the backend's ``run``)."""
    stacked = to_input(list(tensors), det.dtype)
    chunks = [np.ascontiguousarray(stacked[i : i + batch]) for i in range(0, len(stacked), batch)]

    def step() -> int:
        for c in chunks:
            det.run(c)
        return len(stacked)

    return _timed(step, seconds)


def measure_pipeline(det: Detector, jpegs: Sequence[bytes], batch: int, seconds: float, workers: int = 2) -> float:
    """The whole path: decode + letterbox in a thread pool, overlapped with inference + NMS batch by batch."""
    pool = ThreadPoolExecutor(workers, "prepare")

    def step() -> int:
        futures = [pool.submit(det.prepare, j) for j in jpegs]
        for i in range(0, len(futures), batch):
            det.detect([f.result() for f in futures[i : i + batch]])
        return len(jpegs)

    try:
        return _timed(step, seconds)
    finally:
        pool.shutdown()


def alternate(measures: Mapping[Hashable, Callable[[], float]], rounds: int) -> dict[Hashable, list[float]]:
    """Each measurement in turn, ``rounds`` times: on a shared or throttling machine, compare two models by
    the median of their per-round ratios, which drift shifts alike, rather than by one long run each."""
    runs: dict[Hashable, list[float]] = {key: [] for key in measures}
    for _ in range(rounds):
        for key, measure in measures.items():
            runs[key].append(measure())
    return runs
