"""One LAN request's review: decode, wait its turn, infer, in the worker's own pipeline.

    service = LanService(worker, max_concurrent=8)
    answer = await service.review(jpeg)      # LanAnswer, or ImageError / WireError(503) / InferenceError
    service.stats()                          # LanStats for the tray: requests/s, totals, in progress

How LAN requests and the relay's leases share the detector (one batcher, one inference thread):

- A LAN request is decoded in the worker's decode pool, then goes into the batcher ahead of every relay
  moment: a camera's NVR waits on each answer, while a relay event is a batch of moments already queued.
- While the worker holds relay work, at most ⌈B/2⌉ LAN images (B: the batcher's batch size now) are in
  the batcher at once; the others wait their turn in arrival order. When both are busy each side gets at
  least half of every batch: a LAN request waits at most for the batch in flight, and relay leases keep
  at least half of the detector whatever the LAN sends. With no relay work, LAN images may fill batches.
- At most ``max_concurrent`` requests are reviewed at once and ``4 × max_concurrent`` more may wait;
  past that the answer is 503 at once, so a flood costs the worker only the parsing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from core.imageinfo import probe
from core.lan.wire import WireError
from core.worker.metrics import Rate

LAN_PRIORITY = -1  # relay moments are (0 pro | 1 standard | 2 back-fill, ...): the LAN goes first


@dataclass(frozen=True)
class LanAnswer:
    detections: list[Any]  # core.protocol.Detection
    width: int
    height: int
    decode_ms: float
    wait_ms: float  # in line for the batcher (the fair-share gate)
    infer_ms: float  # in the batcher: its batch wait and the inference


@dataclass(frozen=True)
class LanStats:
    requests_per_s: float
    requests_total: int
    errors_total: int
    in_progress: int


class ShareGate:
    """FIFO admission into the batcher: at most ``cap()`` LAN images in it at once."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.inside = 0
        self._waiters: deque[asyncio.Future] = deque()

    def cap(self) -> int:
        b = max(1, int(self.worker.batch_size or 1))
        return max(1, math.ceil(b / 2)) if self.worker.relay_busy else b

    async def __aenter__(self) -> None:
        if not self._waiters and self.inside < self.cap():
            self.inside += 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # admitted as we were cancelled: pass the place on
            else:
                self._waiters.remove(future)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        self.inside -= 1
        while self._waiters and self.inside < self.cap():
            future = self._waiters.popleft()
            if not future.done():
                self.inside += 1
                future.set_result(None)


class LanService:
    def __init__(self, worker: Any, max_concurrent: int = 8, window_s: float = 10.0) -> None:
        self.worker = worker
        self.max_concurrent = max_concurrent
        self.max_waiting = 4 * max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)
        self._gate = ShareGate(worker)
        self._waiting = 0
        self._in_progress = 0
        self._rate = Rate(window_s)
        self._total = 0
        self._errors = 0
        self._seq = itertools.count()

    @property
    def model_name(self) -> str:
        return str(getattr(self.worker.detector, "model_name", ""))

    @property
    def provider(self) -> str:
        return str(getattr(self.worker.detector, "provider", ""))

    def stats(self) -> LanStats:
        return LanStats(self._rate.per_s(), self._total, self._errors, self._in_progress)

    def count(self, ok: bool) -> None:
        """Every answered request, good or not (the tray shows the rate)."""
        self._total += 1
        self._rate.add()
        if not ok:
            self._errors += 1

    async def review(self, data: bytes) -> LanAnswer:
        if self._waiting >= self.max_waiting:
            raise WireError(503, f"busy: {self._in_progress + self._waiting} requests in progress", retry_after=1)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._in_progress += 1
        try:
            return await self._review(data)
        finally:
            self._in_progress -= 1
            self._slots.release()

    async def _review(self, data: bytes) -> LanAnswer:
        t0 = time.monotonic()
        prepared = await self.worker.prepare_image(data)
        width, height = getattr(prepared, "width", None), getattr(prepared, "height", None)
        if width is None or height is None:
            info = probe(data)
            width, height = info.width, info.height
        t1 = time.monotonic()
        async with self._gate:
            t2 = time.monotonic()
            detections = await self.worker.infer_prepared(prepared, (LAN_PRIORITY, next(self._seq)))
        t3 = time.monotonic()
        return LanAnswer(detections, int(width), int(height), (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
