"""The seams the worker engine is built on: where leases come from, and what runs the model.

``LeaseSource`` has two implementations (:mod:`core.worker.http_source` over the relay's worker API,
:mod:`core.worker.redis_source` for LAN workers on Redis Streams). ``Detector`` is what
:func:`core.detect.load_detector` returns; the worker only uses the members below.

Errors a source raises (everything else is a bug)::

    SourceError
     ├── RelayUnavailable   connect error, timeout, 5xx, 429: retry later with backoff
     ├── TokenRejected      401/403: the worker token is wrong or revoked; retry slowly, tell the user
     └── RequestRejected    another 4xx: this request will never succeed (e.g. a blob that is gone)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from core.protocol import (
    Detection,
    EventResult,
    Heartbeat,
    HeartbeatResponse,
    LeasedEvent,
    LeaseResponse,
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


class Detector(Protocol):
    """The part of :mod:`core.detect`'s detector the worker uses."""

    max_batch: int
    model_name: str
    provider: str

    def prepare(self, data: bytes) -> Any: ...  # CPU, thread-safe; raises core.imageinfo.ImageError

    def detect(self, batch: list[Any]) -> list[list[Detection]]: ...  # blocking; one inference thread

    def set_provider(self, name: str) -> None: ...

    def available_providers(self) -> list[str]: ...

    def close(self) -> None: ...
