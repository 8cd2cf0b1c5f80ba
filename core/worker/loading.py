"""How the worker gets a moment's bytes: through a preloader built per run.

The factory receives the lease source (the preloader fetches uploaded moments through its
``fetch_blob``) and returns an async context manager yielding a :class:`core.worker.ports.PreloaderPort`:
``prefetch(event, moments)``, ``await get(event, moment) -> bytes`` and ``forget(event_id)``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import cache

from core.imageinfo import ImageError
from core.worker.ports import LeaseSource, PreloaderPort, SourceError

PreloaderFactory = Callable[[LeaseSource], AbstractAsyncContextManager[PreloaderPort]]


def default_preloader_factory(source: LeaseSource) -> AbstractAsyncContextManager[PreloaderPort]:
    from core.preload import Preloader

    return Preloader(blobs=source)


@cache
def fetch_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "this moment could not be fetched" (the rest of the event goes on)."""
    from core.preload import FetchError

    return (ImageError, SourceError, FetchError)
