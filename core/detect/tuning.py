"""Fit the batch to the device and the decoders to the inference, measured once at start.

    batch, timings = largest_batch(lambda b: seconds_for(det, b), budget_s=0.5, limit=64)
    threads, why = decode_threads(infer_s_per_image=0.002, decode_s_per_image=0.01, configured=2, cores=16)

On a GPU a batch of 32 costs little more than a batch of 8, so the largest batch that still answers within
the latency target is the one to run; on the CPU the time grows with the batch and the dynamic batcher's
own adaptation is enough. When inference takes less time per image than a JPEG decode, one decode thread
becomes the wall (about 100 frames/s per core at reduced size): the decoders get as many threads as keep
up with the model, up to the cores there are. OpenCV and Pillow release the GIL while they decode, so
threads scale; no process pool is needed.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from core.detect.base import RawModel

log = logging.getLogger(__name__)

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def largest_batch(
    seconds_for: Callable[[int], float], budget_s: float, limit: int, start: int = 1
) -> tuple[int, dict[int, float]]:
    """(the largest power-of-two batch up to ``limit`` whose run takes at most ``budget_s``, timings by batch).

    Stops at the first batch over budget: time grows with the batch. ``start`` is returned even when it is
    over budget (nothing smaller is tried).
    """
    best, timings = start, {}
    for b in (b for b in BATCHES if start <= b <= limit):
        timings[b] = seconds_for(b)
        if timings[b] > budget_s:
            break
        best = b
    return best, timings


def seconds_for(det: RawModel, batch: int, repeats: int = 3) -> float:
    """Median seconds of one ``det.run`` on a batch of zeros of the model's input (after one warm-up run)."""
    h, w = det.input_size
    tensor = np.zeros((batch, 3, h, w), det.dtype)
    det.run(tensor)  # warm-up: TensorRT and CUDA pick kernels for a new shape on its first run
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        det.run(tensor)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def decode_threads(infer_s_per_image: float, decode_s_per_image: float, configured: int, cores: int) -> tuple[int, str]:
    """(decode threads, why): enough that decoding keeps up with inference, at least ``configured``."""
    if infer_s_per_image <= 0 or decode_s_per_image <= infer_s_per_image * configured:
        return configured, (
            f"{configured} decode thread(s) keep up: a decode takes {decode_s_per_image * 1000:.1f} ms, "
            f"inference {infer_s_per_image * 1000:.2f} ms per image"
        )
    needed = math.ceil(decode_s_per_image / infer_s_per_image)
    threads = max(configured, min(needed, cores))
    wall = "" if needed <= cores else f"; still the wall: {needed} would be needed, there are {cores} cores"
    return threads, (
        f"decoding JPEGs on {threads} threads: inference takes {infer_s_per_image * 1000:.2f} ms per image, "
        f"a decode {decode_s_per_image * 1000:.1f} ms{wall}"
    )


def decode_seconds(det: Any, jpeg: bytes, repeats: int = 5) -> float:
    """Median seconds of ``det.prepare`` (decode + letterbox) on one frame."""
    det.prepare(jpeg)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        det.prepare(jpeg)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def synthetic_frame(width: int = 1920, height: int = 1080, quality: int = 90) -> bytes:
    """A camera-like JPEG (smooth noise) made with OpenCV where present, else Pillow."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (height // 8, width // 8, 3), np.uint8)
    frame = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)  # blocky, so it compresses like a real scene
    try:
        import cv2

        return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
    except ImportError:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, "JPEG", quality=quality)
        return buf.getvalue()
