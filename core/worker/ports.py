"""The seams the worker engine is built on: where leases come from, where a moment's bytes come from,
and what runs the model.

``LeaseSource`` has two implementations (:mod:`core.worker.http_source` over the relay's worker API,
:mod:`core.worker.redis_source` for LAN workers on Redis Streams). ``PreloaderPort`` is what
:class:`core.preload.Preloader` offers the worker, and ``DetectorPort`` the part of
:class:`core.detect.base.Detector` (what :func:`core.detect.load_detector` returns) the worker uses.
A ``...Port`` is the worker's view of the class of the same name; tests pass fakes that fit it.

Errors a source raises (everything else is a bug)::

    SourceError
     ├── RelayUnavailable   connect error, timeout, 5xx, 429: retry later with backoff
     ├── TokenRejected      401/403: the worker token is wrong or revoked; retry slowly, tell the user
     └── RequestRejected    another 4xx: this request will never succeed (e.g. a blob that is gone)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from core.protocol import (
    Detection,
    EventResult,
    Heartbeat,
    HeartbeatResponse,
    LeasedEvent,
    LeaseResponse,
    MomentRef,
    ResultsResponse,
)


class SourceError(Exception):
    """A lease source could not do what was asked. ``str()`` is fit to show the user."""


class RelayUnavailable(SourceError):
    """Transient: the relay (or Redis) is unreachable or overloaded. Retry with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenRejected(SourceError):
    """The worker token was refused."""


class RequestRejected(SourceError):
    """The relay refused this request for good (a 4xx other than auth/429)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@runtime_checkable
class LeaseSource(Protocol):
    async def lease(self, max_events: int, wait_s: float) -> LeaseResponse: ...

    async def fetch_blob(self, blob: str, event: LeasedEvent) -> bytes: ...

    async def post_results(self, results: Sequence[EventResult]) -> ResultsResponse: ...

    async def heartbeat(self, beat: Heartbeat) -> HeartbeatResponse: ...

    async def aclose(self) -> None: ...


class PreloaderPort(Protocol):
    """Fetches a leased event's moments ahead of the detector (:class:`core.preload.Preloader`).

    ``get`` raises one of :func:`core.worker.loading.fetch_errors` for a moment that cannot be had."""

    def prefetch(self, event: LeasedEvent, moments: Sequence[MomentRef]) -> None: ...  # queue; returns at once

    async def get(self, event: LeasedEvent, moment: MomentRef) -> bytes: ...

    def forget(self, event_id: UUID) -> None: ...  # the event is done: drop what is cached or queued for it


class DetectorPort(Protocol):
    """The part of :class:`core.detect.base.Detector` the worker uses."""

    max_batch: int | None  # None: any batch size
    model_name: str

    @property
    def provider(self) -> str: ...

    def prepare(self, data: bytes) -> Any: ...  # CPU, thread-safe; raises core.imageinfo.ImageError

    def detect(self, batch: list[Any]) -> list[list[Detection]]: ...  # blocking; one inference thread

    def set_provider(self, name: str) -> None: ...

    def available_providers(self) -> list[str]: ...

    def close(self) -> None: ...
