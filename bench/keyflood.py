"""Tenants' requests per second while an attacker floods the relay with random API key ids: the credential
cache as shipped ("after") against the cache it replaced ("before": one dict that cached unknown ids too and
emptied itself completely when full), in the same run.

    python bench/keyflood.py                # a table
    python bench/keyflood.py --json         # one JSON object

Production settings: PostgreSQL with fsync and synchronous_commit on, Redis with AOF every second
(EmbeddedServices(durable=True)), `insane relay` itself (uvicorn, uvloop, one process) in a child process,
the default INSANE_KEY_CACHE_S. ``--tenants`` tenants each hold one key and one stored event; the tenants'
load is ``GET /v1/events/{id}`` of their own events with their own keys, spread over every key; the flood is
the same request with a well-formed key whose id is new every time (so every one costs a key lookup in both
variants). Each variant runs a phase without the flood, then one with it. ``key lookups per tenant request``
comes from PostgreSQL's own counter of scans of the api_keys primary key, less one per flood request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from insane.devkit.procs import start_listening, stop  # noqa: E402


class LegacyCache:
    """The cache before this change, kept here as the baseline: misses cached, cleared whole when full."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, stale: bool = False) -> Any:
        hit = self._data.get(key)
        if hit is None or (hit[0] < time.monotonic() and not stale):
            return None
        return hit[1]

    def put(self, key: str, value: Any, found: bool = True) -> None:
        if self.ttl <= 0:
            return
        if len(self._data) >= self.size:
            self._data.clear()
        self._data[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        self._data.clear()


def serve(variant: str) -> int:
    """Child mode: `insane relay` exactly, with the baseline cache swapped in for ``before``."""
    import relay.state
    from core.settings import load_settings
    from relay.cli import serve as serve_relay

    if variant == "before":
        relay.state.CredentialCache = LegacyCache  # type: ignore[misc,assignment]
    import uvloop

    return uvloop.run(serve_relay(load_settings()))


# --- load ----------------------------------------------------------------------------------------------------


def _request(host: str, port: int, path: str, key: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()


async def _status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


async def _load(host: str, port: int, make, connections: int, stop_at: float, out: dict) -> None:
    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                writer.write(make())
                status = await _status(reader)
                out["latencies"].append(time.perf_counter() - start)
                out["statuses"][status] = out["statuses"].get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))


def _summary(out: dict, seconds: float, ok: int) -> dict:
    lat = sorted(out["latencies"])
    good = sum(n for s, n in out["statuses"].items() if s == ok)
    return {
        "rps": round(good / seconds, 1),
        "requests": len(lat),
        "statuses": out["statuses"],
        "p50_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2) if lat else None,
    }


async def phase(host: str, port: int, tenants: list[tuple[str, str]], args, flood: bool) -> dict:
    stop_at = time.perf_counter() + args.seconds
    legit: dict = {"latencies": [], "statuses": {}}
    bogus: dict = {"latencies": [], "statuses": {}}

    def tenant_request() -> bytes:
        key, event_id = random.choice(tenants)
        return _request(host, port, f"/v1/events/{event_id}", key)

    def flood_request() -> bytes:
        key = f"ik_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
        return _request(host, port, f"/v1/events/{tenants[0][1]}", key)

    jobs = [_load(host, port, tenant_request, args.connections, stop_at, legit)]
    if flood:
        jobs.append(_load(host, port, flood_request, args.flood_connections, stop_at, bogus))
    started = time.perf_counter()
    await asyncio.gather(*jobs)
    seconds = time.perf_counter() - started
    return {"tenants": _summary(legit, seconds, 200), "flood": _summary(bogus, seconds, 401) if flood else None}


# --- setup ---------------------------------------------------------------------------------------------------


async def setup(database_url: str, n: int) -> list[tuple[str, str]]:
    """n tenants on a tier with no quota or bucket, one key and one stored event each: (key, event id)."""
    import uuid

    import asyncpg

    from relay.auth import API_KEY_PREFIX, new_secret
    from relay.db import migrate

    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT set_config('app.tenant_id', '*', false)")  # row-level security: all tenants
        await conn.execute(
            "INSERT INTO tiers (name, lane, daily_deep_reviews, deep_min_moments, rate_per_s, burst, max_k) "
            "VALUES ('bench', 'standard', NULL, 20, NULL, 1, 20) ON CONFLICT DO NOTHING"
        )
        out, tenant_rows, key_rows, event_rows = [], [], [], []
        for i in range(n):
            tenant, key, event = uuid.uuid4(), new_secret(API_KEY_PREFIX), uuid.uuid4()
            tenant_rows.append((tenant, f"bench-{i}", "bench"))
            key_rows.append((key.id, tenant, key.sha256))
            event_rows.append((event, tenant, "front", "standard", 1))
            out.append((key.full, str(event)))
        await conn.executemany("INSERT INTO tenants (id, name, tier) VALUES ($1, $2, $3)", tenant_rows)
        await conn.executemany("INSERT INTO api_keys (key_id, tenant_id, secret_sha256) VALUES ($1, $2, $3)", key_rows)
        await conn.executemany(
            "INSERT INTO events (id, tenant_id, camera, occurred_at, lane, n_moments) "
            "VALUES ($1, $2, $3, now(), $4, $5)",
            event_rows,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return out


async def key_lookups(database_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await asyncio.sleep(1.2)  # backends publish their statistics at most once a second
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return await conn.fetchval("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'api_keys_pkey'")
    finally:
        await conn.close()


def start(variant: str, env: dict[str, str]) -> tuple[subprocess.Popen, str, int]:
    return start_listening([sys.executable, str(Path(__file__).resolve()), "--serve", variant], env)


def run_variant(variant: str, env: dict[str, str], tenants: list[tuple[str, str]], args, database_url: str) -> dict:
    proc, host, port = start(variant, env)
    try:
        asyncio.run(phase(host, port, tenants, argparse.Namespace(**{**vars(args), "seconds": 3.0}), False))
        quiet = asyncio.run(phase(host, port, tenants, args, flood=False))
        before = asyncio.run(key_lookups(database_url))
        flooded = asyncio.run(phase(host, port, tenants, args, flood=True))
        after = asyncio.run(key_lookups(database_url))
    finally:
        stop(proc)
    tenant_requests = flooded["tenants"]["requests"]
    legit_lookups = (after - before) - flooded["flood"]["requests"]
    return {
        "quiet": quiet["tenants"],
        "flooded": flooded["tenants"],
        "flood": flooded["flood"],
        "lookups_per_tenant_request": round(legit_lookups / tenant_requests, 3) if tenant_requests else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tenants", type=int, default=2000, help="tenants, one key each (default 2000)")
    parser.add_argument("--connections", type=int, default=8, help="the tenants' connections")
    parser.add_argument("--flood-connections", type=int, default=8, help="the attacker's connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--serve", choices=["before", "after"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)

    from insane.devkit.services import EmbeddedServices

    with EmbeddedServices(durable=True) as services:
        tenants = asyncio.run(setup(services.database_url, args.tenants))
        env = dict(
            os.environ,
            INSANE_DATABASE_URL=services.database_url,
            INSANE_REDIS_URL=services.redis_url,
            INSANE_RELAY_PORT="0",
            INSANE_LOG_LEVEL="WARNING",
            INSANE_DB_POOL_SIZE=str(max(4, args.connections + args.flood_connections)),
            PYTHONPATH=str(ROOT),
        )
        env.pop("INSANE_CONFIG", None)
        variants = {v: run_variant(v, env, tenants, args, services.database_url) for v in ("before", "after")}
    before, after = variants["before"], variants["after"]
    result = {
        **variants,
        "flooded_rps_ratio": round(after["flooded"]["rps"] / before["flooded"]["rps"], 3),
        "tenants": args.tenants,
        "connections": args.connections,
        "flood_connections": args.flood_connections,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"GET /v1/events/{{id}}: {args.tenants} tenants' keys on {args.connections} connections, "
        f"flood of random key ids on {args.flood_connections}"
    )
    for name, v in variants.items():
        print(
            f"  {name:6} quiet {v['quiet']['rps']:>7} req/s | flooded {v['flooded']['rps']:>7} req/s "
            f"(p99 {v['flooded']['p99_ms']} ms), flood answered {v['flood']['rps']:>7} 401/s, "
            f"{v['lookups_per_tenant_request']} key lookups per tenant request"
        )
    print(f"  flooded tenants' req/s, after / before: {result['flooded_rps_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
