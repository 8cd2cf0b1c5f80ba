"""The headless worker as ``insane worker`` runs it, with one injected fault: a poison image kills it.

    INSANE_RELAY_URL=... INSANE_WORKER_TOKEN=... INSANE_MODEL=model.onnx \\
    INSANE_CHAOS_POISON=<marker> INSANE_CHAOS_POISON_LOG=/tmp/poison.log python -m insane.devkit.chaos.faultworker

Decoding a moment whose bytes contain the marker appends one line to the log and SIGKILLs this
process, the way a native decoder crash would end it: no result, no clean shutdown. The relay must
re-deliver that event a bounded number of times, then dead-letter it. Everything else is the real
worker (``core.worker.build.build_worker``), real detector, real lease source.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from core.settings import load_settings
from core.worker.build import build_detector, build_worker


class PoisonCrash:
    """A detector that dies in ``prepare`` on poison bytes and otherwise is the real one."""

    def __init__(self, inner: Any, marker: bytes, log_path: str) -> None:
        self._inner = inner
        self._marker = marker
        self._log_path = log_path

    def prepare(self, data: bytes) -> Any:
        if self._marker and self._marker in data:
            with open(self._log_path, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return self._inner.prepare(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _run(worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: loop.create_task(worker.stop()))
    await worker.run()


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(process)d %(name)s %(message)s")
    settings = load_settings()
    marker = os.environ.get("INSANE_CHAOS_POISON", "").encode()
    detector = PoisonCrash(build_detector(settings), marker, os.environ.get("INSANE_CHAOS_POISON_LOG", os.devnull))
    asyncio.run(_run(build_worker(settings, detector=detector)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
