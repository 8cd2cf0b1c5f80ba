"""``insane services up|down|status``: throwaway Redis and PostgreSQL for development and demos."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)


def state_file() -> Path:
    return platformdirs.user_state_path("insane") / "services.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "services",
        help="start, stop or inspect throwaway Redis and PostgreSQL servers",
        description="Start a throwaway Redis and PostgreSQL on free loopback ports in a temporary folder. "
        "`up` runs in the foreground, prints the URLs and stops both servers on Ctrl-C or `down`; "
        "the servers never outlive it.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start both servers and keep them until Ctrl-C or `insane services down`")
    up.add_argument("--no-redis", action="store_true", help="start PostgreSQL only")
    up.add_argument("--no-postgres", action="store_true", help="start Redis only")
    up.add_argument(
        "--fast",
        action="store_true",
        help="turn off fsync and AOF (for tests; never for benchmarks or anything you keep)",
    )
    up.set_defaults(func=up_command)
    down = actions.add_parser("down", help="stop the servers that `insane services up` started")
    down.set_defaults(func=down_command)
    status = actions.add_parser("status", help="show whether the servers are running, with their URLs")
    status.set_defaults(func=status_command)


def up_command(args: argparse.Namespace, settings) -> int:
    from insane.devkit.services import EmbeddedServices, ServiceError  # the relay and worker never load the kit

    stop = threading.Event()
    # SIGTERM (from `down` or a service manager) ends the wait like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    services = EmbeddedServices(redis=not args.no_redis, postgres=not args.no_postgres, durable=not args.fast)
    try:
        with services:
            info = {"owner_pid": os.getpid(), "root": str(services.root)}
            for name, server in services.servers.items():
                info[name] = {"url": server.url, "pid": server.pid}
                print(f"{name}: {server.url} (pid {server.pid})", flush=True)
            _write_state(info)
            print("ready; Ctrl-C or `insane services down` stops them", flush=True)
            while not stop.wait(0.5):
                for server in services.servers.values():
                    if server.process.poll() is not None:
                        log.error("%s exited with code %s", server.name, server.process.returncode)
                        return 1
    except ServiceError as exc:
        print(f"insane services: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        _clear_state(os.getpid())
    print("stopped", flush=True)
    return 0


def down_command(args: argparse.Namespace, settings) -> int:
    info = _read_state()
    if info is None:
        print("no services are running")
        return 0
    pid = info["owner_pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _clear_state(pid)
        print("no services are running (stale state removed)")
        return 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        print(f"the services owner (pid {pid}) did not stop within 30 s", file=sys.stderr)
        return 1
    print("stopped")
    return 0


def status_command(args: argparse.Namespace, settings) -> int:
    info = _read_state()
    if info is None or not _alive(info["owner_pid"]):
        print("not running")
        return 3
    for name in ("redis", "postgres"):
        if name in info:
            state = "running" if _alive(info[name]["pid"]) else "DEAD"
            print(f"{name}: {info[name]['url']} (pid {info[name]['pid']}, {state})")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); /proc tells the truth.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return True


def _write_state(info: dict) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


def _read_state() -> dict | None:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None


def _clear_state(owner_pid: int) -> None:
    info = _read_state()
    if info is not None and info.get("owner_pid") == owner_pid:
        state_file().unlink(missing_ok=True)
