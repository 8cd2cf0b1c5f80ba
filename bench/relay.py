"""Throughput and latency of POST /v1/events against a bare Starlette endpoint on the same stack.

    python bench/relay.py                 # a table
    python bench/relay.py --json          # one JSON object: events_s, bare_s, p50_ms, p99_ms, ratio, ...

Production settings: PostgreSQL with fsync and synchronous_commit on, Redis with AOF every second
(EmbeddedServices(durable=True)); auth, validation, quota checks and the XADD all in place. Both
servers run as `uvicorn` (uvloop + httptools, one process) in child processes; the load comes from a
small keep-alive HTTP/1.1 client in this process with a fixed number of connections. Each phase is
bounded by a request count and a time limit, and the whole run stops by itself.
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


def start(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None  # PIPE
    line = proc.stdout.readline()
    if "listening on http://" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    host, port = line.rsplit("//", 1)[1].strip().rsplit(":", 1)
    return proc, host, int(port)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20000, help="requests per phase, at most")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per phase, at most")
    parser.add_argument("--warmup", type=int, default=3000, help="events stored before measuring (then ANALYZE)")
    parser.add_argument("--moments", type=int, default=20)
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

    from insane.devkit.services import EmbeddedServices

    with EmbeddedServices(durable=not args.no_durable) as services:
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

        relay, host, port = start([sys.executable, "-m", "insane", "relay", "--port", "0"], env)
        try:
            asyncio.run(load(host, port, key, args.connections, args.warmup, 60, args.moments))
            asyncio.run(analyze(services.database_url))
            relay_run = asyncio.run(load(host, port, key, args.connections, args.requests, args.seconds, args.moments))
        finally:
            stop(relay)
        bare, host, port = start([sys.executable, str(Path(__file__).resolve()), "--serve-bare"], env)
        try:
            asyncio.run(load(host, port, None, args.connections, 2000, 10, args.moments))
            bare_run = asyncio.run(load(host, port, None, args.connections, args.requests, args.seconds, args.moments))
        finally:
            stop(bare)

    result = {
        "events_s": relay_run["rps"],
        "bare_s": bare_run["rps"],
        "ratio": round(relay_run["rps"] / bare_run["rps"], 3) if bare_run["rps"] else None,
        "p50_ms": relay_run["p50_ms"],
        "p99_ms": relay_run["p99_ms"],
        "bare_p50_ms": bare_run["p50_ms"],
        "bare_p99_ms": bare_run["p99_ms"],
        "relay_statuses": relay_run["statuses"],
        "connections": args.connections,
        "moments": args.moments,
        "durable": not args.no_durable,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        fsync = "off" if args.no_durable else "on"
        print(f"POST /v1/events ({args.moments} moments, {args.connections} connections, fsync {fsync})")
        print(f"  relay: {result['events_s']:>8} events/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms")
        print(
            f"  bare:  {result['bare_s']:>8} req/s     p50 {result['bare_p50_ms']} ms  p99 {result['bare_p99_ms']} ms"
        )
        print(f"  ratio: {result['ratio']}  (goal >= 0.5, p99 <= 50 ms)  statuses {relay_run['statuses']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
