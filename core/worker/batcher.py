"""The dynamic batcher: prepared images in, detections out, inference on one dedicated thread.

A batch holds images of one input shape (frames of different aspects are letterboxed to different shapes,
and a model call takes one shape). The next batch is the shape of the highest-priority waiting image
(Pro, then older events), filled with that shape's images in priority order. It closes when it holds B
of them or when its oldest has waited ``max_wait_s``, whichever comes first. No shape starves: every image
becomes the highest-priority one in its turn, and a batch of another shape never holds more than B.
While one batch runs on the inference thread the next one fills, so the detector never waits on the
event loop. B adapts per shape so one batch takes about ``latency_target_s`` (its cost is measured per
input pixel), within ``1..min(max_batch, detector.max_batch)``.

    batcher = Batcher(detector, max_batch=8, max_wait_s=0.02, latency_target_s=0.5)
    batcher.start()
    detections = await batcher.submit(prepared, priority=(0, created_ts))   # anyone may submit: worker, LAN API
    batcher.set_provider("CUDAExecutionProvider")   # applied on the inference thread between batches
    await batcher.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from core.detect.base import DetectorError
from core.protocol import Detection
from core.worker.ports import DetectorPort

log = logging.getLogger(__name__)


class InferenceError(Exception):
    """The detector failed on a batch; every image in it gets this error."""


@dataclass(order=True)
class _Item:
    priority: tuple
    seq: int
    enqueued: float = field(compare=False)
    prepared: Any = field(compare=False)
    future: asyncio.Future = field(compare=False)
    shape: Hashable = field(compare=False, default=None)


def input_shape(prepared: Any) -> Hashable:
    """The batching key of a prepared image: its tensor's shape (None for anything without one)."""
    return getattr(getattr(prepared, "tensor", None), "shape", None)


def _pixels(shape: Hashable) -> int | None:
    if isinstance(shape, tuple) and len(shape) >= 2 and all(isinstance(v, int) for v in shape):
        return shape[-1] * shape[-2]
    return None


class Batcher:
    def __init__(
        self,
        detector: DetectorPort,
        max_batch: int = 8,
        max_wait_s: float = 0.02,
        latency_target_s: float = 0.5,
        on_batch: Callable[[int, float], None] | None = None,
        min_batch: int = 1,
    ) -> None:
        self.detector = detector
        self.cap = max(1, min(max_batch, detector.max_batch or max_batch))
        self.max_wait_s = max_wait_s
        self.latency_target_s = latency_target_s
        # A detector that splits a batch over one session per core needs at least that many images to
        # use every core, whatever the latency target says.
        self.floor = max(1, min(min_batch, self.cap))
        self.batch_size = self.cap  # B of the last batch's shape (what the dashboard shows)
        self.on_batch = on_batch
        self.provider_error: str | None = None
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._pending_provider: str | None = None
        self._per_image_s: float | None = None
        self._per_pixel_s: float | None = None  # shapes differ in cost: B is sized from this
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="insane-infer")
        self._task: asyncio.Task | None = None
        self.busy = False

    @property
    def waiting(self) -> int:
        return len(self._heap)

    def capacity_per_s(self) -> float:
        """Images per second inference can do at the current batch size (0 before the first batch)."""
        return 1.0 / self._per_image_s if self._per_image_s else 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    def submit(self, prepared: Any, priority: tuple = ()) -> asyncio.Future:
        """A future of the image's detections; it raises :class:`InferenceError` if its batch failed."""
        future = asyncio.get_running_loop().create_future()
        item = _Item(priority, next(self._seq), time.monotonic(), prepared, future, input_shape(prepared))
        heapq.heappush(self._heap, item)
        self._changed.set()
        return future

    def set_provider(self, name: str) -> None:
        """Switch the execution provider before the next batch (the one in flight finishes as it is)."""
        self._pending_provider = name
        self._changed.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            provider, self._pending_provider = self._pending_provider, None
            t0 = time.monotonic()
            self.busy = True
            try:
                results = await loop.run_in_executor(self._thread, self._infer, [i.prepared for i in batch], provider)
            except InferenceError as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self.busy = False
            elapsed = time.monotonic() - t0
            for item, dets in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(dets)
            self._adapt(len(batch), elapsed, _pixels(batch[0].shape))
            if self.on_batch is not None:
                self.on_batch(len(batch), elapsed)

    async def _next_batch(self) -> list[_Item]:
        while True:
            self._drop_cancelled()
            if not self._heap:
                self._changed.clear()
                await self._changed.wait()
                continue
            shape = self._heap[0].shape  # the highest-priority image decides the batch's shape
            same = [item for item in self._heap if item.shape == shape]
            if len(same) >= self.size_for(shape):
                break
            remaining = min(item.enqueued for item in same) + self.max_wait_s - time.monotonic()
            if remaining <= 0:
                break
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                break
        return self._take(self._heap[0].shape)

    def _take(self, shape: Hashable) -> list[_Item]:
        """Up to B images of ``shape`` in priority order; the others stay in the heap."""
        n = self.size_for(shape)
        batch: list[_Item] = []
        passed: list[_Item] = []
        while self._heap and len(batch) < n:
            item = heapq.heappop(self._heap)
            (batch if item.shape == shape else passed).append(item)
        for item in passed:
            heapq.heappush(self._heap, item)
        self.batch_size = n
        return batch

    def size_for(self, shape: Hashable) -> int:
        """B for a shape: the most images whose inference takes about ``latency_target_s``."""
        pixels = _pixels(shape)
        per_image = self._per_image_s if self._per_pixel_s is None or pixels is None else self._per_pixel_s * pixels
        if per_image is None:
            return self.cap
        fit = int(self.latency_target_s / max(per_image, 1e-6))
        return max(self.floor, min(self.cap, fit))

    def _drop_cancelled(self) -> None:
        if any(item.future.done() for item in self._heap):
            self._heap = [item for item in self._heap if not item.future.done()]
            heapq.heapify(self._heap)

    def _infer(self, prepared: list[Any], provider: str | None) -> list[list[Detection]]:
        # On the inference thread: the only place the detector's session is used.
        if provider is not None:
            try:
                self.detector.set_provider(provider)  # the detector switches at its next detect()
            except DetectorError as exc:
                self._provider_failed(provider, exc)
                provider = None
        try:
            out = self.detector.detect(prepared)
        except DetectorError as exc:
            if provider is None:
                raise InferenceError(f"inference failed: {exc}") from exc
            # The switch failed and left the old provider in place: run the batch there.
            self._provider_failed(provider, exc)
            return self._infer(prepared, None)
        except (RuntimeError, ValueError, OSError, MemoryError) as exc:
            log.error("inference failed on a batch of %d: %s", len(prepared), exc)
            raise InferenceError(f"inference failed: {exc}") from exc
        if provider is not None:
            self.provider_error = None
        if len(out) != len(prepared):
            raise InferenceError(f"detector returned {len(out)} results for {len(prepared)} images")
        return out

    def _provider_failed(self, provider: str, exc: Exception) -> None:
        self.provider_error = f"cannot use {provider}: {exc}"
        log.warning("%s; staying on %s", self.provider_error, self.detector.provider)

    def _adapt(self, n: int, elapsed: float, pixels: int | None) -> None:
        per_image = elapsed / max(n, 1)
        self._per_image_s = per_image if self._per_image_s is None else 0.7 * self._per_image_s + 0.3 * per_image
        if pixels:
            per_pixel = per_image / pixels
            self._per_pixel_s = per_pixel if self._per_pixel_s is None else 0.7 * self._per_pixel_s + 0.3 * per_pixel

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # returns once it ended, without re-raising its cancellation
            self._task = None
        for item in self._heap:
            if not item.future.done():
                item.future.cancel()
        self._heap.clear()
        # Waits for a batch in flight: the detector must not be closed under it.
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown, True)
