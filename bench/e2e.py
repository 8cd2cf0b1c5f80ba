"""End-to-end worker throughput vs the raw inference ceiling of the same model on the same cores, in one run.

    python bench/e2e.py                          # both layouts, a table
    python bench/e2e.py --json                   # one JSON object: {"shared": {...}, "pinned": {...}}
    python bench/e2e.py --layouts pinned --events 10 --moments 20 --model path/to/model.onnx

Throwaway Redis and PostgreSQL (fsync and synchronous commit on), the relay on loopback in this process,
and ``insane worker --json`` in a child process, as a user runs it. Two layouts:

- shared: everything on all cores (one PC running relay and worker); the ceiling is ``session.run`` with
  every core.
- pinned: this process (the relay and the load), Redis and PostgreSQL on core 0, the worker on core 1 with
  one inference thread; the ceiling is ``session.run`` with one thread on core 1. This is how a deployment
  separates them: the relay is on a VPS.

Per layout, three phases:

1. raw: ``session.run`` on ready input tensors of the frames' shape (no decode, no network), in a child
   process on the worker's cores, before and after the run; the better of the two is the ceiling.
2. loaded: N Pro events × K uploaded 1080p moments posted at once; e2e_img_s = images / (first event
   accepted → last result stored), from the relay's own timestamps.
3. idle: single K-moment events posted one at a time; event_p50_s / event_p95_s.

``cpu_ratio`` is what ``ratio`` comes to where the cores are the limit: ``session.run``'s CPU per image over
all CPU spent per image on the worker's cores (every process when shared, the worker's when pinned); it
does not move with other load on the machine. ``worker_rss_mb`` is the worker process's peak resident
memory (its ``ru_maxrss``). The default model is
YOLOv8n built from yolov8n.yaml (random weights: speed only, insane/devkit/models.py) with a dynamic shape.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from core.settings import load_settings  # noqa: E402
from insane.devkit.loadtest import Relay, WorkerProcess, local_relay, worker_env  # noqa: E402
from insane.devkit.services import EmbeddedServices  # noqa: E402

RAW_CHILD = """
import json, sys, time, numpy as np
from core.detect import load_detector
from core.detect.preprocess import to_input
path, threads, batch, seconds, image = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
det = load_detector({"type": "onnx", "path": path, "threads": threads})
tensor = to_input([det.prepare(open(image, "rb").read()).tensor] * batch, det.dtype)
det.run(tensor)
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - t0 < seconds:
    det.run(tensor)
    n += batch
cpu_ms = 1000 * (time.process_time() - c0) / n
print(json.dumps({"raw_img_s": n / (time.perf_counter() - t0), "cpu_ms": cpu_ms, "input_shape": list(tensor.shape)}))
"""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def raw_ceiling(model: Path, image: Path, threads: int, batch: int, seconds: float, cpus: set[int] | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ORT_DISABLE_TELEMETRY="1")
    out = subprocess.run(
        [sys.executable, "-c", RAW_CHILD, str(model), str(threads), str(batch), str(seconds), str(image)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its living descendants, from /proc."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def cpu_by_role(pids: dict[str, int]) -> dict[str, float]:
    out = {role: tree_cpu_s(pid) for role, pid in pids.items() if role != "relay"}
    times = os.times()
    out["relay"] = times.user + times.system  # this process: the relay and the load it is sent
    return out


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def loaded_and_idle(relay: Relay, tenant, frames: list[bytes], args, worker: WorkerProcess, pids) -> dict:
    async def until_done(ids: list[str], limit_s: float) -> dict[str, dict]:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            status = await relay.statuses(tenant)
            if all(status.get(i) in ("done", "failed") for i in ids):
                return {i: await relay.event(tenant, i) for i in ids}
            if not worker.alive:
                raise RuntimeError("the worker exited: " + " | ".join(worker.stderr[-5:]))
            await asyncio.sleep(0.1)
        raise RuntimeError(f"events not done after {limit_s} s")

    await until_done([await relay.post(tenant, frames[:4], "warm-up")], 300)
    before = cpu_by_role(pids)
    ids = await asyncio.gather(*(relay.post(tenant, frames, "loaded") for _ in range(args.events)))
    views = await until_done(list(ids), 900)
    after = cpu_by_role(pids)
    first = min(v["created_at"] for v in views.values())
    last = max(v["done_at"] for v in views.values())
    reviewed = sum(v["k"] or 0 for v in views.values())
    idle = []
    for _ in range(args.idle_events):
        event_id = await relay.post(tenant, frames, "idle")
        view = (await until_done([event_id], 300))[event_id]
        idle.append(seconds_between(view["created_at"], view["done_at"]))
    loaded = [seconds_between(v["created_at"], v["done_at"]) for v in views.values()]
    cpu_ms = {role: round(1000 * (after[role] - before[role]) / max(reviewed, 1), 1) for role in after}
    return {
        "e2e_img_s": reviewed / seconds_between(first, last),
        "images": reviewed,
        "failed": sum(1 for v in views.values() if v["status"] != "done"),
        "event_p50_s": round(statistics.median(idle), 3) if idle else None,
        "event_p95_s": round(percentile(idle, 95), 3) if idle else None,
        "loaded_event_p50_s": round(statistics.median(loaded), 3),
        "loaded_event_p95_s": round(percentile(loaded, 95), 3),
        "loaded_cpu_ms_per_image": cpu_ms,  # by role: where the cores went while loaded
    }


async def run_layout(settings, services, admin: str, model: Path, frames, image: Path, args, layout: str) -> dict:
    threads = 1 if layout == "pinned" else args.threads
    worker_cpus = {1} if layout == "pinned" else None
    before = raw_ceiling(model, image, threads, args.batch, args.raw_seconds, worker_cpus)
    async with local_relay(settings) as url, httpx.AsyncClient(base_url=url, timeout=120) as client:
        relay = Relay(client, admin)
        tenant = await relay.tenant("pro")
        env = worker_env(url, await relay.worker_token(), model, threads, worker_batch_size=args.batch)
        worker = WorkerProcess(env, cpus=worker_cpus).start()
        try:
            pids = {"worker": worker.pid, "redis": services.servers["redis"].pid}
            pids["postgres"] = services.servers["postgres"].pid
            got = await loaded_and_idle(relay, tenant, frames, args, worker, pids)
        finally:
            await asyncio.to_thread(worker.stop)
    # The ceiling before and after the run: the machine is shared, and the better of the two is the ceiling.
    after = raw_ceiling(model, image, threads, args.batch, args.raw_seconds, worker_cpus)
    raw = max(before, after, key=lambda r: r["raw_img_s"])
    e2e = got.pop("e2e_img_s")
    cpu = got["loaded_cpu_ms_per_image"]
    spent = cpu["worker"] if layout == "pinned" else sum(cpu.values())  # on the worker's cores
    return {
        "layout": layout,
        "threads": threads,
        "input_shape": raw["input_shape"],
        "raw_img_s": round(raw["raw_img_s"], 2),
        "raw_cpu_ms_per_image": round(raw["cpu_ms"], 1),
        "e2e_img_s": round(e2e, 2),
        "ratio": round(e2e / raw["raw_img_s"], 3),
        # What the ratio comes to where the cores are the limit: session.run's CPU per image over everything
        # spent per image on the worker's cores (all of it when shared, the worker's own when pinned).
        "cpu_ratio": round(raw["cpu_ms"] / spent, 3),
        "raw_img_s_before_after": [round(before["raw_img_s"], 2), round(after["raw_img_s"], 2)],
        **got,
        "worker_rss_mb": round(worker.peak_rss_mb or 0, 1),
    }


def run(args: argparse.Namespace) -> dict:
    from insane.devkit.loadtest import camera_frames

    if args.model is None:
        from insane.devkit import models

        cache = models.test_cache()
        args.model = models.export_onnx(models.yolov8n_pt(cache), cache, 640)
    from insane.demo_media import find_photos

    frames = camera_frames(find_photos(None)[0], args.moments, (1920, 1080), quality=90)
    out: dict = {"model": Path(args.model).name, "events": args.events, "moments": args.moments}
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"insane-e2e-{os.getpid()}.jpg"
    work.write_bytes(frames[0])
    all_cpus = os.sched_getaffinity(0)
    try:
        for layout in args.layouts:
            if layout == "pinned":
                if len(all_cpus) < 2:
                    raise SystemExit("bench/e2e.py: the pinned layout needs two cores")
                os.sched_setaffinity(0, {0})  # this process and the services it starts from here on
            try:
                admin = secrets.token_urlsafe(24)
                with EmbeddedServices(durable=True) as services:
                    settings = load_settings(
                        database_url=services.database_url,
                        redis_url=services.redis_url,
                        admin_token=SecretStr(admin),
                        max_moments=64,
                        relay_port=0,
                    )
                    out[layout] = asyncio.run(
                        run_layout(settings, services, admin, Path(args.model), frames, work, args, layout)
                    )
            finally:
                os.sched_setaffinity(0, all_cpus)
    finally:
        work.unlink(missing_ok=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layouts", nargs="+", default=["shared", "pinned"], choices=["shared", "pinned"])
    p.add_argument("--events", type=int, default=6)
    p.add_argument("--moments", type=int, default=20)
    p.add_argument("--idle-events", type=int, default=5)
    p.add_argument("--model", help="a .onnx file (default: YOLOv8n, built by insane/devkit/models.py)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="the shared layout's threads")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--raw-seconds", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['model']}, {out['events']} events × {out['moments']} uploaded 1080p moments")
    for layout in args.layouts:
        r = out[layout]
        print(f"{layout}: {r['threads']} thread(s), input {r['input_shape'][2]}x{r['input_shape'][3]}")
        for key, value in r.items():
            if key not in ("layout", "threads", "input_shape"):
                print(f"  {key:<20} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
