"""The GPU scale path's figures, as one JSON object on stdout (progress on stderr).

    python bench/gpu.py                      # everything this machine can run
    python bench/gpu.py --seconds 3 --e2e    # shorter runs; the end-to-end phase on the CPU too
    docker compose -f docker-compose.pc.gpu.yml run --rm --entrypoint python worker \
        /opt/insane/bench/gpu.py --model yolov8s=/var/lib/insane/models/fall-yolov8s.onnx   # as deployed

What it measures, each where it can:
  raw        ``session.run`` img/s per provider (TensorRT, CUDA, CPU), model (YOLOv8n, YOLOv8s), precision
             (fp32, fp16, INT8 on TensorRT) and batch (1, 8, 32, 64), on ready tensors
  pipeline   JPEG bytes → boxes at the batch the worker would pick, decode threads as the worker sets them
  e2e        events of 1080p uploads through a local relay (PostgreSQL, Redis) to the worker and back
  gpu        the device, the driver, GPU memory used after loading (nvidia-smi)
  decode     the decode wall: 1080p frames/s decoded and letterboxed on 1, 2, … cores threads

Without an NVIDIA GPU it says so ("gpu": {"found": false, "reason": ...}) and measures the CPU baseline
and the decode wall only (``--e2e`` adds the end-to-end phase on the CPU). Models: the YOLOv8n and YOLOv8s
(the fall model) the tests build, or ``--model LABEL=PATH``. fp16 models are made with onnxruntime's
float16 converter (needs the onnx package); INT8 ones with ``insane model quantize``'s code on the bundled
pictures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402

from core.detect import (  # noqa: E402
    DetectorError,
    OnnxConfig,
    load_detector,
    tuning,
)
from core.detect import providers as prov  # noqa: E402

BATCHES = (1, 8, 32, 64)
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def say(*parts: object) -> None:
    print("bench/gpu.py:", *parts, file=sys.stderr, flush=True)


def gpu_info() -> dict[str, Any]:
    """Whether an NVIDIA GPU is usable here, and what it is."""
    names = prov.nvidia_gpus()
    smi = shutil.which("nvidia-smi")
    memory = nvidia_memory() if smi else None
    offered = prov.offered()
    cuda_build = any(p in offered for p in GPU_PROVIDERS)
    found = bool(names or memory) and cuda_build
    if found:
        reason = f"{len(names) or len(memory or [])} NVIDIA GPU(s); onnxruntime offers {offered}"
    else:
        missing = []
        if not names and not memory:
            missing.append("no NVIDIA driver (/proc/driver/nvidia absent" + ("" if smi else ", no nvidia-smi") + ")")
        if not cuda_build:
            missing.append(
                f"this onnxruntime offers no CUDA or TensorRT ({', '.join(offered)}; install onnxruntime-gpu)"
            )
        reason = "no GPU was found: " + "; ".join(missing)
    return {"found": found, "names": names, "memory_mb": memory, "onnxruntime_offers": offered, "reason": reason}


def nvidia_memory() -> list[dict[str, int | str]] | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.used,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    rows: list[dict[str, int | str]] = []
    for line in out.stdout.strip().splitlines():
        name, used, total = (c.strip() for c in line.split(","))
        rows.append({"name": name, "used_mb": int(used), "total_mb": int(total)})
    return rows or None


def default_models() -> dict[str, Path]:
    from insane.devkit import models

    cache = models.test_cache()
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache / "ultralytics-config"))
    os.environ["YOLO_OFFLINE"] = "1"
    return {
        "yolov8n": models.export_onnx(models.yolov8n_pt(cache), cache, 640),
        "yolov8s": models.export_onnx(models.fall_model_pt(cache), cache, 640),
    }


def fp16_copy(model: Path, work: Path) -> Path | None:
    """The model with float16 weights and float32 inputs/outputs, or None when onnx is not installed."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        say(f"no fp16 copy of {model.name}: {exc}")
        return None
    out = work / f"{model.stem}-fp16.onnx"
    if not out.exists():
        onnx.save(convert_float_to_float16(onnx.load(str(model)), keep_io_types=True), str(out))
    return out


def int8_copy(model: Path, work: Path) -> Path | None:
    from core.detect.quantize import QuantizeError, bundled_samples, quantize_model

    try:
        return quantize_model(model, work, bundled_samples(), name=model.stem).path
    except QuantizeError as exc:
        say(f"no INT8 copy of {model.name}: {exc}")
        return None


def raw_rate(det, batch: int, seconds: float) -> float:
    h, w = det.input_size
    tensor = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32).astype(det.dtype)
    det.run(tensor)
    done, t0 = 0, time.perf_counter()
    while done < 3 * batch or time.perf_counter() - t0 < seconds:
        det.run(tensor)
        done += batch
    return done / (time.perf_counter() - t0)


def open_on(provider: str, model: Path, precision: str, cache: Path, threads: int):
    cfg = OnnxConfig(
        path=str(model),
        providers=(provider,),
        precision=precision,
        cache_dir=str(cache),
        threads=threads,
        imgsz=(384, 640),
        profile_batch=max(BATCHES),
    )
    det = load_detector(cfg)
    if det.provider != provider:
        det.close()
        raise DetectorError(f"{provider} did not load (ran on {det.provider})")
    return det


def raw_matrix(
    models: dict[str, Path], providers: list[str], work: Path, seconds: float, batches: tuple[int, ...], threads: int
) -> dict:
    out: dict = {}
    for provider in providers:
        for label, model in models.items():
            variants = {"fp32": (model, "fp32")}
            if provider == "TensorrtExecutionProvider":
                variants["fp16"] = (model, "fp16")
                if (q := int8_copy(model, work)) is not None:
                    variants["int8"] = (q, "int8")
            elif provider == "CUDAExecutionProvider" and (h := fp16_copy(model, work)) is not None:
                variants["fp16"] = (h, "fp16")
            for precision, (path, setting) in variants.items():
                try:
                    det = open_on(provider, path, setting, work / "engines", threads)
                except DetectorError as exc:
                    out.setdefault(provider, {}).setdefault(label, {})[precision] = {"error": str(exc)}
                    continue
                with det:
                    rates = {}
                    for b in batches:
                        if det.max_batch and b > det.max_batch:
                            continue
                        rates[str(b)] = round(raw_rate(det, b, seconds), 1)
                        say(f"raw {provider} {label} {precision} batch {b}: {rates[str(b)]} img/s")
                out.setdefault(provider, {}).setdefault(label, {})[precision] = rates
    return out


def decode_wall(jpeg: bytes, model: Path, seconds: float) -> dict:
    """Frames/s of decode + letterbox (the worker's prepare) on 1, 2, 4… threads up to the cores."""
    from core.detect.decode import get_decoder

    cores = os.cpu_count() or 1
    counts = sorted({1, 2, cores} | {n for n in (4, 8, 16, 32) if n < cores})
    with load_detector(OnnxConfig(path=str(model), threads=1, imgsz=(384, 640))) as det:
        single = tuning.decode_seconds(det, jpeg)
        rates = {}
        for n in counts:
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(det.prepare, [jpeg] * n))
                done, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    list(pool.map(det.prepare, [jpeg] * (4 * n)))
                    done += 4 * n
                rates[str(n)] = round(done / (time.perf_counter() - t0), 1)
    return {
        "frame": "1920x1080 JPEG, decoded at 1/2 and letterboxed to 384x640",
        "decoder": get_decoder().name,
        "ms_per_frame_one_thread": round(single * 1000, 2),
        "frames_per_s_by_threads": rates,
        "cores": cores,
    }


def pipeline(model: Path, provider: str, jpeg: bytes, seconds: float, threads: int) -> dict:
    """JPEG → boxes with the batch and decode threads the worker would choose here (core/worker/build.py)."""
    from core.detect.speed import measure_pipeline
    from core.settings import load_settings
    from core.worker.build import fit_to_device, worker_config

    settings = load_settings(worker_threads=threads)
    with load_detector(OnnxConfig(path=str(model), providers=(provider,), threads=threads, imgsz=(384, 640))) as det:
        config = fit_to_device(settings, det, worker_config(settings))
        jpegs = [jpeg] * max(32, 4 * config.max_batch)
        rate = measure_pipeline(det, jpegs, config.max_batch, seconds, workers=config.decode_threads)
    return {
        "provider": provider,
        "batch": config.max_batch,
        "decode_threads": config.decode_threads,
        "img_s": round(rate, 1),
    }


def e2e(model: Path, use_gpu: bool, events: int, moments: int, threads: int) -> dict:
    """Events of uploaded 1080p frames through a local relay to the worker, as `insane worker` runs."""
    return asyncio.run(_e2e(model, use_gpu, events, moments, threads))


async def _e2e(model: Path, use_gpu: bool, events: int, moments: int, threads: int) -> dict:
    import httpx

    from core.settings import load_settings
    from core.worker import Worker
    from core.worker.build import fit_to_device, preloader_factory, worker_config
    from core.worker.http_source import HttpLeaseSource
    from insane.devkit import models
    from insane.devkit.client import enroll_worker, make_tenant
    from insane.devkit.relay import RelayServer, fresh_database, relay_settings
    from insane.devkit.services import EmbeddedServices

    image = models.sample_images()["frame1080.jpg"]
    settings = load_settings(worker_threads=threads, use_gpu=use_gpu, worker_lease_wait_s=2.0)
    with EmbeddedServices(durable=True) as services:
        db = fresh_database(services)
        with RelayServer(relay_settings(services, db, lease_idle_s=60.0, max_moments=64)) as relay:
            tenant = make_tenant(relay.url, tier="pro")
            creds = enroll_worker(relay.url)
            det = load_detector(OnnxConfig(path=str(model), use_gpu=use_gpu, threads=threads, imgsz=(384, 640)))
            config = fit_to_device(settings, det, worker_config(settings))
            worker = Worker(config, HttpLeaseSource(relay.url, creds.secret), det, preloader_factory(settings))
            task = asyncio.create_task(worker.run())
            client = httpx.AsyncClient(base_url=relay.url, timeout=60, headers=tenant.headers)
            try:

                async def post(k: int) -> str:
                    files: list[tuple[str, tuple[str | None, str | bytes, str]]] = [
                        ("event", (None, json.dumps({"camera": "bench", "moments": []}), "application/json"))
                    ]
                    files += [("moment", (f"{i}.jpg", image, "image/jpeg")) for i in range(k)]
                    r = await client.post("/v1/events", files=files)
                    r.raise_for_status()
                    return r.json()["id"]

                async def wait(ids: list[str]) -> None:
                    pending = set(ids)
                    while pending:
                        for i in list(pending):
                            if (await client.get(f"/v1/events/{i}")).json().get("status") in ("done", "failed"):
                                pending.discard(i)
                        await asyncio.sleep(0.1)

                await wait([await post(4)])  # warm-up
                t0 = time.perf_counter()
                ids = [await post(moments) for _ in range(events)]
                await wait(ids)
                elapsed = time.perf_counter() - t0
            finally:
                await client.aclose()
                await worker.stop()
                await task
    return {
        "provider": det.provider,
        "model": model.name,
        "events": events,
        "moments": moments,
        "batch": config.max_batch,
        "decode_threads": config.decode_threads,
        "img_s": round(events * moments / elapsed, 1),
        "note": "relay, PostgreSQL, Redis and worker on this one machine; uploads of one 1080p JPEG",
    }


def camera_frame() -> bytes:
    """The tests' 1080p photo montage where Ultralytics' sample photos are installed, else a synthetic frame."""
    try:
        from insane.devkit import models

        return models.sample_images()["frame1080.jpg"]
    except (ImportError, FileNotFoundError):
        return tuning.synthetic_frame()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=PATH", help="a model to run (repeatable)")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per raw measurement")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--e2e", action="store_true", help="run the end-to-end phase on the CPU too")
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--moments", type=int, default=20)
    args = ap.parse_args()
    t_start = time.perf_counter()
    gpu = gpu_info()
    say(gpu["reason"])
    try:
        models = dict(m.split("=", 1) for m in args.model) if args.model else default_models()
    except ImportError as exc:
        raise SystemExit(f"bench/gpu.py: no test models here ({exc}); give --model LABEL=PATH.onnx") from exc
    models = {k: Path(v) for k, v in models.items()}
    jpeg = camera_frame()
    res: dict[str, object] = {"gpu": gpu, "threads": args.threads, "input": "384x640", "models": {}}
    res["models"] = {k: v.name for k, v in models.items()}
    with tempfile.TemporaryDirectory(prefix="insane-bench-gpu-") as tmp:
        work = Path(tmp)
        if gpu["found"]:
            providers = [p for p in GPU_PROVIDERS if p in prov.available()] + [prov.CPU]
            res["raw"] = raw_matrix(models, providers, work, args.seconds, BATCHES, args.threads)
            res["gpu_memory_after_load"] = nvidia_memory()
            best = providers[0]
        else:
            # The CPU baseline: what the sizing table's CPU-only row is read from.
            res["raw"] = raw_matrix(models, [prov.CPU], work, args.seconds, (1, 8), args.threads)
            best = prov.CPU
        res["decode"] = decode_wall(jpeg, next(iter(models.values())), min(args.seconds, 3.0))
        res["pipeline"] = {label: pipeline(m, best, jpeg, args.seconds, args.threads) for label, m in models.items()}
        if gpu["found"] or args.e2e:
            first = next(iter(models.values()))
            try:
                res["e2e"] = e2e(first, gpu["found"], args.events, args.moments, args.threads)
            except ImportError as exc:  # the worker image has no relay, PostgreSQL or Redis to run one
                res["e2e"] = {"skipped": f"no local relay can run here ({exc}); run it from a checkout"}
        else:
            res["e2e"] = {"skipped": "no GPU; --e2e runs it on the CPU (bench/e2e.py measures the CPU path)"}
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    res["summary"] = (
        f"GPU: {', '.join(gpu['names']) or 'found'}" if gpu["found"] else f"{gpu['reason']}; CPU figures only"
    )
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
