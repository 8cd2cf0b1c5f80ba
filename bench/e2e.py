"""End-to-end worker throughput vs the raw inference ceiling of the same model, in the same run.

    python bench/e2e.py                          # a table
    python bench/e2e.py --json                   # one JSON object: e2e_img_s, raw_img_s, ratio, event_p50_s, ...
    python bench/e2e.py --events 10 --moments 20 --model path/to/model.onnx

Starts throwaway Redis and PostgreSQL, a relay on loopback (in a thread of this process) and a worker
(in this process's event loop, as `insane worker` runs it). Three phases:

1. raw: ``session.run`` on ready input tensors (the model's own batch, no decode, no network): the ceiling.
2. loaded: N Pro events × K uploaded 1080p moments posted at once; e2e_img_s = images / (first post →
   last result stored), with each event's latency from its POST to its stored result.
3. idle: single K-moment Pro events posted one at a time on the idle worker; event_p50_s / event_p95_s.

The default model is the real YOLOv8s the tests build (see insane/devkit/models.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from core.detect import OnnxConfig, load_detector  # noqa: E402
from core.settings import load_settings  # noqa: E402
from core.worker import Worker, WorkerConfig  # noqa: E402
from core.worker.build import preloader_factory  # noqa: E402
from core.worker.http_source import HttpLeaseSource  # noqa: E402
from insane.devkit import models  # noqa: E402
from insane.devkit.client import enroll_worker, make_tenant  # noqa: E402
from insane.devkit.relay import RelayServer, fresh_database, relay_settings  # noqa: E402
from insane.devkit.services import EmbeddedServices  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def raw_ceiling(det, image: bytes, batch: int, seconds: float = 5.0) -> float:
    prepared = det.prepare(image)
    tensor = np.stack([prepared.tensor] * batch)
    det.run(tensor)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        det.run(tensor)
        n += batch
    return n / (time.perf_counter() - t0)


def post(client: httpx.Client, tenant, image: bytes, k: int) -> str:
    event = {"camera": "bench", "time": "2026-01-01T00:00:00Z"}
    files = [("event", (None, json.dumps(event), "application/json"))]
    files += [("moment", (f"{i}.jpg", image, "image/jpeg")) for i in range(k)]
    r = client.post("/v1/events", files=files, headers=tenant.headers)
    r.raise_for_status()
    return r.json()["id"]


async def run(args: argparse.Namespace) -> dict:
    cache = models.test_cache()
    model = Path(args.model) if args.model else models.export_onnx(models.fall_model_pt(cache), cache, 640)
    image = models.sample_images()["frame1080.jpg"]
    threads = args.threads
    with EmbeddedServices(durable=True) as services:  # fsync and synchronous commit on, as deployed
        db = fresh_database(services)
        with RelayServer(relay_settings(services, db, lease_idle_s=60.0, max_moments=64)) as relay:
            tenant = make_tenant(relay.url, tier="pro")
            creds = enroll_worker(relay.url)
            det = load_detector(OnnxConfig(type="onnx", path=str(model), threads=threads, rect=args.rect))
            batch = min(args.batch, det.max_batch or args.batch)
            raw = raw_ceiling(det, image, batch, args.raw_seconds)
            config = WorkerConfig(
                max_batch=args.batch,
                lease_wait_s=2.0,
                threads=threads,
                lease_ahead_images=max(64, 3 * args.moments),
                k_max={"pro": 64, "standard": 64},
            )
            worker = Worker(config, HttpLeaseSource(relay.url, creds.secret), det, preloader_factory(load_settings()))
            done: dict[uuid.UUID, float] = {}
            progress = asyncio.Event()

            def on_snapshot(snap) -> None:
                for r in snap.recent:
                    done.setdefault(r.event_id, r.done_at)
                progress.set()

            worker.subscribe(on_snapshot)
            worker_task = asyncio.create_task(worker.run())
            loop = asyncio.get_running_loop()
            client = httpx.Client(base_url=relay.url, timeout=60)

            async def wait_for(ids: list[str], limit_s: float) -> None:
                deadline = time.monotonic() + limit_s
                while not all(uuid.UUID(i) in done for i in ids) and time.monotonic() < deadline:
                    progress.clear()
                    try:
                        await asyncio.wait_for(progress.wait(), 0.05)
                    except TimeoutError:
                        on_snapshot(worker.snapshot())

            try:
                # Warm-up: one event, so sessions and caches are hot.
                await wait_for([await loop.run_in_executor(None, post, client, tenant, image, 4)], 120)
                # Loaded.
                posted: dict[str, float] = {}
                t0 = time.time()
                for _ in range(args.events):
                    posted[await loop.run_in_executor(None, post, client, tenant, image, args.moments)] = time.time()
                await wait_for(list(posted), 600)
                t_end = max(done[uuid.UUID(i)] for i in posted)
                e2e = args.events * args.moments / (t_end - t0)
                loaded = [done[uuid.UUID(i)] - t for i, t in posted.items()]
                # Idle: one event at a time.
                idle = []
                for _ in range(args.idle_events):
                    t = time.time()
                    event_id = await loop.run_in_executor(None, post, client, tenant, image, args.moments)
                    await wait_for([event_id], 120)
                    idle.append(done[uuid.UUID(event_id)] - t)
            finally:
                await loop.run_in_executor(None, client.close)
                await worker.stop()
                await worker_task
    return {
        "model": model.name,
        "input_shape": [batch, 3, *det.input_size],
        "provider": "CPUExecutionProvider",
        "threads": threads,
        "events": args.events,
        "moments": args.moments,
        "e2e_img_s": round(e2e, 2),
        "raw_img_s": round(raw, 2),
        "ratio": round(e2e / raw, 3),
        "event_p50_s": round(percentile(idle, 50), 3),
        "event_p95_s": round(percentile(idle, 95), 3),
        "loaded_event_p50_s": round(percentile(loaded, 50), 3),
        "loaded_event_p95_s": round(percentile(loaded, 95), 3),
        "idle_events": len(idle),
        "image": "1920x1080 JPEG",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=6)
    p.add_argument("--moments", type=int, default=20)
    p.add_argument("--idle-events", type=int, default=5)
    p.add_argument("--model", help="a .onnx file (default: the real YOLOv8s the tests build)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--rect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="384×640 input for the 16:9 frames, as the worker runs by default (INSANE_DETECT_RECT)",
    )
    p.add_argument("--raw-seconds", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for key, value in out.items():
            print(f"{key:<{width}}  {value}")
        print(f"e2e / raw = {out['ratio']:.2f}; idle {args.moments}-moment event p95 = {out['event_p95_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
