"""Per-tenant routing under many tenants and workers, against the shared-lane relay (af2ffdb) in the same run.

    python bench/routing.py                   # 2,000 tenants, 200 workers, 100 events/s for 60 s; a table
    python bench/routing.py --quick           # 20 tenants, 4 workers, a few seconds (the smoke test's size)
    python bench/routing.py --json            # one JSON object: {"runs": {"now": {...}, "af2ffdb": {...}}, ...}

Each relay (this checkout's, then the baseline commit's, checked out into a temporary git worktree) runs as
``insane relay`` in a child process on its own fresh database and Redis database, with production
settings: PostgreSQL fsync and synchronous_commit on, Redis with AOF every second, auth on. The load is the
same for both: ``--tenants`` tenants (``--pro-share`` of them Pro, the rest Guardian), events of
``--moments`` URL moments posted open-loop at ``--rate`` per second for ``--seconds``, a few heavy Guardian
tenants sending ``--heavy-share`` of them; ``--workers`` shared-pool workers, each a loop of lease
(long-poll), a fake review of ``--work-ms`` per event, and one results post.

Figures per relay: queue time (accepted -> in a worker's hands) p50/p99, the lease call's round trip when
it returned work, the relay process's CPU time per event (user + system, over the load and its drain), and
fairness: among Guardian tenants, the spread (p50/p99/max) of each tenant's median queue time, and the
light tenants' p99 beside the heavy tenants' p50. A phase that loses events, or gets errors (a 503 on a
lease included), fails the run (exit 1) after the figures are printed, with the relay's last log lines.

Both relays' Redis clients are redis-py's default pool (100 connections, which fails a command at once
when all are in use) unless ``--redis-max-connections`` puts a larger pool in their INSANE_REDIS_URL:
a shared-lane relay holds one connection per waiting long-poll, so 200 workers exhaust the default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from insane.devkit.client import ADMIN_TOKEN, result_for  # noqa: E402
from insane.devkit.rawhttp import Connection, percentile  # noqa: E402

BASELINE = "af2ffdb"  # the last commit with the shared pro/standard lane streams
QUICK = dict(tenants=20, workers=4, rate=10.0, seconds=3.0, heavy=2, work_ms=50.0, drain_s=30.0)


@dataclass
class Tenant:
    id: str
    key: str
    tier: str
    heavy: bool = False


@dataclass
class Phase:
    """What one relay's run saw, event by event."""

    tenants: dict[str, Tenant] = field(default_factory=dict)
    posted: dict[str, str] = field(default_factory=dict)  # event id -> tenant id
    queue_s: dict[str, float] = field(default_factory=dict)  # event id -> accepted -> first leased
    done: set[str] = field(default_factory=set)
    lease_rtt: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    post_lag: list[float] = field(default_factory=list)
    posting_over: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def check_drained(self) -> None:
        if self.posting_over and self.done.issuperset(self.posted):
            self.drained.set()

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def _pooled(url: str, n: int, jobs: list, fn) -> list:
    """Run ``fn(conn, job)`` for each job over ``n`` keep-alive connections; results in job order."""
    results: list = [None] * len(jobs)
    todo = iter(enumerate(jobs))

    async def one() -> None:
        conn = await Connection.open(url)
        try:
            for i, job in todo:
                results[i] = await fn(conn, job)
        finally:
            await conn.close()

    await asyncio.gather(*(one() for _ in range(min(n, len(jobs)) or 1)))
    return results


async def _ok(conn: Connection, method: str, path: str, body: dict, auth: str | None = ADMIN_TOKEN) -> dict:
    status, raw = await conn.request(method, path, json_body=body, auth=auth)
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {status} {raw[:200]!r}")
    return json.loads(raw)


async def setup(url: str, args) -> tuple[dict[str, Tenant], list[str]]:
    """The tenants (heavy ones first among Guardian) and the shared workers' tokens."""
    pro = int(args.tenants * args.pro_share)
    tiers = ["pro"] * pro + ["guardian"] * (args.tenants - pro)

    async def tenant(conn, job):
        i, tier = job
        got = await _ok(conn, "POST", "/admin/tenants", {"name": f"bench-{i:05d}", "tier": tier})
        return Tenant(got["id"], got["api_key"], tier, heavy=tier == "guardian" and i - pro < args.heavy)

    async def worker(conn, i):
        code = await _ok(conn, "POST", "/admin/enroll-codes", {"tenant": None})
        got = await _ok(conn, "POST", "/v1/workers/enroll", {"code": code["code"], "name": f"w{i}"}, auth=None)
        return got["token"]

    made = await _pooled(url, 8, list(enumerate(tiers)), tenant)
    tokens = await _pooled(url, 8, list(range(args.workers)), worker)
    return {t.id: t for t in made}, tokens


def _event(moments: int) -> dict:
    stamp = datetime.now().astimezone().isoformat()
    return {"camera": "gate", "time": stamp, "moments": [f"https://cam.example.com/{i}.jpg" for i in range(moments)]}


async def post_load(url: str, phase: Phase, args, stop_at: float) -> None:
    """Events at ``args.rate`` per second (open loop), tenant by the load's mix, until ``stop_at``."""
    heavy = [t for t in phase.tenants.values() if t.heavy]
    everyone = list(phase.tenants.values())
    rng = random.Random(7)
    slots = itertools.count()
    t0 = time.perf_counter()

    async def poster() -> None:
        conn = await Connection.open(url)
        try:
            while True:
                at = t0 + next(slots) / args.rate
                if at >= stop_at:
                    return
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    phase.post_lag.append(-delay)
                tenant = rng.choice(heavy) if heavy and rng.random() < args.heavy_share else rng.choice(everyone)
                status, raw = await conn.request("POST", "/v1/events", json_body=_event(args.moments), auth=tenant.key)
                if status in (200, 201, 202):
                    phase.posted[json.loads(raw)["id"]] = tenant.id
                else:
                    phase.error(f"post {status}")
        finally:
            await conn.close()

    await asyncio.gather(*(poster() for _ in range(args.posters)))


async def work_loop(url: str, token: str, phase: Phase, args, stop: asyncio.Event) -> None:
    """One shared worker: lease (long-poll), a fake review of ``work_ms`` per event, one results post."""
    conn = await Connection.open(url)
    lease = {"max_events": args.max_events, "wait_s": 2.0}
    try:
        while not stop.is_set():
            sent = time.perf_counter()
            status, raw = await conn.request("POST", "/v1/worker/lease", json_body=lease, auth=token)
            now = time.time()
            if status != 200:
                phase.error(f"lease {status}")
                await asyncio.sleep(0.5)
                continue
            events = json.loads(raw)["events"]
            if not events:
                continue
            phase.lease_rtt.append(time.perf_counter() - sent)
            for e in events:
                accepted = datetime.fromisoformat(e["created_at"]).timestamp()
                phase.queue_s.setdefault(e["event_id"], now - accepted)
            await asyncio.sleep(args.work_ms / 1000 * len(events))
            body = {"results": [result_for(e) for e in events]}
            status, raw = await conn.request("POST", "/v1/worker/results", json_body=body, auth=token)
            if status != 200:
                phase.error(f"results {status}")
                continue
            phase.done.update(e["event_id"] for e in events)
            phase.check_drained()
    finally:
        await conn.close()


async def run_phase(relay, args) -> dict:
    phase = Phase()  # made on this loop: its Event belongs here
    phase.tenants, tokens = await setup(relay.url, args)
    stop = asyncio.Event()
    workers = [asyncio.create_task(work_loop(relay.url, tok, phase, args, stop)) for tok in tokens]
    await asyncio.sleep(1.0)  # every worker in its first long-poll
    cpu0, t0 = relay.cpu_s(), time.perf_counter()
    await post_load(relay.url, phase, args, t0 + args.seconds)
    phase.posting_over = True
    phase.check_drained()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(phase.drained.wait(), args.drain_s)
    cpu, wall = relay.cpu_s() - cpu0, time.perf_counter() - t0
    stop.set()
    for outcome in await asyncio.gather(*workers, return_exceptions=True):
        if isinstance(outcome, Exception):
            phase.error(f"worker died: {type(outcome).__name__}")
    got = figures(phase, cpu, wall, args)
    if not got["ok"]:
        got["relay_log"] = relay.log_tail(8)[-3000:]
    return got


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def figures(phase: Phase, cpu: float, wall: float, args) -> dict:
    lost = len(set(phase.posted) - phase.done)
    waits = list(phase.queue_s.values())
    per_tenant: dict[str, list[float]] = {}
    for event_id, q in phase.queue_s.items():
        per_tenant.setdefault(phase.posted.get(event_id, ""), []).append(q)
    tier = {tid: t.tier for tid, t in phase.tenants.items()}
    guardian = {tid: qs for tid, qs in per_tenant.items() if tier.get(tid) == "guardian"}
    medians = [statistics.median(qs) for qs in guardian.values()]
    light = [q for tid, qs in guardian.items() if not phase.tenants[tid].heavy for q in qs]
    heavy = [q for tid, qs in guardian.items() if phase.tenants[tid].heavy for q in qs]
    done = len(phase.done)
    return {
        "ok": lost == 0 and not phase.errors and done > 0,
        "events_posted": len(phase.posted),
        "events_done": done,
        "events_lost": lost,
        "errors": phase.errors,
        "events_per_s": round(len(phase.posted) / args.seconds, 1),
        "drain_s": round(max(0.0, wall - args.seconds), 1),
        "queue_p50_ms": _ms(percentile(waits, 50)),
        "queue_p99_ms": _ms(percentile(waits, 99)),
        "lease_rtt_p50_ms": _ms(percentile(phase.lease_rtt, 50)),
        "lease_rtt_p99_ms": _ms(percentile(phase.lease_rtt, 99)),
        "relay_cpu_ms_per_event": round(cpu / done * 1000, 3) if done else None,
        "relay_cpu_s": round(cpu, 2),
        "wall_s": round(wall, 1),
        "post_behind_p99_ms": _ms(percentile(phase.post_lag, 99)) or 0.0,
        "fairness": {
            "guardian_tenants": len(medians),
            "tenant_median_p50_ms": _ms(percentile(medians, 50)),
            "tenant_median_p99_ms": _ms(percentile(medians, 99)),
            "tenant_median_max_ms": _ms(max(medians, default=None)),
            "light_p99_ms": _ms(percentile(light, 99)),
            "heavy_p50_ms": _ms(percentile(heavy, 50)),
        },
    }


ROWS = [
    ("events posted / s", "events_per_s", "hi"),
    ("drain after the load s", "drain_s", "lo"),
    ("queue time p50 ms", "queue_p50_ms", "lo"),
    ("queue time p99 ms", "queue_p99_ms", "lo"),
    ("lease round trip p50 ms", "lease_rtt_p50_ms", "lo"),
    ("lease round trip p99 ms", "lease_rtt_p99_ms", "lo"),
    ("relay CPU ms / event", "relay_cpu_ms_per_event", "lo"),
    ("guardian tenant medians p50 ms", "fairness.tenant_median_p50_ms", "lo"),
    ("guardian tenant medians p99 ms", "fairness.tenant_median_p99_ms", "lo"),
    ("guardian tenant medians max ms", "fairness.tenant_median_max_ms", "lo"),
    ("light tenants' queue p99 ms", "fairness.light_p99_ms", "lo"),
    ("heavy tenants' queue p50 ms", "fairness.heavy_p50_ms", "lo"),
]


def _get(run: dict, path: str) -> Any:
    value: Any = run
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def ratios(now: dict, base: dict) -> dict:
    """now / baseline for each figure of the table (None where either is missing or the baseline is 0)."""
    out = {}
    for _, path, _ in ROWS:
        a, b = _get(now, path), _get(base, path)
        out[path] = round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    return out


def table(result: dict) -> str:
    now, base = result["runs"]["now"], result["runs"].get(result["baseline"], {})
    lines = [
        f"{result['tenants']} tenants, {result['workers']} workers, {result['rate']} events/s for "
        f"{result['seconds']} s, {result['moments']} moments, fake review {result['work_ms']} ms/event, "
        f"Redis client pool {result['redis_max_connections'] or 'as deployed'}",
        f"{'':32}{'now':>12}{result['baseline']:>12}{'now/base':>10}",
    ]
    for label, path, _ in ROWS:
        r = result["ratios"].get(path)
        lines.append(f"{label:32}{_get(now, path)!s:>12}{_get(base, path)!s:>12}{'' if r is None else r:>10}")
    for name, run in result["runs"].items():
        state = "ok" if run.get("ok") else f"FAILED {run.get('failure') or ''}"
        lines.append(
            f"{name}: {state}; posted {run.get('events_posted')}, done {run.get('events_done')}, "
            f"lost {run.get('events_lost')}, errors {run.get('errors')}, relay CPU {run.get('relay_cpu_s')} s"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a tiny load (the smoke test's size)")
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare against (default %(default)s)")
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="events posted per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load per relay")
    parser.add_argument("--moments", type=int, default=3)
    parser.add_argument("--pro-share", type=float, default=0.1)
    parser.add_argument("--heavy", type=int, default=10, help="Guardian tenants that send --heavy-share of all events")
    parser.add_argument("--heavy-share", type=float, default=0.3)
    parser.add_argument("--work-ms", type=float, default=1500.0, help="a worker's fake review time per event")
    parser.add_argument("--max-events", type=int, default=2, help="events a worker asks for per lease")
    parser.add_argument("--posters", type=int, default=8, help="connections posting events")
    parser.add_argument(
        "--redis-max-connections",
        type=int,
        help="give both relays' Redis clients this pool size (in INSANE_REDIS_URL); default: as deployed",
    )
    parser.add_argument("--drain-s", type=float, default=120.0, help="seconds to wait for the last results")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if parser.get_default(name) == getattr(args, name):
                setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from insane.devkit.revision import RelayProcess, RevisionError, checkout, revision_label
    from insane.devkit.services import EmbeddedServices

    label = revision_label(args.baseline)
    settings = dict(lane_backlog_max="100000000", db_pool_size="40")
    redis_query = f"max_connections={args.redis_max_connections}" if args.redis_max_connections else ""
    runs: dict[str, dict] = {}
    with EmbeddedServices(durable=True) as services:
        for name in ("now", label):
            try:
                source = contextlib.nullcontext(ROOT) if name == "now" else checkout(args.baseline)
                with source as tree, RelayProcess(services, tree, redis_query, **settings) as relay:
                    runs[name] = asyncio.run(run_phase(relay, args))
            except (RevisionError, RuntimeError, OSError, asyncio.IncompleteReadError) as exc:
                runs[name] = {"ok": False, "failure": f"{type(exc).__name__}: {exc}"[:600]}
    result = {
        "tenants": args.tenants,
        "workers": args.workers,
        "rate": args.rate,
        "seconds": args.seconds,
        "moments": args.moments,
        "work_ms": args.work_ms,
        "baseline": label,
        "durable": True,
        "redis_max_connections": args.redis_max_connections,
        "cpus": os.cpu_count(),
        "runs": runs,
        "ratios": ratios(runs["now"], runs[label]),
    }
    print(json.dumps(result) if args.json else table(result), flush=True)
    failed = [name for name, run in runs.items() if not run.get("ok")]
    if failed:
        print(f"phase failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
