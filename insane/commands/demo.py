"""``insane demo``: the product's main job on embedded defaults, start to finish, on this machine.

Throwaway Redis and PostgreSQL (fsync on, as deployed), the relay on loopback, a Guardian tenant that
uploads its moments (reviewed by the operator's shared worker) and a Pro tenant whose camera serves them
over HTTP on its own network (reviewed only by its own PC, its routing being ``own``); real photos in,
verdicts and measured figures out; then everything it started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run everything on this machine: throwaway Redis and PostgreSQL, a relay, workers, real events",
        description="Start throwaway Redis and PostgreSQL, a relay on loopback, a Guardian tenant served by a shared "
        "worker and a Pro tenant served only by its own PC; post events made from real photos (uploads, and URLs "
        "served by a local camera server), show them being reviewed, print the verdicts and the measured figures, "
        "then stop everything.",
    )
    p.add_argument("--events", type=int, default=3, metavar="N", help="events per tenant (default 3)")
    p.add_argument("--moments", type=int, default=24, metavar="M", help="moments per event (default 24)")
    p.add_argument("--photos", type=Path, metavar="DIR", help="a folder of JPEG photos to make the events from")
    p.add_argument("--model", help="override INSANE_MODEL (a name from `insane model list` or a .onnx path)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object at the end")
    p.set_defaults(func=demo_command, settings_overrides=lambda a: {"model": a.model})


@dataclass
class Posted:
    tenant: str
    tier: str
    source: str  # "upload" or "url"
    photo: str
    moments: int
    id: str | None = None
    refused: str | None = None
    view: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.view.get("status") in ("done", "failed")

    @property
    def latency_s(self) -> float:
        start, end = self.view.get("created_at"), self.view.get("done_at")
        if not (start and end):
            return float("nan")
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def demo_command(args: argparse.Namespace, settings) -> int:
    from insane.demo_media import DemoError, demo_model, find_photos
    from insane.devkit.services import EmbeddedServices, ServiceError  # the relay and worker never load the kit

    if not 1 <= args.events <= 50 or not 1 <= args.moments <= settings.max_moments:
        print(f"insane demo: --events takes 1 to 50, --moments 1 to {settings.max_moments}", file=sys.stderr)
        return 2
    try:
        photos = find_photos(args.photos)
        model_path, model_name, notes = demo_model(settings)
    except DemoError as exc:
        print(f"insane demo: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}")
    print(f"model:    {model_name} ({model_path})")
    print(f"photos:   {', '.join(p.name for p in photos)}")
    try:
        with EmbeddedServices(durable=True) as services:
            print(f"redis:    {services.redis_url}")
            print(f"postgres: {services.database_url}")
            demo_settings = settings.model_copy(
                update={
                    "database_url": services.database_url,
                    "redis_url": services.redis_url,
                    "model": model_name,
                    "admin_token": _secret(secrets.token_urlsafe(24)),
                }
            )
            return asyncio.run(_run(demo_settings, args, photos))
    except ServiceError as exc:
        print(f"insane demo: {exc}", file=sys.stderr)
        return 1


def _secret(value: str):
    from pydantic import SecretStr

    return SecretStr(value)


async def _run(settings, args: argparse.Namespace, photos: list[Path]) -> int:
    from insane.devkit.camera import ImageServer
    from insane.devkit.relay import RelayServer, RelayStartError
    from relay.db import migrate

    await migrate(settings.database_url)
    try:
        # The relay is served by this loop, beside the worker: one process, as on a small machine.
        async with RelayServer(settings) as relay:
            print(f"relay:    {relay.url}")
            with ImageServer() as camera:
                # Short long-polls: the worker notices the end of the demo at once.
                worker_settings = settings.model_copy(update={"relay_url": relay.url, "worker_lease_wait_s": 2.0})
                return await _review(relay.url, worker_settings, args, photos, camera)
    except RelayStartError:
        print("insane demo: the relay did not start (see the log above)", file=sys.stderr)
        return 1


def _tenants_and_workers(url: str, admin_token: str, camera_host: str):
    """A Guardian tenant that uploads, a Pro tenant whose camera is on its LAN and its own PC, and the
    operator's shared worker."""
    from insane.devkit.client import allow_private_hosts, enroll_worker, make_tenant

    home = make_tenant(url, "home", "guardian", admin_token)
    shop = make_tenant(url, "shop", "pro", admin_token)
    # The shop's camera serves its snapshots on the local network: only a worker dedicated to the shop may
    # fetch from a private address, and only from the hosts on the shop's allow-list. With a worker of its
    # own, its routing is `own`: its pictures go to that PC and nowhere else.
    allow_private_hosts(url, shop.id, [camera_host], admin_token)
    shop_pc = enroll_worker(url, shop.id, "shop-pc", admin_token)
    return home, shop, shop_pc, enroll_worker(url, None, "shared-1", admin_token)


async def _review(url: str, settings, args, photos: list[Path], camera) -> int:
    from core.detect import DetectorError
    from core.worker import WorkerSetupError, build_worker
    from insane.demo_media import moments_from_photo

    # The admin calls block: a thread of their own, so that this loop goes on serving the relay meanwhile.
    token = settings.admin_token.get_secret_value()
    home, shop, shop_pc, shared = await asyncio.to_thread(_tenants_and_workers, url, token, camera.host)
    print("tenants:  home (guardian, uploads, the shared pool), shop (pro, camera URLs, only its own PC)")

    # Two workers on one machine: each gets half of its threads.
    half = settings.model_copy(update={"worker_threads": max(1, settings.worker_threads // 2)})
    workers = []
    try:
        workers.append(build_worker(half, token=shop_pc.secret, dedicated_tenant=uuid.UUID(shop.id)))
        workers.append(build_worker(half, token=shared.secret))
    except (WorkerSetupError, DetectorError) as exc:
        for worker in workers:
            await worker.stop(drain=False)
        print(f"insane demo: {exc}", file=sys.stderr)
        return 1
    for name, worker in zip(("shop-pc", "shared-1"), workers, strict=True):
        snap = worker.snapshot()
        threads = f"{snap.threads} thread" + ("" if snap.threads == 1 else "s")
        print(f"worker:   {name}: {snap.model} on {snap.provider}, {threads}")
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            frames = {p: await asyncio.to_thread(moments_from_photo, p, args.moments) for p in photos}
            posted: list[Posted] = []
            started = time.perf_counter()
            for i in range(args.events):
                photo = photos[i % len(photos)]
                posted.append(await _post_upload(client, home, photo, frames[photo]))
                photo = photos[(i + 1) % len(photos)]
                posted.append(await _post_urls(client, shop, photo, frames[photo], camera, i))
            accepted = [p for p in posted if p.id]
            images = sum(p.moments for p in accepted)
            print(f"posted:   {len(accepted)} events, {images} moments; reviewing…")
            await _follow(client, accepted, workers, {"home": home, "shop": shop})
            elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            await worker.stop(drain=True)
        await asyncio.gather(*tasks)
    _print_table(posted)
    figures = _figures(accepted, images, elapsed, [w.snapshot() for w in workers])
    _print_figures(figures)
    if args.json:
        print(json.dumps({"figures": figures, "events": [_event_json(p) for p in posted]}))
    return 0 if accepted and all(p.view.get("status") == "done" for p in accepted) else 1


def _event(camera: str, photo: Path) -> dict[str, Any]:
    return {"camera": camera, "time": datetime.now(UTC).isoformat(), "hint": f"motion ({photo.name})"}


async def _post_upload(client: httpx.AsyncClient, tenant, photo: Path, frames: list[bytes]) -> Posted:
    from insane.devkit.client import event_request

    r = await client.post("/v1/events", **event_request(_event("front-door", photo), frames), headers=tenant.headers)
    return _accepted(r, Posted("home", "guardian", "upload", photo.name, len(frames)))


async def _post_urls(client: httpx.AsyncClient, tenant, photo: Path, frames: list[bytes], camera, n: int) -> Posted:
    from insane.devkit.client import event_request

    moments = [camera.add(f"yard/{n}/{i}.jpg", data) for i, data in enumerate(frames)]
    body = {**_event("yard", photo), "moments": moments}
    r = await client.post("/v1/events", **event_request(body), headers=tenant.headers)
    return _accepted(r, Posted("shop", "pro", "url", photo.name, len(frames)))


def _accepted(r: httpx.Response, posted: Posted) -> Posted:
    if r.status_code == 202:
        posted.id = r.json()["id"]
    else:
        problem = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        posted.refused = f"{r.status_code} {problem.get('detail') or problem.get('title') or r.text[:80]}"
        print(f"refused:  {posted.tenant} ({posted.tier}): {posted.refused}")
    return posted


async def _follow(
    client: httpx.AsyncClient, events: list[Posted], workers, tenants: dict[str, Any], timeout_s: float = 900.0
) -> None:
    """Poll each event until it has a result; one line per finished event, a live status line on a terminal."""
    from insane.commands.worker import metrics_line
    from insane.devkit.client import follow_events

    tty = sys.stdout.isatty()
    by_id = {p.id: p for p in events}

    def show_status() -> None:
        if tty:
            line = " | ".join(metrics_line(w.snapshot())[:78] for w in workers)
            print("\r\x1b[2K" + line[:160], end="", flush=True)

    following = {p.id: tenants[p.tenant] for p in events if p.id is not None}
    async for event_id, view in follow_events(client, following, timeout_s, every_s=0.25, tick=show_status):
        p = by_id[event_id]
        p.view = view
        line = f"done:     {p.tenant:<5} {p.source:<6} {p.photo:<12} {p.latency_s:5.1f} s  {_verdict(p)}"
        print(("\r\x1b[2K" if tty else "") + line)
    if tty:
        print("\r\x1b[2K", end="")
    for p in events:
        if not p.done:
            print(f"timeout:  event {p.id} still {p.view.get('status', 'queued')} after {timeout_s:.0f} s")


def _verdict(p: Posted) -> str:
    if p.view.get("status") == "failed":
        return f"failed: {p.view.get('error')}"
    verdict = p.view.get("verdict") or []
    if not verdict:
        return "nothing found"
    k = p.view.get("k")
    return ", ".join(
        f"{v['label']} in {v['moments']}/{k} (best {v['best']:.2f}, median {v['median']:.2f})" for v in verdict
    )


def _print_table(posted: list[Posted]) -> None:
    print()
    print(f"{'event':<9} {'tenant':<16} {'moments':<8} {'from':<17} {'latency':>8}  verdict")
    for p in posted:
        ident = p.id[:8] if p.id else "-"
        errors = sum(1 for m in p.view.get("moments", []) if m.get("error"))
        latency = f"{p.latency_s:.1f} s" if p.done else "-"
        verdict = p.refused or _verdict(p)
        if errors:
            verdict += f"  ({errors} moments failed)"
        print(
            f"{ident:<9} {p.tenant + ' (' + p.tier + ')':<16} {p.moments:<8} {p.source + ' ' + p.photo:<17.17} "
            f"{latency:>8}  {verdict}"
        )


def _figures(events: list[Posted], images: int, elapsed: float, snaps: list) -> dict[str, Any]:
    lat = sorted(p.latency_s for p in events if p.done)
    reviewed = sum(p.view.get("k") or 0 for p in events)
    return {
        "events": len(events),
        "moments_posted": images,
        "moments_reviewed": reviewed,
        "wall_s": round(elapsed, 2),
        "images_per_s": round(reviewed / elapsed, 2) if elapsed else 0.0,
        "event_p50_s": round(statistics.median(lat), 2) if lat else None,
        "event_p95_s": round(_p95(lat), 2) if lat else None,
        "model": snaps[0].model,
        "provider": snaps[0].provider,
        "threads": sum(s.threads for s in snaps),
        "workers": len(snaps),
    }


def _p95(values: list[float]) -> float:
    return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]


def _print_figures(f: dict[str, Any]) -> None:
    print()
    print(
        f"reviewed {f['moments_reviewed']} of {f['moments_posted']} moments in {f['events']} events "
        f"in {f['wall_s']:.1f} s: {f['images_per_s']:.1f} images/s on {f['provider']} ({f['workers']} workers, "
        f"{f['threads']} threads in all, {f['model']})"
    )
    if f["event_p50_s"] is not None:
        print(f"event latency, post to stored result: p50 {f['event_p50_s']:.1f} s, p95 {f['event_p95_s']:.1f} s")


def _event_json(p: Posted) -> dict[str, Any]:
    return {
        "id": p.id,
        "tenant": p.tenant,
        "tier": p.tier,
        "source": p.source,
        "photo": p.photo,
        "moments": p.moments,
        "refused": p.refused,
        "status": p.view.get("status"),
        "k": p.view.get("k"),
        "latency_s": round(p.latency_s, 3) if p.done else None,
        "verdict": p.view.get("verdict"),
    }
