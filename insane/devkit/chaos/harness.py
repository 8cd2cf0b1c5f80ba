"""The fault harness behind ``bench/chaos.py`` and the reliability tests: real processes, real faults.

    plan = Plan.full(model)                  # or Plan.quick(model) for the test suite (chaos/plan.py)
    report = asyncio.run(Chaos(plan).run())  # {"phases": [...], "totals": {...}}; table(report) prints it

It starts its own Redis (AOF every second) and PostgreSQL (fsync and synchronous commit on), a relay
process (``insane relay``) and worker processes (``insane.devkit.chaos.faultworker``: the real worker,
which dies on a poison image), all on loopback. Then it runs one phase per fault; each phase submits
its own events (multipart uploads, an Idempotency-Key each, retried on 503/429 the way a camera would),
injects its faults while they flow, and drains: it waits until every accepted event is done or failed.

    workers    SIGKILL a random worker at random points, some right after the relay stored one of its
               results (so it dies before it has seen the answer); restart it with the same token
    redis      SIGKILL Redis and start it again (AOF everysec: up to a second of writes is lost)
    postgres   stop PostgreSQL for a while: new events must get 503 + Retry-After, never 202
    poison     one event whose image kills every worker that decodes it
    relay      SIGKILL the relay while results flow and start it again on the same port
    disk       the filesystem under PostgreSQL's tables (events, results, uploads) fills up: new events
               get 503 + Retry-After, never 202; when space returns, everything flows again by itself
    balanced   two relay processes behind HAProxy (cameras and workers see its one address): SIGKILL one
               under load, start it again, SIGKILL the other, start it again

Per phase it counts, from PostgreSQL: lost events (accepted and neither done nor failed), duplicate
result rows, events failed other than the poison, 202 answers for events that are not stored, and
re-queued events; from the relays' /metrics: results answered as duplicates (a second review of an
event: the price of at-least-once delivery) and dead letters; from the cameras: every answer that
made one retry, by status (or "transport" when no answer came).

When the plan has the balanced phase, HAProxy (Debian's haproxy) fronts the relays for the whole run,
so every phase goes through it; the second relay runs only in that phase.

Everything is bounded: each phase by its event count and a drain deadline, every process is stopped
on exit (and gets a parent-death signal, so even a killed harness takes its children with it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

import asyncpg
import httpx

from insane.devkit import ROOT
from insane.devkit.chaos.images import POISON_MARK, poison_jpeg, sample_jpegs
from insane.devkit.chaos.plan import Phase, Plan
from insane.devkit.services import EmbeddedServices, free_port

ADMIN_TOKEN = "chaos-admin-token-0123456789abcdef"
# What `insane relay --migrate` runs (relay.cli.serve), without the rest of the command line tool.
RELAY_MAIN = """
import logging, uvloop
from core.settings import load_settings
from relay.cli import serve
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
raise SystemExit(uvloop.run(serve(load_settings(relay_migrate_on_start=True))))
"""


# Round robin over the relays; a refused connection is retried on the other one (redispatch), never a
# request that reached a relay: a POST is not replayed, the camera retries it with its Idempotency-Key.
HAPROXY_CFG = """
global
  maxconn 2000
defaults
  mode http
  option redispatch
  retries 3
  retry-on conn-failure
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout check 3s
frontend front
  bind 127.0.0.1:{front}
  default_backend relays
backend relays
  balance roundrobin
  option httpchk GET /healthz
{servers}
"""


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until its filesystem is full."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except OSError:  # ENOSPC (root's reserved blocks are 0 on the filesystem _loop_mount makes)
            pass


def _loop_mount(image: Path, at: Path, size: int) -> None:
    """An ext4 of ``size`` bytes in the file ``image``, mounted at ``at`` (root and a loop device)."""
    with open(image, "wb") as f:
        f.truncate(size)
    at.mkdir(exist_ok=True)
    for cmd in (["mkfs.ext4", "-q", "-m", "0", str(image)], ["mount", "-o", "loop", str(image), str(at)]):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the disk phase needs root and a loop device: {' '.join(cmd)}: {done.stderr}")


def _pdeathsig() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
    os.setpgid(0, 0)


def _counter(text: str, name: str, label: str | None = None) -> float:
    pattern = rf"^{name}_total{{{label}}} (\S+)$" if label else rf"^{name}_total (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found[1]) if found else 0.0


class Chaos:
    def __init__(self, plan: Plan, log_dir: Path | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.echo = echo or (lambda _msg: None)
        self.dir = log_dir or Path(tempfile.mkdtemp(prefix="insane-chaos-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)  # PostgreSQL runs as its own user and must reach its data folder inside
        self.services: EmbeddedServices | None = None
        self.relays: dict[int, subprocess.Popen] = {}
        self.relay_ports = {0: free_port(), 1: free_port()}
        self.balancer: subprocess.Popen | None = None
        self.front_port = free_port() if "balanced" in plan.phases else self.relay_ports[0]
        self.url = f"http://127.0.0.1:{self.front_port}"  # what the cameras and the workers see
        self.workers: dict[int, subprocess.Popen] = {}
        self.tokens: dict[int, tuple[str, str]] = {}  # slot -> (worker id, token)
        self.crashes = 0
        self.expected_deaths: set[int] = set()  # pids the harness killed on purpose
        self.metric_base = {slot: {"duplicate": 0.0, "dead": 0.0} for slot in self.relay_ports}
        self.poison_log = self.dir / "poison.log"
        self.images = sample_jpegs(*plan.image_wh)
        # Servers restarted mid-run are forked by this one long-lived thread: a child's parent-death
        # signal fires when the thread that forked it ends, and this one lives as long as the harness.
        self.forker = concurrent.futures.ThreadPoolExecutor(1, "chaos-forker")
        self.db: asyncpg.Connection | None = None
        self.small = self.dir / "small"  # the disk phase's small filesystem, mounted there
        self.mounted = False

    # ----- processes ---------------------------------------------------------------------------

    def _svc(self) -> EmbeddedServices:
        assert self.services is not None, "run() starts the services first"
        return self.services

    def _relay_env(self, slot: int) -> dict[str, str]:
        p = self.plan
        return dict(
            os.environ,
            INSANE_DATABASE_URL=self._svc().database_url,
            INSANE_REDIS_URL=self._svc().redis_url,
            INSANE_ADMIN_TOKEN=ADMIN_TOKEN,
            INSANE_RELAY_PORT=str(self.relay_ports[slot]),
            INSANE_LEASE_IDLE_S=str(p.lease_idle_s),
            INSANE_MAX_DELIVERIES=str(p.max_deliveries),
            INSANE_REQUEUE_AFTER_S=str(p.requeue_after_s),
            INSANE_RECONCILE_INTERVAL_S=str(p.reconcile_interval_s),
            INSANE_LOG_LEVEL="WARNING",
            INSANE_DB_POOL_SIZE="20",
            INSANE_MAX_MOMENTS="64",
        )

    def start_relay(self, slot: int = 0) -> None:
        name = "relay.log" if slot == 0 else f"relay{slot}.log"
        log = open(self.dir / name, "ab")  # noqa: SIM115 - the child writes to it for its life
        try:
            relay = self.relays[slot] = subprocess.Popen(
                [sys.executable, "-c", RELAY_MAIN],
                env=self._relay_env(slot),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=_pdeathsig,
            )
        finally:
            log.close()
        assert relay.stdout is not None  # PIPE
        line = relay.stdout.readline().decode()
        if "relay listening" not in line:
            relay.kill()
            raise RuntimeError(f"the relay did not start: {line!r}; see {self.dir / name}")
        relay.stdout.close()

    def kill_relay(self, slot: int = 0) -> None:
        relay = self.relays.get(slot)
        if relay is not None and relay.poll() is None:
            relay.send_signal(signal.SIGKILL)
            relay.wait(30)

    def start_balancer(self) -> None:
        """HAProxy on the front port, round robin over both relays, health-checked every 300 ms: a dead
        relay leaves the rotation within a second, and a refused connection is retried on the other. A
        slow answer (a loaded machine) is not a dead relay: a check may take up to 3 s."""
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():
            raise RuntimeError("the balanced phase needs HAProxy (Debian: apt-get install haproxy)")
        servers = "\n".join(
            f"  server relay{slot} 127.0.0.1:{port} check inter 300ms fall 2 rise 1"
            for slot, port in self.relay_ports.items()
        )
        config = self.dir / "haproxy.cfg"
        config.write_text(HAPROXY_CFG.format(front=self.front_port, servers=servers))
        log = open(self.dir / "haproxy.log", "ab")  # noqa: SIM115
        try:
            self.balancer = subprocess.Popen(
                [haproxy, "-db", "-f", str(config)], stdout=log, stderr=log, preexec_fn=_pdeathsig
            )
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.front_port), 0.2):
                return
            if self.balancer.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"HAProxy did not start; see {self.dir / 'haproxy.log'}")

    def start_worker(self, slot: int) -> None:
        p = self.plan
        env = dict(
            os.environ,
            INSANE_RELAY_URL=self.url,
            INSANE_WORKER_TOKEN=self.tokens[slot][1],
            INSANE_MODEL=p.model,
            INSANE_WORKER_THREADS="1",
            INSANE_WORKER_DECODE_THREADS="1",
            INSANE_WORKER_LEASE_WAIT_S="2",
            INSANE_WORKER_LEASE_EVENTS="4",
            INSANE_WORKER_LEASE_AHEAD="24",
            INSANE_WORKER_BATCH_SIZE="8",
            INSANE_WORKER_K_MAX_STANDARD="64",
            INSANE_WORKER_K_FLOOR_STANDARD="64",
            INSANE_WORKER_BACKFILL="false",
            INSANE_LEASE_IDLE_S=str(p.lease_idle_s),
            INSANE_CHAOS_POISON=POISON_MARK.decode(),
            INSANE_CHAOS_POISON_LOG=str(self.poison_log),
            ORT_DISABLE_TELEMETRY="1",
        )
        log = open(self.dir / f"worker{slot}.log", "ab")  # noqa: SIM115
        try:
            self.workers[slot] = subprocess.Popen(
                [sys.executable, "-m", "insane.devkit.chaos.faultworker"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=_pdeathsig,
            )
        finally:
            log.close()

    def kill_worker(self, slot: int) -> None:
        proc = self.workers[slot]
        self.expected_deaths.add(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        self.start_worker(slot)

    def revive_crashed(self) -> None:
        """A worker that died by itself (the poison) is started again, like a service manager would."""
        for slot, proc in list(self.workers.items()):
            if proc.poll() is not None and proc.pid not in self.expected_deaths:
                self.crashes += 1
                self.expected_deaths.add(proc.pid)
                self.start_worker(slot)

    def stop_all(self) -> None:
        procs = [*self.workers.values(), *self.relays.values(), self.balancer]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)

    # ----- database views (as the owner: row-level security does not apply) ------------------------

    async def _query(self, sql: str, *args):
        for _ in range(60):
            try:
                if self.db is None or self.db.is_closed():
                    self.db = await asyncpg.connect(self._svc().database_url)
                return await self.db.fetch(sql, *args)
            except (
                OSError,
                asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError,
                asyncpg.exceptions.OperatorInterventionError,
            ):
                self.db = None
                await asyncio.sleep(0.5)
        raise RuntimeError("PostgreSQL did not come back")

    async def relay_metrics(self, slot: int) -> dict[str, float]:
        """One relay's counters since the run began: those of its earlier lives (the base) and of this one."""
        base = self.metric_base[slot]
        relay = self.relays.get(slot)
        if relay is None or relay.poll() is not None:
            return dict(base)
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(100):
                try:
                    text = (await client.get(f"http://127.0.0.1:{self.relay_ports[slot]}/metrics")).text
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"relay {slot}'s /metrics did not answer")
        return {
            "duplicate": base["duplicate"] + _counter(text, "insane_results", 'outcome="duplicate"'),
            "dead": base["dead"] + _counter(text, "insane_dead_lettered"),
        }

    async def metrics(self) -> dict[str, float]:
        totals = {"duplicate": 0.0, "dead": 0.0}
        for slot in self.relay_ports:
            for key, value in (await self.relay_metrics(slot)).items():
                totals[key] += value
        return totals

    async def kill_relay_counted(self, slot: int) -> None:
        """SIGKILL a relay, keeping its counters (read just before) as the base of its next life."""
        self.metric_base[slot] = await self.relay_metrics(slot)
        self.kill_relay(slot)

    # ----- cameras -----------------------------------------------------------------------------

    async def submit(
        self,
        client: httpx.AsyncClient,
        phase: Phase,
        tenant: str,
        key: str,
        images: list[bytes],
        accepted: dict[str, str],
    ) -> None:
        event = json.dumps({"camera": f"cam-{phase.name}", "time": "2026-11-29T00:00:00Z"})
        files: list[tuple[str, tuple[str | None, str | bytes, str]]] = [("event", (None, event, "application/json"))]
        files += [("moment", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
        headers = {"Authorization": f"Bearer {tenant}", "Idempotency-Key": key}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                r = await client.post(f"{self.url}/v1/events", files=files, headers=headers)
            except httpx.TransportError:
                phase.retried["transport"] = phase.retried.get("transport", 0) + 1
                await asyncio.sleep(0.5)
                continue
            if r.status_code in (200, 202):
                accepted[key] = r.json()["id"]
                return
            if r.status_code in (429, 502, 503, 504):
                phase.retried[str(r.status_code)] = phase.retried.get(str(r.status_code), 0) + 1
            if r.status_code in (502, 504) and self.balancer is not None:
                # The balancer's answer when the relay behind it died under the post (a relay never says
                # 502 or 504 itself). The camera retries with the same Idempotency-Key.
                await asyncio.sleep(0.5)
                continue
            if r.status_code in (429, 503):
                if r.status_code == 503:
                    phase.answers_503 += 1
                    if "retry-after" not in r.headers:
                        phase.answers_503_without_retry_after += 1
                await asyncio.sleep(min(float(r.headers.get("retry-after", 1)), 1.0))
                continue
            phase.server_errors += 1
            phase.notes.append(f"{r.status_code} for {key}: {r.text[:200]}")
            await asyncio.sleep(1.0)
        phase.notes.append(f"gave up submitting {key}")

    async def cameras(
        self, phase: Phase, tenant: str, n: int, accepted: dict[str, str], extra: dict[str, list[bytes]] | None = None
    ) -> None:
        """Offer ``n`` events at the plan's rate (plus ``extra``: key -> images), each retried until answered."""
        jobs = []
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32)) as client:
            for key, images in (extra or {}).items():
                jobs.append(asyncio.create_task(self.submit(client, phase, tenant, key, images, accepted)))
            t0 = time.monotonic()
            for i in range(n):
                await asyncio.sleep(max(0.0, t0 + i / self.plan.submit_rate - time.monotonic()))
                images = [self.images[(i + j) % len(self.images)] for j in range(self.plan.moments)]
                key = f"{phase.name}-{i}"
                jobs.append(asyncio.create_task(self.submit(client, phase, tenant, key, images, accepted)))
                self.revive_crashed()
            await asyncio.gather(*jobs)
        phase.submitted = n + len(extra or {})

    # ----- a phase -----------------------------------------------------------------------------

    async def run_phase(
        self,
        name: str,
        n: int,
        fault: Callable[[Phase, float], Awaitable[None]],
        extra: dict[str, list[bytes]] | None = None,
    ) -> Phase:
        phase = Phase(name)
        self.echo(f"phase {name}: {n} events of {self.plan.moments} moments")
        t0 = time.monotonic()
        before = await self.metrics()
        crashes_before = self.crashes
        accepted: dict[str, str] = {}
        offer_s = n / self.plan.submit_rate
        await asyncio.gather(self.cameras(phase, self.tenant, n, accepted, extra), fault(phase, offer_s))
        ids = [uuid.UUID(i) for i in accepted.values()]
        phase.accepted = len(ids)
        deadline = time.monotonic() + self.plan.drain_timeout_s
        while time.monotonic() < deadline:
            self.revive_crashed()
            rows = await self._query("SELECT count(*) AS n FROM events WHERE id = ANY($1) AND status = 'queued'", ids)
            if rows[0]["n"] == 0:
                break
            await asyncio.sleep(0.5)
        poison_ids = {uuid.UUID(accepted[k]) for k in (extra or {}) if k in accepted}
        rows = await self._query(
            "SELECT e.id, e.status, e.requeues, (SELECT count(*) FROM results r WHERE r.event_id = e.id) AS results, "
            "(SELECT count(*) FROM results r, jsonb_array_elements(r.moments) m WHERE r.event_id = e.id "
            " AND m->>'error' IS NOT NULL) AS errors, "
            "(SELECT count(*) FROM results r, jsonb_array_elements(r.moments) m WHERE r.event_id = e.id "
            " AND m->>'error' IS NULL) AS reviewed FROM events e WHERE e.id = ANY($1)",
            ids,
        )
        errors = await self._query(
            "SELECT m->>'error' AS error, count(*) AS n FROM results r, jsonb_array_elements(r.moments) m "
            "WHERE r.event_id = ANY($1) AND m->>'error' IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
            ids,
        )
        phase.notes += [f"{e['n']}× moment error: {e['error'][:160]}" for e in errors]
        stored = {r["id"] for r in rows}
        phase.unstored_202 = len(set(ids) - stored)
        for r in rows:
            if r["status"] == "queued" or (r["status"] == "done" and r["results"] == 0):
                phase.lost += 1
            if r["status"] == "failed" and r["id"] not in poison_ids:
                phase.unexpected_failed += 1
            phase.duplicate_rows += max(0, r["results"] - 1)
            phase.requeued += r["requeues"]
            phase.moment_errors += r["errors"]
            phase.moments_reviewed += r["reviewed"]
        phase.lost += phase.unstored_202
        for poison in poison_ids:
            phase.poison_status = next(r["status"] for r in rows if r["id"] == poison)
        after = await self.metrics()
        phase.re_reviews = int(after["duplicate"] - before["duplicate"])
        phase.dead_letters = int(after["dead"] - before["dead"])
        phase.crashes = self.crashes - crashes_before
        phase.seconds = round(time.monotonic() - t0, 1)
        self.echo(f"  {name}: {asdict(phase)}")
        return phase

    # ----- the faults --------------------------------------------------------------------------

    async def _result_count(self, worker_id: str) -> int:
        rows = await self._query("SELECT count(*) AS n FROM results WHERE worker_id = $1", uuid.UUID(worker_id))
        return rows[0]["n"]

    async def kill_workers(self, phase: Phase, offer_s: float) -> None:
        kills = self.plan.worker_kills
        for i in range(kills):
            await asyncio.sleep(self.rng.uniform(0.3, 1.7) * offer_s / kills)
            slot = self.rng.choice(sorted(self.workers))
            if i % 2:
                # Right after the relay stored one of its results: it dies before it reads the answer,
                # with more results computed and leases held that nobody will ack for it.
                start = await self._result_count(self.tokens[slot][0])
                for _ in range(500):
                    if await self._result_count(self.tokens[slot][0]) != start:
                        break
                    await asyncio.sleep(0.01)
            await asyncio.get_running_loop().run_in_executor(self.forker, self.kill_worker, slot)
            phase.faults += 1

    async def kill_redis(self, phase: Phase, offer_s: float) -> None:
        kills = self.plan.redis_kills
        for _ in range(kills):
            await asyncio.sleep(offer_s / (kills + 1))
            await asyncio.get_running_loop().run_in_executor(self.forker, self._svc().restart_redis)
            phase.faults += 1

    async def stop_postgres(self, phase: Phase, offer_s: float) -> None:
        await asyncio.sleep(offer_s / 3)
        await asyncio.get_running_loop().run_in_executor(
            self.forker, lambda: self._svc().restart_postgres(self.plan.pg_down_s)
        )
        phase.faults += 1

    async def poison_fault(self, phase: Phase, offer_s: float) -> None:
        phase.faults += 1  # the poison event itself, submitted with the phase's first events

    async def restart_relay(self, phase: Phase, offer_s: float) -> None:
        """SIGKILL the relay between a result's commit and its ack. Redis pauses its writes (CLIENT PAUSE
        WRITE): a result's delivery check (a read) still passes and its row is committed, but the relay
        then blocks on the announcement and the ack; once some results are stored that way, it dies.
        A pause that lands while no worker has a result in hand stores nothing: it is lifted after a few
        seconds (before the workers' downloads run out of time) and tried again once results flow."""
        import redis.asyncio as aioredis

        await asyncio.sleep(offer_s / 4)
        count = "SELECT count(*) AS n FROM results"
        admin = aioredis.from_url(self._svc().redis_url)
        stored = 0
        try:
            for _ in range(10):
                for _ in range(300):  # until results flow (up to ~30 s): stored ones a moment ago and now
                    seen = (await self._query(count))[0]["n"]
                    await asyncio.sleep(0.1)
                    if (await self._query(count))[0]["n"] > seen:
                        break
                before = (await self._query(count))[0]["n"]
                await admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
                try:
                    for _ in range(120):  # up to ~3 s
                        stored = (await self._query(count))[0]["n"] - before
                        if stored >= 1:
                            await self.kill_relay_counted(0)
                            break
                        await asyncio.sleep(0.025)
                finally:
                    await admin.execute_command("CLIENT", "UNPAUSE")
                if stored >= 1:
                    break
                phase.notes.append("a write pause stored no result; tried again")
            else:
                await self.kill_relay_counted(0)
        finally:
            await admin.aclose()
        phase.stored_not_acked = stored
        await asyncio.sleep(1.0)
        await asyncio.get_running_loop().run_in_executor(self.forker, self.start_relay)
        phase.faults += 1

    async def fill_disk(self, phase: Phase, offer_s: float) -> None:
        """Fill the small filesystem that holds the tables (see :meth:`small_disk`) with a ballast file,
        hold it full for the plan's ``disk_full_s``, then delete the ballast."""
        await asyncio.sleep(offer_s / 4)
        ballast = self.small / "ballast"
        await asyncio.to_thread(_fill, ballast)
        phase.faults += 1
        await asyncio.sleep(self.plan.disk_full_s)
        ballast.unlink()

    async def small_disk(self) -> None:
        """A 96 MB ext4 on a loop device, mounted in the run's folder, and every table and index of the
        database moved onto it (a tablespace). PostgreSQL's WAL stays on the big disk, so a full small
        one fails writes with SQLSTATE 53100 instead of stopping the server."""
        await asyncio.to_thread(_loop_mount, self.dir / "small.img", self.small, 96 << 20)
        self.mounted = True
        space = self.small / "pg"
        space.mkdir()
        owner = self._svc().postgres_owner()
        if owner is not None:
            os.chown(space, owner.pw_uid, owner.pw_gid)
        await self._query(f"CREATE TABLESPACE small LOCATION '{space}'")
        await self._query("ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE small")
        await self._query("ALTER INDEX ALL IN TABLESPACE pg_default SET TABLESPACE small")
        # Compact them, so that new rows need new pages (the free space earlier phases left in the
        # tables, such as the uploads collected after their results, would otherwise absorb the phase).
        tables = await self._query(
            "SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace "
            "WHERE t.spcname = 'small' AND c.relkind = 'r'"
        )
        for row in tables:
            await self._query(f"VACUUM FULL {row['name']}")

    def unmount_small_disk(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.small)], capture_output=True, check=False)
            self.mounted = False
        with contextlib.suppress(OSError):
            (self.dir / "small.img").unlink()

    async def balanced_relays(self, phase: Phase, offer_s: float) -> None:
        """Under load through HAProxy: SIGKILL relay 0, start it again, SIGKILL relay 1, start it again."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.forker, self.start_relay, 1)
        await asyncio.sleep(offer_s / 5)
        for slot in (0, 1):
            await self.kill_relay_counted(slot)
            phase.faults += 1
            await asyncio.sleep(offer_s / 5)
            await loop.run_in_executor(self.forker, self.start_relay, slot)
            await asyncio.sleep(offer_s / 5)

    # ----- the whole run -----------------------------------------------------------------------

    async def _front_ready(self, timeout_s: float = 60.0) -> None:
        """Until HAProxy has seen a relay healthy and passes a request through."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"no relay became healthy behind HAProxy; see {self.dir / 'haproxy.log'}")

    async def _setup(self) -> None:
        async with httpx.AsyncClient(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as admin:
            r = await admin.post("/admin/tenants", json={"name": "chaos", "tier": "guardian"})
            r.raise_for_status()
            self.tenant = r.json()["api_key"]
            for slot in range(self.plan.workers):
                code = (await admin.post("/admin/enroll-codes", json={})).json()["code"]
                r = await admin.post("/v1/workers/enroll", json={"code": code, "name": f"chaos-{slot}"})
                r.raise_for_status()
                self.tokens[slot] = (r.json()["worker_id"], r.json()["token"])

    async def run(self) -> dict:
        p = self.plan
        root = self.dir / "services"
        self.services = EmbeddedServices(durable=True, root=root)
        root.mkdir(exist_ok=True)
        self.services.start()
        t0 = time.monotonic()
        try:
            self.start_relay(0)
            if self.front_port != self.relay_ports[0]:
                self.start_balancer()
                await self._front_ready()
            await self._setup()
            for slot in range(p.workers):
                self.start_worker(slot)
            poison = {"the-poison": [self.images[0], poison_jpeg(self.images[1]), self.images[2 % len(self.images)]]}
            plan = {
                "workers": (p.worker_events, self.kill_workers, None),
                "redis": (p.redis_events, self.kill_redis, None),
                "postgres": (p.pg_events, self.stop_postgres, None),
                "poison": (p.poison_events, self.poison_fault, poison),
                "relay": (p.relay_events, self.restart_relay, None),
                "disk": (p.disk_events, self.fill_disk, None),
                "balanced": (p.balanced_events, self.balanced_relays, None),
            }
            phases = []
            for name in p.phases:
                n, fault, extra = plan[name]
                if name == "disk":
                    await self.small_disk()
                phase = await self.run_phase(name, n, fault, extra)
                if name == "poison":
                    phase.poison_deliveries = self._poison_crashes()
                    self.echo(f"  poison deliveries: {phase.poison_deliveries}, event {phase.poison_status}")
                phases.append(phase)
            dead = await self._dead_letter_ids()
        finally:
            if self.db is not None:
                with contextlib.suppress(Exception):
                    await self.db.close()
            self.stop_all()
            self.forker.submit(self.services.stop).result()
            self.forker.shutdown()
            self.unmount_small_disk()
            shutil.rmtree(root, ignore_errors=True)  # the data; the logs stay
        totals = {
            key: sum(getattr(ph, key) for ph in phases)
            for key in (
                "faults",
                "submitted",
                "accepted",
                "lost",
                "duplicate_rows",
                "unexpected_failed",
                "unstored_202",
                "requeued",
                "re_reviews",
                "dead_letters",
                "answers_503",
                "answers_503_without_retry_after",
                "server_errors",
                "moment_errors",
                "moments_reviewed",
                "crashes",
            )
        }
        totals["retried"] = {}
        for ph in phases:
            for status, n in ph.retried.items():
                totals["retried"][status] = totals["retried"].get(status, 0) + n
        return {
            "plan": {k: v for k, v in asdict(p).items() if k != "model"} | {"model": Path(p.model).name},
            "phases": [asdict(ph) for ph in phases],
            "totals": totals,
            "dead_letter_stream": dead,
            "seconds": round(time.monotonic() - t0, 1),
            "logs": str(self.dir),
        }

    def _poison_crashes(self) -> int:
        try:
            return len(self.poison_log.read_text().split())
        except FileNotFoundError:
            return 0

    async def _dead_letter_ids(self) -> list[str]:
        import redis.asyncio as aioredis

        from core import keys

        client = aioredis.from_url(self._svc().redis_url)
        try:
            ids = []
            async for key in client.scan_iter(keys.dead("*")):
                rows = await client.xrange(key) or []
                ids += [v.decode() for _, f in rows if f is not None and isinstance(v := f.get(b"id"), bytes)]
            return ids
        finally:
            await client.aclose()
