"""Deep reviews through a real relay to one worker process: ``insane bench --jobs 50`` and ``bench/jobs50.py``.

    runs = jobs_bench(settings, model_path, jobs=50, moments=20, rate=0.75, surges=(1, 3))
    runs[0]["wall_s"], runs[0]["images_per_s"], runs[0]["lanes"]["pro"]["p95_s"], runs[1]["k_timeline"]

Throwaway Redis and PostgreSQL (fsync and synchronous commit on, as deployed), the relay on loopback in this
process, and ``insane worker --json`` in a child process, as a user runs it. Half the events are Pro (a
16:9 camera), half Guardian (a 4:3 doorbell, five tenants: five deep reviews a day each); each uploads its
moments. Events arrive at ``rate`` per second, times each surge. The worker's one-line JSON snapshots give K
per lane over time; the relay's own timestamps give each event's latency, from accepted to result stored.

:class:`WorkerProcess` is also what ``bench/e2e.py`` runs its worker in (pinned to a core, peak RSS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

LANES = ("pro", "standard")
CAMERAS = {"pro": (1920, 1080), "standard": (1440, 1080)}  # a 16:9 camera and a 4:3 doorbell


class LoadTestError(Exception):
    """The run could not be set up or did not finish; ``str()`` says why."""


def camera_frames(photo: Path, count: int, size: tuple[int, int], quality: int = 85) -> list[bytes]:
    """``count`` JPEG frames of ``size`` from one photo: the view drifts across it as a camera's would."""
    import cv2
    import numpy as np

    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise LoadTestError(f"{photo}: not a readable image")
    w, h = size
    ih, iw = image.shape[:2]
    scale = min(iw / w, ih / h) * 0.85  # a crop of the frame's aspect, 85% of the photo's largest
    cw, ch = int(w * scale), int(h * scale)
    frames = []
    for i in range(count):
        t = i / max(count - 1, 1)
        x, y = int((iw - cw) * t), int((ih - ch) * (0.5 + 0.5 * np.sin(2 * np.pi * t)))
        crop = cv2.resize(image[y : y + ch, x : x + cw], size, interpolation=cv2.INTER_LINEAR)
        frames.append(cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    return frames


class WorkerProcess:
    """``insane worker --json`` as a child process: its snapshots as they come, its peak RSS when it ends."""

    def __init__(self, env: dict[str, str], cpus: set[int] | None = None) -> None:
        self.env = env
        self.cpus = cpus
        self.snapshots: list[tuple[float, dict[str, Any]]] = []  # (time.time(), snapshot)
        self.stderr: list[str] = []
        self.peak_rss_mb: float | None = None
        self.returncode: int | None = None
        self._proc: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []

    def start(self) -> WorkerProcess:
        cpus = self.cpus
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "insane", "worker", "--json"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        for stream, sink in ((self._proc.stdout, self._snapshot), (self._proc.stderr, self.stderr.append)):
            reader = threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def _read(self, stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def _snapshot(self, line: str) -> None:
        with contextlib.suppress(ValueError):
            self.snapshots.append((time.time(), json.loads(line)))

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 120.0) -> int:
        """SIGINT (finish what it holds, post it, exit), then reap it and read its peak RSS."""
        proc = self._proc
        if proc is None or self.returncode is not None:
            return self.returncode or 0
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
        # ru_maxrss is kilobytes on Linux, bytes on macOS.
        self.peak_rss_mb = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
        self.returncode = os.waitstatus_to_exitcode(status)
        proc.returncode = self.returncode
        for reader in self._readers:
            reader.join(5)
        return self.returncode


@contextlib.asynccontextmanager
async def local_relay(settings) -> AsyncIterator[str]:
    """The relay under uvicorn on this event loop, on a free loopback port; yields its URL."""
    import uvicorn

    from relay.app import create_app
    from relay.db import migrate
    from relay.server import DrainingServer

    await migrate(settings.database_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY on accept
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(settings), log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = DrainingServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                raise LoadTestError("the relay did not start (see the log)")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Relay:
    """The bench's calls to the relay: admin setup, posting uploads, reading events back."""

    def __init__(self, client: httpx.AsyncClient, admin_token: str) -> None:
        self.client = client
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.client.request(method, path, **kw)
        if r.status_code >= 400:
            raise LoadTestError(f"{method} {path}: {r.status_code} {r.text[:200]}")
        return r.json()

    async def tenant(self, tier: str) -> dict[str, str]:
        body = {"name": f"bench-{tier}-{uuid.uuid4().hex[:6]}", "tier": tier}
        made = await self._json("POST", "/admin/tenants", json=body, headers=self.admin)
        return {"id": made["id"], "auth": f"Bearer {made['api_key']}", "tier": tier}

    async def worker_token(self) -> str:
        code = await self._json("POST", "/admin/enroll-codes", json={"tenant": None}, headers=self.admin)
        return (await self._json("POST", "/v1/workers/enroll", json={"code": code["code"], "name": "bench"}))["token"]

    async def post(self, tenant: dict[str, str], frames: list[bytes], camera: str) -> str:
        event = {"camera": camera, "time": datetime.now(UTC).isoformat()}
        files: list[tuple[str, tuple[str | None, str | bytes, str]]] = [
            ("event", (None, json.dumps(event), "application/json"))
        ]
        files += [("moment", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(frames)]
        return (await self._json("POST", "/v1/events", files=files, headers={"Authorization": tenant["auth"]}))["id"]

    async def statuses(self, tenant: dict[str, str]) -> dict[str, str]:
        got = await self._json("GET", "/v1/events?limit=200", headers={"Authorization": tenant["auth"]})
        return {e["id"]: e["status"] for e in got["events"]}

    async def event(self, tenant: dict[str, str], event_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/events/{event_id}", headers={"Authorization": tenant["auth"]})


def worker_env(relay_url: str, token: str, model: Path, threads: int, **settings: Any) -> dict[str, str]:
    """The environment of ``insane worker`` for a bench: this checkout's code, these settings, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSANE_")}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.update(
        INSANE_RELAY_URL=relay_url,
        INSANE_WORKER_TOKEN=token,
        INSANE_MODEL=str(model),
        INSANE_WORKER_THREADS=str(threads),
        INSANE_WORKER_LEASE_WAIT_S="2",
        INSANE_LOG_LEVEL="WARNING",
        ORT_DISABLE_TELEMETRY="1",
    )
    env.update({f"INSANE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 2)


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def deep_reviews(
    relay: Relay,
    relay_url: str,
    model: Path,
    frames: dict[str, list[bytes]],
    *,
    jobs: int,
    rate: float,
    threads: int,
    drain_target_s: float,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """One run: ``jobs`` events (Pro and Guardian in turn) arriving at ``rate`` per second, one fresh worker."""
    pro = [await relay.tenant("pro") for _ in range(2)]
    guardian = [await relay.tenant("guardian") for _ in range(-(-jobs // 2 // 5))]  # 5 deep reviews a day each
    env = worker_env(relay_url, await relay.worker_token(), model, threads, worker_drain_target_s=drain_target_s)
    worker = WorkerProcess(env).start()
    posted: dict[str, tuple[dict[str, str], str]] = {}  # event id -> (tenant, lane)
    try:
        await _wait_ready(worker)
        t0 = time.time()
        tasks = []
        for i in range(jobs):
            lane = "pro" if i % 2 == 0 else "standard"
            tenant = pro[i // 2 % len(pro)] if lane == "pro" else guardian[i // 2 // 5]
            delay = t0 + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(relay, tenant, frames[lane], lane, posted)))
        await asyncio.gather(*tasks)
        await _wait_done(relay, posted, worker, timeout_s)
    finally:
        await asyncio.to_thread(worker.stop)
    views = [(lane, await relay.event(tenant, eid)) for eid, (tenant, lane) in posted.items()]
    return _figures(views, worker, t0, jobs, rate, drain_target_s, model)


async def _wait_ready(worker: WorkerProcess, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(s.get("state") in ("idle", "running") for _, s in worker.snapshots):
        if not worker.alive or time.monotonic() > deadline:
            raise LoadTestError("the worker did not start: " + " | ".join(worker.stderr[-5:]))
        await asyncio.sleep(0.1)


async def _post(relay: Relay, tenant, frames: list[bytes], lane: str, posted: dict) -> None:
    event_id = await relay.post(tenant, frames, f"{lane}-camera")
    posted[event_id] = (tenant, lane)


async def _wait_done(relay: Relay, posted: dict, worker: WorkerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    tenants = {t["id"]: t for t, _ in posted.values()}
    while time.monotonic() < deadline:
        status: dict[str, str] = {}
        for tenant in tenants.values():
            status.update(await relay.statuses(tenant))
        if all(status.get(eid) in ("done", "failed") for eid in posted):
            return
        if not worker.alive:
            raise LoadTestError("the worker exited: " + " | ".join(worker.stderr[-5:]))
        await asyncio.sleep(0.5)
    raise LoadTestError(f"events still not done after {timeout_s:.0f} s")


def _figures(views, worker: WorkerProcess, t0: float, jobs: int, rate: float, drain: float, model: Path) -> dict:
    first = min(v["created_at"] for _, v in views)
    last = max(v["done_at"] for _, v in views if v.get("done_at"))
    wall = _seconds(first, last)
    reviewed = sum(sum(1 for m in v["moments"] if m["reviewed"]) for _, v in views)
    lanes = {}
    for lane in LANES:
        mine = [v for ln, v in views if ln == lane]
        lat = [_seconds(v["created_at"], v["done_at"]) for v in mine if v.get("done_at")]
        lanes[lane] = {
            "events": len(mine),
            "failed": sum(1 for v in mine if v["status"] != "done"),
            "p50_s": _p(lat, 50),
            "p95_s": _p(lat, 95),
            "k_min": min((v["k"] or 0 for v in mine), default=None),
        }
    timeline: list[dict[str, Any]] = []
    for at, snap in worker.snapshots:
        if at < t0 - 1:
            continue
        row = {"t": round(at - t0, 1), "k": snap.get("k", {}), "queue": snap.get("queue_depth", {})}
        row["images"] = snap.get("images_total", 0)
        if not timeline or (row["k"], row["queue"]) != (timeline[-1]["k"], timeline[-1]["queue"]):
            timeline.append(row)
    shrunk = {lane: _first_shrunk(timeline, lane) for lane in LANES}
    return {
        "model": model.name,
        "jobs": jobs,
        "moments_per_job": len(views[0][1]["moments"]) if views else 0,
        "arrival_events_per_s": rate,
        "drain_target_s": drain,
        "images_reviewed": reviewed,
        "wall_s": round(wall, 1),
        "images_per_s": round(reviewed / wall, 2) if wall else 0.0,
        "lanes": lanes,
        "k_first_shrunk_s": shrunk,
        "k_timeline": timeline,
        "worker_rss_mb": round(worker.peak_rss_mb or 0, 1),
    }


def _first_shrunk(timeline: list[dict], lane: str) -> float | None:
    """Seconds into the run when K of ``lane`` first fell below its largest value, or None."""
    top = max((r["k"].get(lane, 0) for r in timeline), default=0)
    return next((r["t"] for r in timeline if r["k"].get(lane, 0) < top), None)


def jobs_bench(
    settings,
    model: Path,
    *,
    jobs: int = 50,
    moments: int = 20,
    rate: float = 0.75,
    surges: tuple[float, ...] = (1.0, 3.0),
    threads: int | None = None,
    drain_target_s: float = 10.0,
    photos: list[Path] | None = None,
) -> list[dict[str, Any]]:
    """Each surge is one run of ``jobs`` deep reviews at ``rate × surge`` events per second."""
    from insane.demo_media import find_photos
    from insane.devkit.services import EmbeddedServices

    photo = (photos or find_photos(None))[0]
    frames = {lane: camera_frames(photo, moments, CAMERAS[lane]) for lane in LANES}
    admin = secrets.token_urlsafe(24)
    with EmbeddedServices(durable=True) as services:
        relay_settings = settings.model_copy(
            update={"database_url": services.database_url, "redis_url": services.redis_url, "admin_token": admin}
        )
        return asyncio.run(_runs(relay_settings, admin, model, frames, jobs, rate, surges, threads, drain_target_s))


async def _runs(settings, admin, model, frames, jobs, rate, surges, threads, drain) -> list[dict[str, Any]]:
    from pydantic import SecretStr

    settings = settings.model_copy(update={"admin_token": SecretStr(admin)})
    runs = []
    async with local_relay(settings) as url, httpx.AsyncClient(base_url=url, timeout=120) as client:
        relay = Relay(client, admin)
        for surge in surges:
            run = await deep_reviews(
                relay,
                url,
                model,
                frames,
                jobs=jobs,
                rate=rate * surge,
                threads=threads or os.cpu_count() or 1,
                drain_target_s=drain,
            )
            run["surge"] = surge
            runs.append(run)
    return runs


def summary_lines(run: dict[str, Any]) -> list[str]:
    """A run as a few lines of text."""
    lines = [
        f"{run['jobs']} deep reviews × {run['moments_per_job']} moments at {run['arrival_events_per_s']:.2f} "
        f"events/s (×{run['surge']:g}), {run['model']}: {run['images_reviewed']} images in {run['wall_s']} s, "
        f"{run['images_per_s']} img/s, worker peak RSS {run['worker_rss_mb']} MB"
    ]
    for lane, f in run["lanes"].items():
        shrunk = run["k_first_shrunk_s"][lane]
        lines.append(
            f"  {lane:<8} {f['events']} events, latency p50 {f['p50_s']} s p95 {f['p95_s']} s, smallest K "
            f"{f['k_min']}" + (f", K first shrunk at {shrunk} s" if shrunk is not None else ", K never shrunk")
        )
    step = max(1, len(run["k_timeline"]) // 12)
    for row in run["k_timeline"][::step]:
        k = " ".join(f"{lane}:{row['k'].get(lane)}" for lane in LANES)
        q = " ".join(f"{lane}:{row['queue'].get(lane)}" for lane in LANES)
        lines.append(f"    t={row['t']:6.1f} s  K[{k}]  queue[{q}]  images {row['images']}")
    return lines
