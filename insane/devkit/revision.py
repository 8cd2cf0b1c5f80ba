"""A relay of this checkout or of an older commit, as a child process, for benchmarks that compare the two.

    with checkout("af2ffdb") as source:                       # `git worktree add --detach` into a temp dir
        with RelayProcess(services, source) as old, RelayProcess(services) as new:
            old.url, new.url                                  # each on its own fresh database and Redis db
            before = new.cpu_s(); ...; new.cpu_s() - before   # the relay process's CPU time (user + system)

Each relay runs ``python -m insane relay --port 0`` with ``PYTHONPATH`` (and the working folder) set to its
source tree, so an older revision imports its own ``core/`` and ``relay/``, never this checkout's. Each gets a
database of its own (created empty; the relay migrates it to its own schema when it starts) and a flushed
Redis database index, with the kit's admin token. The worktree is removed on exit, also after a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from insane.devkit import ROOT
from insane.devkit.client import ADMIN_TOKEN
from insane.devkit.procs import stop


class RevisionError(RuntimeError):
    """A revision could not be checked out, or its relay did not start; ``str()`` says why."""


@contextlib.contextmanager
def checkout(commit: str, repo: Path = ROOT) -> Iterator[Path]:
    """``commit`` of ``repo`` checked out (detached) in a temporary worktree; removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="insane-rev-"))
    folder = parent / "src"
    added = subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(folder), commit],
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        raise RevisionError(f"cannot check out {commit}: {added.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(folder)], capture_output=True, check=False
        )
        shutil.rmtree(parent, ignore_errors=True)


def revision_label(commit: str, repo: Path = ROOT) -> str:
    """``commit``'s short hash, or ``commit`` itself when git does not know it."""
    got = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", commit], capture_output=True, text=True, check=False
    )
    return got.stdout.strip() or commit


class RelayProcess:
    """``insane relay`` from ``source`` (default: this checkout) in a child process, on fresh storage."""

    def __init__(self, services, source: Path = ROOT, redis_query: str = "", **settings: str) -> None:
        self.services = services
        self.source = Path(source)
        self.redis_query = redis_query  # redis-py client options in the URL, e.g. "max_connections=400"
        self.settings = settings  # extra INSANE_* settings, by lower-case name: lane_backlog_max="100000"
        self.url = ""
        self.database_url = ""
        self.redis_url = ""
        self._proc: subprocess.Popen | None = None
        self._stderr: list[str] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSANE_")}
        env.update(
            PYTHONPATH=str(self.source),
            INSANE_DATABASE_URL=self.database_url,
            INSANE_REDIS_URL=self.redis_url,
            INSANE_ADMIN_TOKEN=ADMIN_TOKEN,
            INSANE_RELAY_MIGRATE_ON_START="true",
            INSANE_LOG_LEVEL="WARNING",
        )
        env.update({f"INSANE_{k.upper()}": str(v) for k, v in self.settings.items()})
        return env

    def __enter__(self) -> RelayProcess:
        from insane.devkit.relay import fresh_database, fresh_redis_url

        self.database_url = fresh_database(self.services, migrate=False)
        self.redis_url = fresh_redis_url(self.services) + (f"?{self.redis_query}" if self.redis_query else "")
        proc = self._proc = subprocess.Popen(
            [sys.executable, "-m", "insane", "relay", "--port", "0"],
            env=self.env(),
            cwd=self.source,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None  # both are pipes
        threading.Thread(target=self._drain_stderr, args=(proc.stderr,), daemon=True).start()
        line = proc.stdout.readline()
        found = re.match(r"relay listening on (http://\S+)", line)
        if not found:
            self.stop()
            raise RevisionError(f"the relay of {self.source} did not start: {line!r} {self.log_tail()}")
        self.url = found[1]
        self._wait_ready(proc)
        return self

    def _wait_ready(self, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
        """The line above comes before the app's start (and migrations): wait until /readyz says 200."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RevisionError(f"the relay of {self.source} did not become ready: {self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _drain_stderr(self, stderr: IO[str]) -> None:
        for line in stderr:
            self._stderr.append(line.rstrip("\n"))
            del self._stderr[:-200]

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self._stderr[-lines:])

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the relay process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc, grace_s=30)
