"""The worker's image preloader: fetch moments ahead of the detector, in priority order, within limits.

    async with Preloader(blobs=lease_source, guard=SsrfGuard(dedicated_tenant=tenant)) as preloader:
        preloader.prefetch(event, event.moments)          # queue; returns at once
        data = await preloader.get(event, event.moments[0])   # bytes, or FetchError / ImageError
        preloader.forget(event.event_id)                  # when the event's result is posted

Order: Pro before standard, older events (``created_at``) before newer, lower moment index first; a ``get``
for a moment that has not started jumps the queue. A global and a per-host limit bound concurrent fetches, and
prefetching pauses while the cache already holds ``cache_bytes`` of unread images. URL moments go through the
SSRF guard on every hop (redirects are followed here, at most MAX_REDIRECTS, each re-checked), stream with a
byte limit that does not trust Content-Length, and are checked from their first KB: wrong magic bytes or a
decompression-bomb header abort the download. Every fetch has an overall deadline. A failed fetch is an error
for that moment only.

Without ``client`` the preloader builds its own on a :class:`core.ssrf.GuardedTransport`. An injected client
should use one too (tests pass an ``httpx.MockTransport``): the guard's checks run either way, but only the
guarded transport pins the connection to the vetted address.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol
from uuid import UUID

import httpx

from core.imageinfo import CorruptImage, ImageError, check_pixels, probe
from core.protocol import LANE_RANK, LeasedEvent, MomentRef
from core.ssrf import PIN_EXTENSION, GuardedTransport, ResolveError, SsrfBlocked, SsrfGuard

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
HEADER_PROBE_BYTES = 1024  # probe the image header once this much has arrived
HEADER_SEARCH_LIMIT = 256 << 10  # past this, stop re-probing while streaming (a JPEG's EXIF may be long)
_BLOB_HOST = "(relay blobs)"

Key = tuple[UUID, int]


class BlobSource(Protocol):
    async def fetch_blob(self, blob: str, event: LeasedEvent) -> bytes: ...


class FetchError(Exception):
    """A moment that could not be fetched (network, HTTP status, size, deadline, SSRF refusal).

    ``str()`` is a precise reason fit for the moment's ``error`` field.
    """


@dataclass(eq=False)
class _Job:
    key: Key
    event: LeasedEvent
    moment: MomentRef
    host: str
    order: tuple[int, float, int, int]  # lane, created_at, event first seen, moment index
    urgent: bool = False
    version: int = 0
    state: str = "queued"  # queued -> running -> done
    forgotten: bool = False
    data: bytes | None = None
    error: Exception | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def heap_entry(self, seq: int) -> tuple[tuple[int, int, float, int, int, int], int, _Job]:
        return ((0 if self.urgent else 1, *self.order, seq), self.version, self)


class Preloader:
    def __init__(
        self,
        *,
        blobs: BlobSource,
        client: httpx.AsyncClient | None = None,
        guard: SsrfGuard | None = None,
        cache_bytes: int = 256 << 20,
        global_limit: int = 16,
        per_host_limit: int = 4,
        max_bytes: int = 20 << 20,
        max_pixels: int = 50_000_000,
        deadline_s: float = 15.0,
    ) -> None:
        if global_limit < 1 or per_host_limit < 1:
            raise ValueError("global_limit and per_host_limit must be at least 1")
        self._blobs = blobs
        self._guard = guard if guard is not None else SsrfGuard()
        self._client = client
        self._own_client = client is None
        self._cache_limit = cache_bytes
        self._global_limit = global_limit
        self._per_host_limit = per_host_limit
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._deadline_s = deadline_s

        self._jobs: dict[Key, _Job] = {}
        self._heap: list[tuple[tuple[int, int, float, int, int, int], int, _Job]] = []
        self._seq = itertools.count()
        self._event_seq: dict[UUID, int] = {}
        self._active: set[_Job] = set()
        self._host_active: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        # Two LRU lists: images nobody has read yet are evicted only after every image already read.
        self._unread: OrderedDict[Key, bytes] = OrderedDict()
        self._read: OrderedDict[Key, bytes] = OrderedDict()
        self._unread_bytes = 0
        self._read_bytes = 0
        self._hits = 0
        self._misses = 0
        self._fetched_bytes = 0
        self._fetched_count = 0
        self._started = False
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def __aenter__(self) -> Preloader:
        if self._closed or self._started:
            raise RuntimeError("a Preloader cannot be entered twice or reopened once closed")
        if self._client is None:
            transport = GuardedTransport(
                self._guard, limits=httpx.Limits(max_connections=self._global_limit, max_keepalive_connections=8)
            )
            self._client = httpx.AsyncClient(
                transport=transport, follow_redirects=False, trust_env=False, timeout=self._deadline_s
            )
        self._started = True
        self._pump()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        closed = FetchError("the preloader was closed before this moment was fetched")
        for job in self._jobs.values():
            if job.state == "queued":
                self._finish(job, None, closed)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        try:
            # Shielded so that a cancelled shutdown still waits for the fetches to let go of their sockets.
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            if self._own_client and self._client is not None:
                await self._client.aclose()

    # --- the API the worker uses --------------------------------------------------------------------------

    def prefetch(self, event: LeasedEvent, moments: Sequence[MomentRef]) -> None:
        """Queue fetches for ``moments`` of ``event`` (those not already cached or queued)."""
        self._check_open()
        for moment in moments:
            key = (event.event_id, moment.index)
            if key not in self._jobs and key not in self._unread and key not in self._read:
                self._add_job(event, moment)
        self._pump()

    async def get(self, event: LeasedEvent, moment: MomentRef) -> bytes:
        """The moment's bytes: from the cache, or after its fetch (started now, ahead of the queue, if need be)."""
        self._check_open()
        if not self._started:
            raise RuntimeError("enter the preloader (async with) before calling get()")
        key = (event.event_id, moment.index)
        data = self._cached(key)
        if data is not None:
            self._hits += 1
            self._pump()  # a read image frees room for prefetching
            return data
        self._misses += 1
        job = self._jobs.get(key) or self._add_job(event, moment)
        if job.state == "queued" and not job.urgent:
            job.urgent = True
            job.version += 1  # the old heap entry goes stale
            heapq.heappush(self._heap, job.heap_entry(next(self._seq)))
        self._pump()
        await job.done.wait()  # a cancelled get leaves the fetch running for the next reader
        if job.error is not None:
            if self._jobs.get(key) is job:
                del self._jobs[key]  # reported once; a later get tries again
            raise job.error
        assert job.data is not None
        if self._cached(key) is not None:  # mark read, if the cache kept it
            self._pump()
        return job.data

    def forget(self, event_id: UUID) -> None:
        """Drop the queued fetches and cached bytes of a finished event; its running fetches are cancelled."""
        gone = FetchError("the event was forgotten before this moment was fetched")
        for key in [k for k in self._jobs if k[0] == event_id]:
            job = self._jobs.pop(key)
            job.forgotten = True
            if job.state == "queued":
                self._finish(job, None, gone)
            elif job.state == "running" and job.task is not None:
                job.task.cancel()
        for cache in (self._unread, self._read):
            for key in [k for k in cache if k[0] == event_id]:
                self._drop(key)
        self._event_seq.pop(event_id, None)
        self._pump()

    def stats(self) -> dict[str, float]:
        return {
            "queued": float(sum(1 for job in self._jobs.values() if job.state == "queued")),
            "in_flight": float(len(self._active)),
            "cache_bytes": float(self._unread_bytes + self._read_bytes),
            "cache_hits": float(self._hits),
            "cache_misses": float(self._misses),
            "fetched_bytes": float(self._fetched_bytes),
        }

    # --- queue and scheduling -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the preloader is closed")

    def _add_job(self, event: LeasedEvent, moment: MomentRef) -> _Job:
        event_seq = self._event_seq.setdefault(event.event_id, len(self._event_seq))
        order = (LANE_RANK[event.lane], event.created_at.timestamp(), event_seq, moment.index)
        job = _Job((event.event_id, moment.index), event, moment, _host_of(moment), order)
        self._jobs[job.key] = job
        heapq.heappush(self._heap, job.heap_entry(next(self._seq)))
        return job

    def _pump(self) -> None:
        """Start the best waiting fetches the limits allow. Called whenever something changes."""
        if not self._started or self._closed:
            return
        aside = []
        while self._heap and len(self._active) < self._global_limit:
            entry = heapq.heappop(self._heap)
            _, version, job = entry
            if job.state != "queued" or version != job.version:
                continue  # stale: bumped, forgotten or already done
            if not job.urgent and not self._room_to_prefetch():
                aside.append(entry)  # the cache is full of unread images: prefetch waits for the reader
                break  # urgent entries sort first, so nothing after this one is urgent
            if self._host_active[job.host] >= self._per_host_limit:
                aside.append(entry)
                continue
            self._start(job)
        for entry in aside:
            heapq.heappush(self._heap, entry)

    def _room_to_prefetch(self) -> bool:
        # Unread images plus the prefetches in flight (at the average image size so far) plus one more must
        # fit, or a prefetch would only push out an image nobody has read yet.
        average = self._fetched_bytes / (self._fetched_count or 1)
        prefetching = sum(1 for job in self._active if not job.urgent)
        return self._unread_bytes + (prefetching + 1) * average <= self._cache_limit

    def _start(self, job: _Job) -> None:
        job.state = "running"
        self._active.add(job)
        self._host_active[job.host] += 1
        job.task = asyncio.create_task(self._run(job), name=f"preload {job.key[0]}#{job.key[1]}")
        self._tasks.add(job.task)
        job.task.add_done_callback(self._tasks.discard)

    async def _run(self, job: _Job) -> None:
        data: bytes | None = None
        error: Exception | None = None
        try:
            data = await self._fetch(job)
        except asyncio.CancelledError:
            error = FetchError(
                "the event was forgotten before this moment was fetched"
                if job.forgotten
                else "the preloader was closed before this moment was fetched"
                if self._closed
                else "the fetch was cancelled"
            )
            raise
        except (FetchError, ImageError) as exc:
            error = exc
        except Exception as exc:  # one moment's unexpected failure must not take the worker down
            log.exception("fetch of moment %s of event %s failed unexpectedly", job.key[1], job.key[0])
            error = FetchError(f"unexpected error while fetching: {exc!r}")
        finally:
            self._finish(job, data, error)

    def _finish(self, job: _Job, data: bytes | None, error: Exception | None) -> None:
        if job.state == "running":
            self._active.discard(job)
            self._host_active[job.host] -= 1
            if not self._host_active[job.host]:
                del self._host_active[job.host]
        job.state = "done"
        job.data, job.error = data, error
        if error is not None:
            log.info("moment %s of event %s not fetched: %s", job.key[1], job.key[0], error)
        elif data is not None:
            self._fetched_bytes += len(data)
            self._fetched_count += 1
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]
            if not job.forgotten and not self._closed:
                self._store(job.key, data)
        job.done.set()
        self._pump()

    # --- cache --------------------------------------------------------------------------------------------

    def _cached(self, key: Key) -> bytes | None:
        data = self._read.get(key)
        if data is not None:
            self._read.move_to_end(key)
            return data
        data = self._unread.pop(key, None)
        if data is not None:
            self._unread_bytes -= len(data)
            self._read[key] = data
            self._read_bytes += len(data)
        return data

    def _store(self, key: Key, data: bytes) -> None:
        if len(data) > self._cache_limit:
            return
        while self._unread_bytes + self._read_bytes + len(data) > self._cache_limit:
            self._drop(next(iter(self._read or self._unread)))
        self._unread[key] = data
        self._unread_bytes += len(data)

    def _drop(self, key: Key) -> None:
        data = self._read.pop(key, None)
        if data is not None:
            self._read_bytes -= len(data)
        data = self._unread.pop(key, None)
        if data is not None:
            self._unread_bytes -= len(data)

    # --- fetching -----------------------------------------------------------------------------------------

    async def _fetch(self, job: _Job) -> bytes:
        what = f"blob {job.moment.blob}" if job.moment.blob is not None else job.host
        try:
            async with asyncio.timeout(self._deadline_s):
                if job.moment.blob is not None:
                    return await self._fetch_blob(job)
                return await self._fetch_url(job)
        except TimeoutError:
            raise FetchError(f"{what}: no complete image within the {self._deadline_s:g} s deadline") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{what}: {_describe(exc)}") from exc

    async def _fetch_blob(self, job: _Job) -> bytes:
        assert job.moment.blob is not None
        data = await self._blobs.fetch_blob(job.moment.blob, job.event)
        if len(data) > self._max_bytes:
            raise FetchError(f"blob {job.moment.blob} is {len(data)} bytes, over the limit of {self._max_bytes}")
        self._check_image(data, final=True)
        return data

    async def _fetch_url(self, job: _Job) -> bytes:
        assert job.moment.url is not None and self._client is not None
        guard = self._guard.for_event(job.event)
        url: str | httpx.URL = job.moment.url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                target = await guard.check(url)
            except SsrfBlocked as exc:
                log.warning("refused moment %s of event %s: %s", job.key[1], job.key[0], exc)
                raise FetchError(f"refused{' redirect' if hop else ''}: {exc}") from exc
            except ResolveError as exc:
                raise FetchError(str(exc)) from exc
            request = self._client.build_request(
                "GET",
                target.url,
                headers={"Accept": "image/jpeg, image/png;q=0.9", "Accept-Encoding": "identity"},
                extensions={PIN_EXTENSION: target},
            )
            response = await self._client.send(request, stream=True, follow_redirects=False)
            try:
                location = response.headers.get("location")
                if response.is_redirect and location:
                    try:
                        url = response.url.join(location)
                    except httpx.InvalidURL as exc:
                        raise FetchError(f"refused redirect: not a valid URL: {exc}") from exc
                    continue
                if response.status_code != 200:
                    raise FetchError(f"{target.host} answered HTTP {response.status_code} {response.reason_phrase}")
                return await self._read_body(response, target.host)
            finally:
                await response.aclose()
        raise FetchError(f"{job.host}: more than {MAX_REDIRECTS} redirects")

    async def _read_body(self, response: httpx.Response, host: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise FetchError(f"{host}: Content-Length {declared} is over the limit of {self._max_bytes} bytes")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError(f"{host}: refused a {encoding!r}-encoded image (asked for identity)")
        body = bytearray()
        known = False
        # Identity-encoded only (checked above), so these are the raw bytes; aiter_bytes also serves a body
        # that a transport already read into memory.
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                raise FetchError(f"{host}: the image is over the limit of {self._max_bytes} bytes")
            if not known and HEADER_PROBE_BYTES <= len(body) <= HEADER_SEARCH_LIMIT + len(chunk):
                known = self._check_image(bytes(body), final=False)
        if not known:
            self._check_image(bytes(body), final=True)
        return bytes(body)

    def _check_image(self, data: bytes, *, final: bool) -> bool:
        """Magic bytes and pixel count from the header; False while a partial header is still incomplete."""
        try:
            info = probe(data)
        except CorruptImage:
            if final:
                raise
            return False
        check_pixels(info, self._max_pixels)
        return True


def _host_of(moment: MomentRef) -> str:
    if moment.url is None:
        return _BLOB_HOST
    try:
        return httpx.URL(moment.url).host.lower()
    except httpx.InvalidURL:
        return "(invalid URL)"


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
