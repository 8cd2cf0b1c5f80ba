"""The LAN API's server: uvicorn on the worker's own event loop, started and stopped with the worker.

    server = LanServer(worker, LanConfig.from_settings(settings))
    await server.start()          # binds (LanError with a sentence when it cannot), then serves
    server.url, server.stats()    # "http://127.0.0.1:32168", LanStats for the tray
    await server.stop()           # stops taking requests, lets the ones in progress finish

Imported only when the user turns the API on (``--serve-deepstack`` or the tray's switch): this and the
rest of ``core/lan`` are the only parts of ``core`` that import Starlette and uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from core.lan.address import DEFAULT_PORT, parse_address
from core.lan.app import create_app
from core.lan.service import LanService, LanStats

log = logging.getLogger(__name__)


class LanError(Exception):
    """The LAN API cannot start; ``str()`` says why and what to change."""


@dataclass(frozen=True)
class LanConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    key: str | None = None
    max_concurrent: int = 8
    max_image_bytes: int = 8_000_000

    @classmethod
    def from_settings(cls, settings: Any, address: str | None = None) -> LanConfig:
        host, port = parse_address(address or settings.serve_deepstack or str(DEFAULT_PORT))
        key = settings.deepstack_api_key.get_secret_value() if settings.deepstack_api_key else None
        return cls(host, port, key, settings.deepstack_max_concurrent, settings.max_image_bytes)


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the worker (or the tray) owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LanServer:
    def __init__(self, worker: Any, config: LanConfig) -> None:
        self.config = config
        self.service = LanService(worker, config.max_concurrent)
        self.app = create_app(self.service, config.key, config.max_image_bytes)
        self._server: _QuietServer | None = None
        self._task: asyncio.Task | None = None
        self._sock: socket.socket | None = None
        self.host, self.port = config.host, config.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def serving(self) -> bool:
        return self._task is not None and not self._task.done()

    def stats(self) -> LanStats:
        return self.service.stats()

    def _bind(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise LanError(f"DeepStack API: cannot use the address {self.config.host!r}: {exc.strerror}") from None
        family, _, proto, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            where = f"{self.config.host}:{self.config.port}"
            raise LanError(f"DeepStack API: cannot listen on {where}: {exc.strerror or exc}") from None
        return sock

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("a LanServer starts once")
        self._sock = self._bind()
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            # Open connections at most, uploads included (past it uvicorn answers 503 at once): requests in
            # review are bounded by LanService; this bounds the ones still sending their picture.
            limit_concurrency=max(64, 8 * self.config.max_concurrent),
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="deepstack-lan")
        while not self._server.started:
            if self._task.done():
                self._sock.close()
                raise LanError(f"DeepStack API: the server on {self.url} stopped at start ({self._task.exception()})")
            await asyncio.sleep(0.01)
        log.info(
            "DeepStack / CodeProject.AI API serving on %s (key %s)", self.url, "set" if self.config.key else "none"
        )

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._sock is not None:
            self._sock.close()
        log.info("DeepStack API on %s stopped", self.url)
