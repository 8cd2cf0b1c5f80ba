"""The relay's hot paths: events POST against a bare endpoint, and the worker API and uploads against af2ffdb.

    python bench/relay.py                 # a table of every phase
    python bench/relay.py --json          # one JSON object: events_s, bare_s, p50_ms, ..., worker, uploads
    python bench/relay.py --phases worker,uploads --repeat 3 --baseline af2ffdb

Production settings: PostgreSQL with fsync and synchronous_commit on, Redis with AOF every second
(EmbeddedServices(durable=True)); auth, validation, quota checks and the XADD all in place. Every server
runs as `uvicorn` (uvloop + httptools, one process) in a child process; the load comes from a small
keep-alive HTTP/1.1 client in this process with a fixed number of connections. Each phase is bounded by
a request count and a time limit, and the whole run stops by itself.

Phases:
- ``events``: POST /v1/events (JSON, URL moments) against a bare Starlette endpoint on the same stack.
- ``worker``: lease + result round trips (one event each, no waiting) by ``--workers`` workers over a
  queue filled beforehand, for this checkout's relay and the ``--baseline`` commit's (checked out into a
  temporary git worktree, on its own database and Redis db). This checkout's round trip includes the
  delivery record (Redis set + ``results.delivered_to``).
- ``uploads``: multipart events of ``--upload-moments`` camera JPEGs, this checkout (bytes durable in
  PostgreSQL before the 202) against the baseline (bytes in Redis only).
``--repeat`` runs the worker and uploads phases that many times, alternating the two relays, and reports
medians. A phase with errors fails the run (exit 1) after the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from insane.devkit.procs import start_listening, stop  # noqa: E402

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
import json, uuid

async def post(request):
    body = json.loads(await request.body())
    return JSONResponse({"id": str(uuid.uuid4()), "status": "queued", "n": len(body["moments"])}, status_code=202)

app = Starlette(routes=[Route("/v1/events", post, methods=["POST"])])
"""


def body_bytes(moments: int) -> bytes:
    return json.dumps(
        {
            "camera": "front-door",
            "time": datetime.now(UTC).isoformat(),
            "hint": "person",
            "moments": [
                f"https://nvr.example.com/api/events/{uuid.uuid4().hex}/snapshot-{i}.jpg" for i in range(moments)
            ],
        }
    ).encode()


def request_bytes(host: str, port: int, key: str | None, body: bytes) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def load(
    host: str, port: int, key: str | None, connections: int, total: int, limit_s: float, moments: int
) -> dict:
    """``total`` requests over ``connections`` keep-alive connections, or until ``limit_s``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = [total]
    deadline = time.perf_counter() + limit_s
    payloads = [request_bytes(host, port, key, body_bytes(moments)) for _ in range(64)]

    async def one_connection(n: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            i = n
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                i += 1
                start = time.perf_counter()
                writer.write(payloads[i % len(payloads)])
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection(n) for n in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    ok = sum(c for s, c in statuses.items() if s in (200, 202))
    return {
        "requests": len(latencies),
        "ok": ok,
        "statuses": statuses,
        "seconds": round(elapsed, 2),
        "rps": round(ok / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2) if latencies else None,
    }


def serve_bare() -> None:
    """Child mode: the bare endpoint under the same uvicorn settings as `insane relay`."""
    import socket

    import uvicorn

    namespace: dict = {}
    exec(compile(BARE_APP, "bare_app", "exec"), namespace)  # our own constant source
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"bare listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(namespace["app"], log_config=None, access_log=False)).run(sockets=[sock])


async def setup_tenant(database_url: str) -> None:
    import asyncpg

    from relay.db import migrate

    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        # A tier without a daily quota or bucket, so every post is stored and queued.
        await conn.execute(
            "INSERT INTO tiers (name, lane, daily_deep_reviews, deep_min_moments, rate_per_s, burst, "
            "max_k) VALUES ('bench', 'standard', NULL, 20, NULL, 1, 20) ON CONFLICT DO NOTHING"
        )
    finally:
        await conn.close()


async def analyze(database_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


BASELINE = "af2ffdb"  # the last commit with shared lane streams and Redis-only uploads
PHASES = ("events", "worker", "uploads")


async def bench_tier(database_url: str) -> None:
    """A tier without a daily quota or bucket, so every post is stored and queued (on a relay's own database)."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO tiers (name, lane, daily_deep_reviews, deep_min_moments, rate_per_s, burst, "
            "max_k) VALUES ('bench', 'standard', NULL, 20, NULL, 1, 20) ON CONFLICT DO NOTHING"
        )
    finally:
        await conn.close()


async def _admin(conn, path: str, body: dict, auth: str | None) -> dict:
    status, raw = await conn.request("POST", path, json_body=body, auth=auth)
    if status >= 300:
        raise RuntimeError(f"POST {path}: {status} {raw[:200]!r}")
    return json.loads(raw)


async def tenants_and_workers(url: str, tenants: int, workers: int) -> tuple[list[str], list[str]]:
    """API keys of ``tenants`` bench-tier tenants and tokens of ``workers`` shared workers."""
    from insane.devkit.client import ADMIN_TOKEN
    from insane.devkit.rawhttp import Connection

    conn = await Connection.open(url)
    try:
        keys, tokens = [], []
        for i in range(tenants):
            made = await _admin(conn, "/admin/tenants", {"name": f"bench-{i}", "tier": "bench"}, ADMIN_TOKEN)
            keys.append(made["api_key"])
        for i in range(workers):
            code = await _admin(conn, "/admin/enroll-codes", {"tenant": None}, ADMIN_TOKEN)
            enrolled = await _admin(conn, "/v1/workers/enroll", {"code": code["code"], "name": f"w{i}"}, None)
            tokens.append(enrolled["token"])
        return keys, tokens
    finally:
        await conn.close()


def _summary(latencies: list[float], ok: int, elapsed: float, errors: dict[int, int]) -> dict:
    from insane.devkit.rawhttp import percentile

    def ms(q: float) -> float | None:
        value = percentile(latencies, q)
        return None if value is None else round(value * 1000, 2)

    return {
        "per_s": round(ok / elapsed, 1) if elapsed else 0.0,
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "ok": ok,
        "errors": errors,
        "seconds": round(elapsed, 2),
    }


async def _fill(url: str, keys: list[str], events: int, connections: int) -> int:
    """``events`` JSON events of 3 URL moments, spread over the tenants; returns how many were accepted."""
    from insane.devkit.rawhttp import Connection

    remaining, accepted = [events], [0]

    async def one(n: int) -> None:
        conn = await Connection.open(url)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                key = keys[remaining[0] % len(keys)]
                status, _ = await conn.request(
                    "POST", "/v1/events", body=body_bytes(3), content_type="application/json", auth=key
                )
                accepted[0] += status in (200, 201, 202)
        finally:
            await conn.close()

    await asyncio.gather(*(one(n) for n in range(connections)))
    return accepted[0]


async def worker_phase(relay, args) -> dict:
    """Lease + result round trips (one event each, ``wait_s`` 0) by ``args.workers`` workers over a full queue."""
    from insane.devkit.client import result_for
    from insane.devkit.rawhttp import Connection

    await bench_tier(relay.database_url)
    keys, tokens = await tenants_and_workers(relay.url, args.worker_tenants, args.workers)
    filled = await _fill(relay.url, keys, args.worker_requests + args.workers * 2, args.connections)
    await analyze(relay.database_url)
    trips, leases, posts = [], [], []
    errors: dict[int, int] = {}
    remaining = [args.worker_requests]
    deadline = time.perf_counter() + args.seconds

    async def one(token: str) -> None:
        conn = await Connection.open(relay.url)
        try:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                start = time.perf_counter()
                status, raw = await conn.request(
                    "POST", "/v1/worker/lease", json_body={"max_events": 1, "wait_s": 0}, auth=token
                )
                leased = time.perf_counter()
                events = json.loads(raw)["events"] if status == 200 else []
                if not events:
                    errors[status] = errors.get(status, 0) + 1
                    continue
                body = {"results": [result_for(e) for e in events]}
                status, _ = await conn.request("POST", "/v1/worker/results", json_body=body, auth=token)
                done = time.perf_counter()
                if status != 200:
                    errors[status] = errors.get(status, 0) + 1
                    continue
                trips.append(done - start)
                leases.append(leased - start)
                posts.append(done - leased)
        finally:
            await conn.close()

    cpu0, started = relay.cpu_s(), time.perf_counter()
    await asyncio.gather(*(one(t) for t in tokens))
    elapsed = time.perf_counter() - started
    got = _summary(trips, len(trips), elapsed, errors)
    got.update(
        lease_p50_ms=_summary(leases, 0, 1, {})["p50_ms"],
        lease_p99_ms=_summary(leases, 0, 1, {})["p99_ms"],
        result_p50_ms=_summary(posts, 0, 1, {})["p50_ms"],
        result_p99_ms=_summary(posts, 0, 1, {})["p99_ms"],
        relay_cpu_ms_per_trip=round((relay.cpu_s() - cpu0) / len(trips) * 1000, 3) if trips else None,
        queued=filled,
    )
    return got


async def uploads_phase(relay, args, jpegs: list[bytes]) -> dict:
    """Multipart events of ``len(jpegs)`` JPEGs over ``args.connections`` connections."""
    from insane.devkit.rawhttp import Connection, multipart

    await bench_tier(relay.database_url)
    keys, _ = await tenants_and_workers(relay.url, 16, 0)
    latencies: list[float] = []
    errors: dict[int, int] = {}
    remaining = [args.upload_requests]
    deadline = time.perf_counter() + args.seconds

    async def one(n: int) -> None:
        conn = await Connection.open(relay.url)
        try:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                event = {"camera": "drive", "time": datetime.now(UTC).isoformat()}
                body, content_type = multipart(event, jpegs)
                start = time.perf_counter()
                status, _ = await conn.request(
                    "POST", "/v1/events", body=body, content_type=content_type, auth=keys[n % len(keys)]
                )
                if status in (200, 201, 202):
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[status] = errors.get(status, 0) + 1
        finally:
            await conn.close()

    cpu0, started = relay.cpu_s(), time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(args.upload_connections)))
    elapsed = time.perf_counter() - started
    got = _summary(latencies, len(latencies), elapsed, errors)
    got["mb_per_s"] = round(len(latencies) * sum(map(len, jpegs)) / elapsed / 1e6, 1) if elapsed else 0.0
    got["relay_cpu_ms_per_event"] = round((relay.cpu_s() - cpu0) / len(latencies) * 1000, 3) if latencies else None
    return got


def camera_jpegs(count: int, size: tuple[int, int]) -> list[bytes]:
    """Camera-like JPEGs: crops of a photo that ships with Ultralytics, else a synthetic scene."""
    from insane.demo_media import DemoError, find_photos
    from insane.devkit.loadtest import camera_frames

    try:
        return camera_frames(find_photos(None)[0], count, size)
    except DemoError:
        import cv2
        import numpy as np

        rng = np.random.default_rng(1)
        frames = []
        for i in range(count):
            w, h = size
            image = np.full((h, w, 3), 90, np.uint8)
            image[:, :, 1] = np.linspace(40, 200, w, dtype=np.uint8)[None, :]
            for _ in range(40):
                x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
                image[y : y + 80, x : x + 60] = rng.integers(0, 255, 3)
            image[:, i % w] = 255
            frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        return frames


def _median_of(runs: list[dict]) -> dict:
    """Each numeric figure's median over the runs; errors summed; ``runs`` kept."""
    out: dict = {"runs": len(runs), "errors": {}}
    for name in runs[0]:
        values = [r[name] for r in runs if isinstance(r.get(name), int | float) and not isinstance(r.get(name), bool)]
        if values:
            out[name] = round(statistics.median(values), 3)
    for r in runs:
        for status, n in r.get("errors", {}).items():
            out["errors"][str(status)] = out["errors"].get(str(status), 0) + n
    return out


def compare_phases(services, args) -> dict:
    """The worker and uploads phases, this checkout against the baseline commit, ``args.repeat`` times each."""
    from insane.devkit import ROOT as KIT_ROOT
    from insane.devkit.revision import RelayProcess, checkout, revision_label

    label = revision_label(args.baseline)
    phases = [p for p in ("worker", "uploads") if p in args.phases]
    jpegs = camera_jpegs(args.upload_moments, (1280, 720)) if "uploads" in phases else []
    runs: dict[str, dict[str, list[dict]]] = {p: {"now": [], label: []} for p in phases}
    common = dict(lane_backlog_max="100000000", db_pool_size=str(max(8, args.connections)))
    with checkout(args.baseline) as old_source:
        sources = {"now": (KIT_ROOT, dict(common, blob_store_max_mb="100000")), label: (old_source, common)}
        for _ in range(args.repeat):
            for name, (source, settings) in sources.items():
                for phase in phases:
                    with RelayProcess(services, source, **settings) as relay:
                        if phase == "worker":
                            runs[phase][name].append(asyncio.run(worker_phase(relay, args)))
                        else:
                            runs[phase][name].append(asyncio.run(uploads_phase(relay, args, jpegs)))
    out: dict = {"baseline": label}
    for phase, by_relay in runs.items():
        now, base = _median_of(by_relay["now"]), _median_of(by_relay[label])
        ratio = {
            k: round(now[k] / base[k], 3)
            for k in now
            if k in base and isinstance(now[k], float | int) and base[k] and k not in ("runs", "ok", "seconds")
        }
        out[phase] = {"now": now, label: base, "ratio": ratio}
    if jpegs:
        out["uploads"]["jpeg_kb"] = round(sum(map(len, jpegs)) / len(jpegs) / 1000, 1)
        out["uploads"]["moments"] = len(jpegs)
    return out


def compare_lines(result: dict) -> list[str]:
    if "baseline" not in result:
        return []
    label = result["baseline"]
    lines = []
    rows = {
        "worker": (
            "lease + result round trips",
            [
                "per_s",
                "p50_ms",
                "p99_ms",
                "lease_p50_ms",
                "lease_p99_ms",
                "result_p50_ms",
                "result_p99_ms",
                "relay_cpu_ms_per_trip",
            ],
        ),
        "uploads": ("multipart uploads", ["per_s", "p50_ms", "p99_ms", "mb_per_s", "relay_cpu_ms_per_event"]),
    }
    for phase, (title, names) in rows.items():
        if phase not in result:
            continue
        got = result[phase]
        extra = f", {got['moments']} JPEGs of {got['jpeg_kb']} kB each" if phase == "uploads" else ""
        lines.append(f"{title} (medians of {got['now']['runs']} runs{extra})")
        lines.append(f"  {'':24}{'now':>10}{label:>10}{'now/base':>10}")
        for name in names:
            lines.append(
                f"  {name:24}{got['now'].get(name)!s:>10}{got[label].get(name)!s:>10}{got['ratio'].get(name, '')!s:>10}"
            )
        lines.append(f"  errors: now {got['now']['errors']}, {label} {got[label]['errors']}")
    return lines


def events_phase(services, args) -> dict:
    """POST /v1/events on this checkout's relay, then on the bare endpoint."""
    asyncio.run(setup_tenant(services.database_url))
    env = dict(
        os.environ,
        INSANE_DATABASE_URL=services.database_url,
        INSANE_REDIS_URL=services.redis_url,
        INSANE_LANE_BACKLOG_MAX="100000000",
        INSANE_LOG_LEVEL="WARNING",
        INSANE_DB_POOL_SIZE=str(max(4, args.connections)),
        PYTHONPATH=str(ROOT),
    )
    env.pop("INSANE_CONFIG", None)
    made = subprocess.run(
        [sys.executable, "-m", "insane", "tenant", "--json", "create", "bench", "--tier", "bench"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    key = json.loads(made.stdout)["api_key"]

    relay, host, port = start_listening([sys.executable, "-m", "insane", "relay", "--port", "0"], env)
    try:
        asyncio.run(load(host, port, key, args.connections, args.warmup, 60, args.moments))
        asyncio.run(analyze(services.database_url))
        relay_run = asyncio.run(load(host, port, key, args.connections, args.requests, args.seconds, args.moments))
    finally:
        stop(relay)
    bare, host, port = start_listening([sys.executable, str(Path(__file__).resolve()), "--serve-bare"], env)
    try:
        asyncio.run(load(host, port, None, args.connections, 2000, 10, args.moments))
        bare_run = asyncio.run(load(host, port, None, args.connections, args.requests, args.seconds, args.moments))
    finally:
        stop(bare)
    return {
        "events_s": relay_run["rps"],
        "bare_s": bare_run["rps"],
        "ratio": round(relay_run["rps"] / bare_run["rps"], 3) if bare_run["rps"] else None,
        "p50_ms": relay_run["p50_ms"],
        "p99_ms": relay_run["p99_ms"],
        "bare_p50_ms": bare_run["p50_ms"],
        "bare_p99_ms": bare_run["p99_ms"],
        "relay_statuses": relay_run["statuses"],
    }


def events_lines(result: dict, args) -> list[str]:
    fsync = "off" if args.no_durable else "on"
    return [
        f"POST /v1/events ({args.moments} moments, {args.connections} connections, fsync {fsync})",
        f"  relay: {result['events_s']:>8} events/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms",
        f"  bare:  {result['bare_s']:>8} req/s     p50 {result['bare_p50_ms']} ms  p99 {result['bare_p99_ms']} ms",
        f"  ratio: {result['ratio']}  (goal >= 0.5, p99 <= 50 ms)  statuses {result['relay_statuses']}",
    ]


def failures(result: dict) -> list[str]:
    """What went wrong in the run's phases (errors, or nothing measured)."""
    found = []
    statuses = result.get("relay_statuses")
    if statuses is not None and (set(statuses) - {200, 202, "200", "202"} or not result.get("events_s")):
        found.append(f"events: statuses {statuses}")
    for phase in ("worker", "uploads"):
        for name, got in result.get(phase, {}).items():
            if isinstance(got, dict) and "errors" in got and (got["errors"] or not got.get("ok")):
                found.append(f"{phase} on {name}: errors {got['errors']}, {got.get('ok')} ok")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--phases", default=",".join(PHASES), help="a comma-separated subset of %(default)s")
    parser.add_argument("--baseline", default=BASELINE, help="the commit the worker and uploads phases compare with")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the worker and uploads phases per relay")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20000, help="requests per phase, at most")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per phase, at most")
    parser.add_argument("--warmup", type=int, default=3000, help="events stored before measuring (then ANALYZE)")
    parser.add_argument("--moments", type=int, default=20)
    parser.add_argument("--workers", type=int, default=16, help="workers in the worker phase, one connection each")
    parser.add_argument("--worker-tenants", type=int, default=50, help="tenants whose events fill the queue")
    parser.add_argument("--worker-requests", type=int, default=3000, help="round trips per worker phase, at most")
    parser.add_argument("--upload-moments", type=int, default=4, help="JPEGs (1280x720) per uploaded event")
    parser.add_argument("--upload-connections", type=int, default=8)
    parser.add_argument("--upload-requests", type=int, default=1500, help="uploads per phase, at most")
    parser.add_argument(
        "--no-durable",
        action="store_true",
        help="fsync and synchronous_commit off (diagnosis only; not the published figure)",
    )
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare()
        return 0
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown or not args.phases:
        parser.error(f"--phases: choose from {', '.join(PHASES)}")

    from insane.devkit.services import EmbeddedServices

    result: dict = {}
    with EmbeddedServices(durable=not args.no_durable) as services:
        if "events" in args.phases:
            result.update(events_phase(services, args))
        if {"worker", "uploads"} & set(args.phases):
            result.update(compare_phases(services, args))
    result.update(connections=args.connections, moments=args.moments, durable=not args.no_durable, cpus=os.cpu_count())
    if args.json:
        print(json.dumps(result))
    else:
        lines = events_lines(result, args) if "events" in args.phases else []
        print("\n".join(lines + compare_lines(result)))
    failed = failures(result)
    if failed:
        print("phase failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
