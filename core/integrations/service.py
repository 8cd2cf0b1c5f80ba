"""The run loop both bridges share: long-lived tasks until a stop is asked for.

tasks = [asyncio.create_task(link.run()), asyncio.create_task(follow())]
await until_stopped(stop, tasks)       # returns when ``stop`` is set; re-raises if a task died first
await cancel(tasks)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def until_stopped(stop: asyncio.Event, tasks: Iterable[asyncio.Task]) -> None:
    waiter = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    for task in done:
        if task is not waiter and not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s stopped: %r", task.get_name(), exc)
            raise exc


async def cancel(tasks: Iterable[asyncio.Task]) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
