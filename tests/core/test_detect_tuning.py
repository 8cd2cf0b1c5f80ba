"""core/detect/tuning.py and core/worker/build.py's fit_to_device: the batch and the decoders fitted to the device."""

from __future__ import annotations

import logging
from pathlib import Path

from core.detect import OnnxConfig, load_detector, tuning
from core.detect import providers as prov
from core.settings import load_settings
from core.worker.build import fit_to_device, worker_config


def test_the_largest_batch_within_the_budget_is_chosen_and_the_search_stops_past_it() -> None:
    asked: list[int] = []

    def gpu_like(b: int) -> float:  # 20 ms fixed cost + 1 ms per image
        asked.append(b)
        return 0.020 + 0.001 * b

    batch, timings = tuning.largest_batch(gpu_like, budget_s=0.060, limit=256)
    assert batch == 32 and asked == [1, 2, 4, 8, 16, 32, 64]  # 64 takes 84 ms: over, and nothing after it
    assert timings[64] > 0.060 >= timings[32]
    assert tuning.largest_batch(gpu_like, budget_s=10, limit=16)[0] == 16
    assert tuning.largest_batch(gpu_like, budget_s=0.001, limit=64)[0] == 1  # nothing fits: the smallest


def test_decode_threads_grow_until_decoding_keeps_up_and_say_so() -> None:
    same, why = tuning.decode_threads(infer_s_per_image=0.050, decode_s_per_image=0.010, configured=2, cores=16)
    assert same == 2 and "keep up" in why
    more, why = tuning.decode_threads(infer_s_per_image=0.001, decode_s_per_image=0.010, configured=2, cores=16)
    assert more == 10 and "decoding JPEGs on 10 threads" in why and "wall" not in why
    capped, why = tuning.decode_threads(infer_s_per_image=0.0005, decode_s_per_image=0.010, configured=2, cores=8)
    assert capped == 8 and "still the wall: 20 would be needed, there are 8 cores" in why


def test_the_synthetic_frame_is_a_1080p_jpeg() -> None:
    from core.imageinfo import probe

    info = probe(tuning.synthetic_frame())
    assert (info.format, info.width, info.height) == ("jpeg", 1920, 1080)


def test_a_gpu_worker_tunes_its_batch_and_decoders_at_start_and_a_cpu_worker_does_not(
    monkeypatch, caplog, yolov8n_onnx: Path
) -> None:
    # A second name for the CPU provider plays the GPU: the measurement and the log lines are real.
    monkeypatch.setitem(prov.PROVIDERS, "StandInGpu", ("CPUExecutionProvider", {}))
    caplog.set_level(logging.INFO, logger="core.worker.build")
    settings = load_settings(worker_gpu_batch_max=2, worker_latency_target_ms=60000, worker_batch_size=8)
    base = worker_config(settings)
    with load_detector(OnnxConfig(path=str(yolov8n_onnx), threads=1, imgsz=160)) as det:
        assert fit_to_device(settings, det, base) is base  # on the CPU: as configured
        det.set_provider("StandInGpu")
        det.detect([det.prepare(tuning.synthetic_frame(320, 180))])
        assert det.provider == "StandInGpu"
        fitted = fit_to_device(settings, det, base)
    assert fitted.max_batch == 2  # the limit: both batches fit in a minute
    assert fitted.decode_threads >= base.decode_threads
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "batch 2 on StandInGpu: the largest within 60000 ms (1: " in text
    assert "decode thread(s) keep up" in text or "decoding JPEGs on" in text
    fixed = load_settings(worker_gpu_batch_max=0, worker_batch_size=3)
    with load_detector(OnnxConfig(path=str(yolov8n_onnx), threads=1, imgsz=160, providers=("StandInGpu",))) as det:
        assert fit_to_device(fixed, det, worker_config(fixed)).max_batch == 3
