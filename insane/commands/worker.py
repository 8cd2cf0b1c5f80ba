"""``insane worker``: the headless worker, the same engine as the tray app.

A live one-line status on a terminal (or one JSON object per second with ``--json``); SIGINT/SIGTERM
stop leasing, finish the events in flight and post their results, then exit (a second signal drops
what is held; the relay re-delivers it).

In a container (installer/worker/): ``--fetch-model`` downloads the configured model into the model folder
on first start, ``--health-file`` keeps the latest status in a file, and ``--check-health`` (the image's
HEALTHCHECK) reads it back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run the worker headless: lease events from the relay, review them, post the results",
        description="Lease events from the relay (INSANE_RELAY_URL, INSANE_WORKER_TOKEN), run the model "
        "(INSANE_MODEL) on their moments and post the verdicts. Ctrl-C finishes what it holds and exits.",
    )
    p.add_argument("--relay-url", help="override INSANE_RELAY_URL")
    p.add_argument("--model", help="override INSANE_MODEL (a name or a path to a .onnx file)")
    p.add_argument("--threads", type=int, help="override INSANE_WORKER_THREADS")
    p.add_argument("--json", action="store_true", help="print one JSON object per second instead of a status line")
    p.add_argument("--dedicated-tenant", help="the tenant id this worker is dedicated to (honours its allow-list)")
    p.add_argument(
        "--enroll",
        metavar="CODE",
        help="exchange a one-time enrollment code for this worker's token, print it and exit "
        "(then run with INSANE_WORKER_TOKEN set to it)",
    )
    p.add_argument("--name", help="the name the relay shows for this worker when enrolling (default: host name)")
    p.add_argument(
        "--fetch-model",
        action="store_true",
        help="download the configured model into INSANE_MODEL_DIR first when it is a known name not there yet",
    )
    p.add_argument("--health-file", type=Path, help="keep the latest status (JSON) in this file, about once a second")
    p.add_argument(
        "--check-health",
        type=Path,
        metavar="FILE",
        help="exit 0 when FILE (from --health-file) is fresh and the worker is neither in error nor stopped, "
        "else 1; prints why (a container's HEALTHCHECK)",
    )
    p.add_argument("--max-age", type=float, default=30.0, help="seconds --check-health accepts (default 30)")
    p.add_argument(
        "--serve-deepstack",
        metavar="[HOST:]PORT",
        help="also serve the DeepStack / CodeProject.AI detection API on this address (CodeProject.AI's port is "
        "32168; loopback unless a host is given, e.g. 0.0.0.0:32168); overrides INSANE_SERVE_DEEPSTACK",
    )
    p.set_defaults(func=worker_command, settings_overrides=_overrides)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "relay_url": args.relay_url,
        "model": args.model,
        "worker_threads": args.threads,
        "serve_deepstack": getattr(args, "serve_deepstack", None),
    }


def metrics_line(s) -> str:
    lat = s.latency_ms.get("event", {})
    depth = " ".join(f"{lane}:{n}" for lane, n in sorted(s.queue_depth.items()))
    k = " ".join(f"{lane}:{n}" for lane, n in sorted(s.k.items()))
    line = (
        f"{s.state:<8} {s.images_per_s:6.1f} img/s {s.events_per_s:5.2f} ev/s  "
        f"event p50 {lat.get('p50', 0) / 1000:.2f}s p95 {lat.get('p95', 0) / 1000:.2f}s  "
        f"batch {s.batch_size} K[{k}] queue[{depth}]  done {s.events_total} err {s.errors_total}  {s.provider}"
    )
    return f"{line}  ({s.state_detail})" if s.state_detail else line


def snapshot_json(s, lan=None) -> str:
    body = {
        "at": s.at,
        "state": str(s.state),
        "detail": s.state_detail,
        "images_per_s": round(s.images_per_s, 3),
        "events_per_s": round(s.events_per_s, 3),
        "latency_ms": s.latency_ms,
        "queue_depth": s.queue_depth,
        "batch_size": s.batch_size,
        "k": s.k,
        "provider": s.provider,
        "model": s.model,
        "threads": s.threads,
        "images_total": s.images_total,
        "events_total": s.events_total,
        "errors_total": s.errors_total,
    }
    if lan is not None:
        body["lan"] = {
            "requests_per_s": round(lan.requests_per_s, 3),
            "requests_total": lan.requests_total,
            "errors_total": lan.errors_total,
        }
    return json.dumps(body, separators=(",", ":"))


def enroll_command(args: argparse.Namespace, settings) -> int:
    import httpx

    from core.enroll import EnrollError, enroll

    async def go():
        async with httpx.AsyncClient(timeout=30) as client:
            return await enroll(client, settings.relay_url, args.enroll, args.name)

    try:
        reply = asyncio.run(go())
    except EnrollError as exc:
        print(f"insane worker: {exc}", file=sys.stderr)
        return 2
    print(f"enrolled with {settings.relay_url} as worker {reply.worker_id}", file=sys.stderr)
    if reply.dedicated_tenant:
        print(
            f"dedicated to tenant {reply.dedicated_tenant}: run with --dedicated-tenant {reply.dedicated_tenant} "
            f"(or set INSANE_WORKER_DEDICATED_TENANT={reply.dedicated_tenant})",
            file=sys.stderr,
        )
    print("keep this token secret; the relay shows it only once:", file=sys.stderr)
    print(reply.token)
    return 0


HEALTHY = {"starting", "idle", "running", "paused"}


def check_health(path: Path, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) from a --health-file."""
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"no status in {path} yet"
    except (OSError, ValueError) as exc:
        return False, f"cannot read {path}: {exc}"
    try:
        age = (time.time() if now is None else now) - float(body["at"])
    except (TypeError, KeyError, ValueError):
        return False, f"{path} is not a worker status (no numeric 'at')"
    state = str(body.get("state", "?"))
    if age > max_age_s:
        return False, f"status is {age:.0f} s old (the worker is stuck or gone; last state {state})"
    if state not in HEALTHY:
        return False, f"{state}: {body.get('detail') or 'no detail'}"
    return True, f"{state}, {body.get('images_per_s', 0)} img/s on {body.get('provider', '?')}"


def write_health(path: Path, line: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(line)
    os.replace(part, path)  # a reader sees the old status or the new one, never half


def worker_command(args: argparse.Namespace, settings) -> int:
    from uuid import UUID

    if args.check_health:
        healthy, why = check_health(args.check_health, args.max_age)
        print(why)
        return 0 if healthy else 1
    if args.enroll:
        return enroll_command(args, settings)
    from core.detect import DetectorError
    from core.detect.download import DownloadError
    from core.worker import WorkerSetupError, build_worker

    try:
        if args.fetch_model:
            from core.detect.firststart import ensure_model

            ensure_model(settings)
        dedicated = UUID(args.dedicated_tenant) if args.dedicated_tenant else None
        worker = build_worker(settings, dedicated_tenant=dedicated)
    except (WorkerSetupError, DetectorError, DownloadError, ValueError) as exc:
        print(f"insane worker: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(worker, as_json=args.json, health_file=args.health_file, settings=settings))


async def _start_lan(worker, settings):
    """The DeepStack API beside the worker; None (and the worker stopped) when it cannot start."""
    from core.lan.server import LanConfig, LanError, LanServer

    lan = LanServer(worker, LanConfig.from_settings(settings))
    try:
        await lan.start()
    except LanError as exc:
        print(f"insane worker: {exc}", file=sys.stderr)
        return None
    print(f"DeepStack / CodeProject.AI API on {lan.url}/v1/vision/detection", file=sys.stderr)
    return lan


async def _run(worker, as_json: bool, health_file: Path | None = None, settings=None) -> int:
    loop = asyncio.get_running_loop()
    tty = sys.stdout.isatty() and not as_json
    signals = 0
    stopping: list[asyncio.Task] = []
    running = asyncio.create_task(worker.run(), name="worker")
    lan = None
    if settings is not None and settings.serve_deepstack:
        lan = await _start_lan(worker, settings)
        if lan is None:
            await worker.stop(drain=False)
            await running
            return 2

    async def stop(drain: bool) -> None:
        if lan is not None:
            await lan.stop()  # first: no new LAN request may reach a stopping worker
        await worker.stop(drain=drain)

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        log.info("stopping (%s)", "dropping what is held" if signals > 1 else "finishing what is held")
        stopping.append(loop.create_task(stop(drain=signals == 1)))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    def show(snap) -> None:
        if health_file is not None:
            try:
                write_health(health_file, snapshot_json(snap))
            except OSError as exc:
                log.warning("cannot write the health file %s: %s", health_file, exc)
        lan_stats = lan.stats() if lan is not None else None
        if as_json:
            print(snapshot_json(snap, lan_stats), flush=True)
        elif tty:
            line = metrics_line(snap) + (f"  LAN {lan_stats.requests_per_s:.1f} req/s" if lan_stats else "")
            print("\r\x1b[2K" + line[:200], end="", flush=True)

    worker.subscribe(show)
    await running
    if tty:
        print()
    snap = worker.snapshot()
    if not as_json:
        print(f"stopped: {snap.events_total} events, {snap.images_total} images, {snap.errors_total} moment errors")
    return 0
