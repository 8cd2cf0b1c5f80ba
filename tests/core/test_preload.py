"""The preloader: unit tests over httpx.MockTransport, then integration tests against a real local HTTP server."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.imageinfo import CorruptImage, ImageTooLarge, UnsupportedImage
from core.preload import FetchError, Preloader
from core.protocol import LeasedEvent, MomentRef
from core.ssrf import SsrfGuard
from tests.core.ssrf_payloads import PUBLIC_V4, TEST_HOST, ImageServer, ScriptedResolver, jpeg, response_head

SIZE = 4000
IMAGE = jpeg(640, 480, SIZE)
T0 = datetime(2030, 1, 1, tzinfo=UTC)


async def public(host: str, port: int) -> list[str]:
    return [PUBLIC_V4]


def make_event(
    lane: str = "standard",
    created: datetime = T0,
    n: int = 3,
    host: str = TEST_HOST,
    *,
    tenant: uuid.UUID | None = None,
    allow: list[str] | None = None,
    blobs: bool = False,
) -> LeasedEvent:
    event_id = uuid.uuid4()
    moments = [
        MomentRef(index=i, blob=f"{event_id}-{i}") if blobs else MomentRef(index=i, url=f"http://{host}/{event_id}/{i}")
        for i in range(n)
    ]
    return LeasedEvent(
        lease_id="lease",
        event_id=event_id,
        tenant_id=tenant or uuid.uuid4(),
        lane=lane,
        camera="door",  # type: ignore[arg-type]
        created_at=created,
        moments=moments,
        allow_private_hosts=allow or [],
    )


class Body(httpx.AsyncByteStream):
    """A response body that counts what it sent, can wait on a gate, and knows whether it was closed."""

    def __init__(self, chunks: list[bytes], gate: asyncio.Event | None = None, gate_after: int = 0) -> None:
        self.chunks, self.gate, self.gate_after = chunks, gate, gate_after
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if self.gate is not None and i == self.gate_after:
                await self.gate.wait()
            self.sent += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


class Cams:
    """The MockTransport handler: records requests, counts concurrency, serves what ``respond`` says."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.respond = respond or (lambda request: httpx.Response(200, content=IMAGE))
        self.paths: list[str] = []
        self.hosts: list[str] = []
        self.active: Counter[str] = Counter()
        self.max_active: Counter[str] = Counter()
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.paths.append(request.url.path)
        self.hosts.append(host)
        self.active[host] += 1
        self.active["*"] += 1
        for key in (host, "*"):
            self.max_active[key] = max(self.max_active[key], self.active[key])
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self.respond(request)
        finally:
            self.active[host] -= 1
            self.active["*"] -= 1

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


class Blobs:
    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        self.data = data or {}

    async def fetch_blob(self, blob: str, event: LeasedEvent) -> bytes:
        if blob not in self.data:
            raise FetchError(f"blob {blob} is gone (expired)")
        return self.data[blob]


def preloader(cams: Cams, resolver: ScriptedResolver | None = None, **kwargs: object) -> Preloader:
    guard = kwargs.pop("guard", None) or SsrfGuard(resolver=resolver or public)
    return Preloader(blobs=kwargs.pop("blobs", Blobs()), client=cams.client(), guard=guard, **kwargs)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (bounded; not a timing assertion)."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.001)
    assert condition()


def path(event: LeasedEvent, i: int) -> str:
    return f"/{event.event_id}/{i}"


# --- order and priority ----------------------------------------------------------------------------------------


async def test_pro_first_then_older_then_lower_index() -> None:
    cams = Cams()
    std_old, std_new = make_event("standard", T0), make_event("standard", T0 + timedelta(seconds=10))
    pro_new, pro_old = make_event("pro", T0 + timedelta(seconds=20)), make_event("pro", T0 + timedelta(seconds=5))
    pre = preloader(cams, global_limit=1)
    for event in (std_new, std_old, pro_new, pro_old):
        pre.prefetch(event, list(reversed(event.moments)))
    async with pre:
        await until(lambda: pre.stats()["queued"] == pre.stats()["in_flight"] == 0)
        for event in (std_new, std_old, pro_new, pro_old):
            for moment in event.moments:
                assert await pre.get(event, moment) == IMAGE
    expected = [path(e, i) for e in (pro_old, pro_new, std_old, std_new) for i in range(3)]
    assert cams.paths == expected
    assert pre.stats()["cache_hits"] == 12


async def test_get_jumps_the_queue() -> None:
    cams = Cams()
    cams.gate = asyncio.Event()
    event = make_event(n=5)
    async with preloader(cams, global_limit=1) as pre:
        pre.prefetch(event, event.moments)
        await until(lambda: len(cams.paths) == 1)
        waiting = asyncio.create_task(pre.get(event, event.moments[3]))
        await asyncio.sleep(0)
        cams.gate.set()
        assert await waiting == IMAGE
        for moment in event.moments:
            await pre.get(event, moment)
    assert cams.paths == [path(event, i) for i in (0, 3, 1, 2, 4)]


# --- cache ----------------------------------------------------------------------------------------------------------


async def test_cache_is_lru_and_bounded_in_bytes() -> None:
    cams = Cams()
    event = make_event(n=5)
    async with preloader(cams, cache_bytes=3 * SIZE + 100) as pre:
        for moment in event.moments:
            await pre.get(event, moment)
        assert pre.stats()["cache_bytes"] == 3 * SIZE
        await pre.get(event, event.moments[2])  # touch 2: now 3 is the least recently used
        await pre.get(event, event.moments[0])  # evicted: fetched again, evicting 3
        assert cams.paths.count(path(event, 0)) == 2
        requests = len(cams.paths)
        await pre.get(event, event.moments[2])
        await pre.get(event, event.moments[4])
        assert len(cams.paths) == requests
        await pre.get(event, event.moments[3])
        assert len(cams.paths) == requests + 1
        stats = pre.stats()
    assert stats["cache_bytes"] == 3 * SIZE
    assert (stats["cache_hits"], stats["cache_misses"]) == (3, 7)
    assert stats["fetched_bytes"] == 7 * SIZE


async def test_prefetch_stops_when_the_cache_holds_unread_images() -> None:
    cams = Cams()
    event = make_event(n=6)
    async with preloader(cams, cache_bytes=2 * SIZE + 10, global_limit=1) as pre:
        pre.prefetch(event, event.moments)
        await until(lambda: pre.stats()["cache_bytes"] == 2 * SIZE)
        await asyncio.sleep(0.01)
        assert len(cams.paths) == 2 and pre.stats()["queued"] == 4
        await pre.get(event, event.moments[0])  # read: its room goes to the next prefetch
        await until(lambda: len(cams.paths) == 3)
        for moment in event.moments[1:]:
            assert await pre.get(event, moment) == IMAGE
    assert cams.paths == [path(event, i) for i in range(6)]


# --- limits ---------------------------------------------------------------------------------------------------------


async def test_global_and_per_host_limits_keep_priority() -> None:
    cams = Cams()
    cams.gate = asyncio.Event()
    event = make_event(n=4, host="a.example")
    moments = [*event.moments]
    moments += [MomentRef(index=4 + i, url=f"http://b.example/{event.event_id}/{4 + i}") for i in range(4)]
    moments += [MomentRef(index=8 + i, url=f"http://c.example/{event.event_id}/{8 + i}") for i in range(4)]
    async with preloader(cams, global_limit=3, per_host_limit=2) as pre:
        pre.prefetch(event, moments)
        await until(lambda: len(cams.paths) == 3)
        assert cams.paths == [path(event, 0), path(event, 1), path(event, 4)]
        assert pre.stats()["in_flight"] == 3 and pre.stats()["queued"] == 9
        cams.gate.set()
        for moment in moments:
            assert await pre.get(event, moment) == IMAGE
    assert cams.max_active["*"] == 3
    assert max(cams.max_active[h] for h in ("a.example", "b.example", "c.example")) == 2


# --- size, time and image checks -------------------------------------------------------------------------------------


async def test_byte_limit_ignores_a_lying_content_length() -> None:
    body = Body([IMAGE[:1024]] + [b"\0" * 65536] * 40)
    cams = Cams(lambda r: httpx.Response(200, headers={"Content-Length": "1000"}, stream=body))
    event = make_event(n=1)
    async with preloader(cams, max_bytes=1 << 20) as pre:
        with pytest.raises(FetchError, match="over the limit of 1048576 bytes"):
            await pre.get(event, event.moments[0])
    assert body.sent <= 18 and body.closed


async def test_a_declared_oversize_body_is_not_read() -> None:
    body = Body([IMAGE])
    cams = Cams(lambda r: httpx.Response(200, headers={"Content-Length": str(50 << 20)}, stream=body))
    event = make_event(n=1)
    async with preloader(cams) as pre:
        with pytest.raises(FetchError, match=r"Content-Length 52428800 is over the limit of 20971520 bytes"):
            await pre.get(event, event.moments[0])
    assert body.sent == 0 and body.closed


async def test_deadline_covers_the_whole_fetch() -> None:
    body = Body([IMAGE[:2000], IMAGE[2000:]], gate=asyncio.Event(), gate_after=1)  # the rest never comes
    cams = Cams(lambda r: httpx.Response(200, stream=body))
    event = make_event(n=1)
    async with preloader(cams, deadline_s=0.2) as pre:
        with pytest.raises(FetchError, match=r"no complete image within the 0\.2 s deadline"):
            await pre.get(event, event.moments[0])
    assert body.sent == 1 and body.closed


async def test_a_decompression_bomb_header_stops_the_download() -> None:
    body = Body([jpeg(60000, 60000, 2048)[:1500]] + [b"\0" * 65536] * 100)
    cams = Cams(lambda r: httpx.Response(200, stream=body))
    event = make_event(n=1)
    async with preloader(cams) as pre:
        with pytest.raises(ImageTooLarge, match=r"3600\.0 megapixels, over the limit of 50\.0"):
            await pre.get(event, event.moments[0])
    assert body.sent == 1 and body.closed


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (b"<html>not found</html>" * 100, UnsupportedImage, "unknown file signature"),
        (b"GIF89a" + b"\0" * 2000, UnsupportedImage, "GIF is not supported"),
        (b"", UnsupportedImage, "empty file"),
        (IMAGE[:20], CorruptImage, "truncated"),
    ],
)
async def test_wrong_or_broken_images_fail_their_moment(content: bytes, error: type, words: str) -> None:
    cams = Cams(lambda r: httpx.Response(200, content=content))
    event = make_event(n=1)
    async with preloader(cams) as pre:
        with pytest.raises(error, match=words):
            await pre.get(event, event.moments[0])


async def test_a_failed_fetch_is_an_error_for_that_moment_only() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404) if request.url.path.endswith("/1") else httpx.Response(200, content=IMAGE)

    cams = Cams(respond)
    event = make_event(n=3)
    async with preloader(cams) as pre:
        pre.prefetch(event, event.moments)
        assert await pre.get(event, event.moments[0]) == IMAGE
        with pytest.raises(FetchError, match=rf"^{TEST_HOST} answered HTTP 404 Not Found$"):
            await pre.get(event, event.moments[1])
        assert await pre.get(event, event.moments[2]) == IMAGE
        with pytest.raises(FetchError, match="HTTP 404"):  # reported once, then tried again
            await pre.get(event, event.moments[1])
    assert cams.paths.count(path(event, 1)) == 2


async def test_encoded_bodies_are_refused() -> None:
    body = Body([b"\x1f\x8b" + IMAGE])
    cams = Cams(lambda r: httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=body))
    event = make_event(n=1)
    async with preloader(cams) as pre:
        with pytest.raises(FetchError, match="refused a 'gzip'-encoded image"):
            await pre.get(event, event.moments[0])
    assert body.sent == 0 and body.closed


# --- redirects and the guard ----------------------------------------------------------------------------------------


async def test_redirects_are_followed_and_each_hop_is_checked() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/0"):
            return httpx.Response(302, headers={"Location": "http://cdn.example/img.jpg"})
        if request.url.path.endswith("/1"):
            return httpx.Response(301, headers={"Location": "http://metadata.example/latest"})
        return httpx.Response(200, content=IMAGE)

    resolver = ScriptedResolver()
    resolver.set(TEST_HOST, [PUBLIC_V4])
    resolver.set("cdn.example", ["93.184.215.15"])
    resolver.set("metadata.example", ["169.254.169.254"])
    cams = Cams(respond)
    event = make_event(n=2)
    async with preloader(cams, resolver) as pre:
        assert await pre.get(event, event.moments[0]) == IMAGE
        with pytest.raises(
            FetchError,
            match=r"^refused redirect: metadata\.example resolves to 169\.254\.169\.254, "
            r"which is link-local$",
        ):
            await pre.get(event, event.moments[1])
    assert cams.hosts == [TEST_HOST, "cdn.example", TEST_HOST]
    assert resolver.calls == {TEST_HOST: 2, "cdn.example": 1, "metadata.example": 1}


async def test_the_allow_list_needs_a_dedicated_worker() -> None:
    tenant = uuid.uuid4()
    resolver = ScriptedResolver()
    resolver.set("nvr.lan", ["192.168.1.20"])
    cams = Cams()
    mine = make_event(n=1, host="nvr.lan", tenant=tenant, allow=["nvr.lan"])
    theirs = make_event(n=1, host="nvr.lan", allow=["nvr.lan"])
    guard = SsrfGuard(resolver=resolver, dedicated_tenant=tenant)
    async with preloader(cams, guard=guard) as pre:
        assert await pre.get(mine, mine.moments[0]) == IMAGE
        with pytest.raises(FetchError, match=r"^refused: nvr\.lan resolves to 192\.168\.1\.20, which is private$"):
            await pre.get(theirs, theirs.moments[0])
    assert cams.hosts == ["nvr.lan"]


# --- blobs ----------------------------------------------------------------------------------------------------------


async def test_blob_moments_come_from_the_blob_source_with_the_same_checks() -> None:
    event = make_event(n=4, blobs=True)
    blobs = Blobs(
        {
            f"{event.event_id}-0": IMAGE,
            f"{event.event_id}-1": jpeg(20000, 20000, 3000),
            f"{event.event_id}-2": IMAGE * 300,
        }
    )
    cams = Cams()
    async with preloader(cams, blobs=blobs, max_bytes=1 << 20) as pre:
        assert await pre.get(event, event.moments[0]) == IMAGE
        with pytest.raises(ImageTooLarge, match=r"400\.0 megapixels"):
            await pre.get(event, event.moments[1])
        with pytest.raises(FetchError, match=r"is 1200000 bytes, over the limit of 1048576"):
            await pre.get(event, event.moments[2])
        with pytest.raises(FetchError, match="is gone"):
            await pre.get(event, event.moments[3])
    assert cams.paths == []


# --- cancellation, forget, lifecycle ----------------------------------------------------------------------------------


async def test_a_cancelled_get_leaves_the_fetch_to_the_next_reader() -> None:
    cams = Cams()
    cams.gate = asyncio.Event()
    event = make_event(n=1)
    async with preloader(cams) as pre:
        waiting = asyncio.create_task(pre.get(event, event.moments[0]))
        await until(lambda: len(cams.paths) == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        cams.gate.set()
        await until(lambda: pre.stats()["cache_bytes"] == SIZE)
        assert await pre.get(event, event.moments[0]) == IMAGE
        assert pre.stats()["cache_hits"] == 1
    assert len(cams.paths) == 1


async def test_forget_drops_queued_running_and_cached_work_of_one_event() -> None:
    bodies: list[Body] = []
    gate = asyncio.Event()

    def respond(request: httpx.Request) -> httpx.Response:
        bodies.append(
            Body([IMAGE[:2000], IMAGE[2000:]], gate=None if request.url.path == path(done, 0) else gate, gate_after=1)
        )
        return httpx.Response(200, stream=bodies[-1])

    cams = Cams(respond)
    done, other = make_event(n=4, created=T0), make_event(n=2, created=T0 + timedelta(seconds=1))
    async with preloader(cams, global_limit=2) as pre:
        assert await pre.get(done, done.moments[0]) == IMAGE
        pre.prefetch(done, done.moments)
        pre.prefetch(other, other.moments)
        await until(lambda: len(cams.paths) == 3)  # moments 1 and 2 of `done` hang mid-body
        waiter = asyncio.create_task(pre.get(done, done.moments[3]))
        await asyncio.sleep(0)
        pre.forget(done.event_id)
        with pytest.raises(FetchError, match="the event was forgotten before this moment was fetched"):
            await waiter
        assert pre.stats()["cache_bytes"] == 0
        gate.set()
        for moment in other.moments:
            assert await pre.get(other, moment) == IMAGE
        stats = pre.stats()
    assert all(body.closed for body in bodies)
    assert path(done, 3) not in cams.paths
    assert stats["cache_bytes"] == 2 * SIZE and stats["queued"] == 0 and stats["in_flight"] == 0


async def test_closing_with_fetches_in_flight_releases_everything() -> None:
    bodies: list[Body] = []
    gate = asyncio.Event()

    def respond(request: httpx.Request) -> httpx.Response:
        bodies.append(Body([IMAGE[:2000], IMAGE[2000:]], gate=gate, gate_after=1))
        return httpx.Response(200, stream=bodies[-1])

    cams = Cams(respond)
    event = make_event(n=6)
    client = cams.client()
    pre = Preloader(blobs=Blobs(), client=client, guard=SsrfGuard(resolver=public), global_limit=2)
    waiters: list[asyncio.Task[bytes]] = []

    async def worker() -> None:
        async with pre:
            pre.prefetch(event, event.moments)
            waiters.extend(asyncio.create_task(pre.get(event, m)) for m in event.moments)
            await asyncio.Event().wait()

    running = asyncio.create_task(worker())
    await until(lambda: len(cams.paths) == 2 and len(waiters) == 6)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, FetchError) and "the preloader was closed" in str(r) for r in results), results
    assert all(body.closed for body in bodies) and len(bodies) == 2
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("preload ")]
    assert not client.is_closed  # an injected client belongs to the caller
    with pytest.raises(RuntimeError, match="closed"):
        pre.prefetch(event, event.moments)
    with pytest.raises(RuntimeError, match="cannot be entered twice or reopened"):
        await pre.__aenter__()
    await client.aclose()


async def test_stats_names_and_get_before_start() -> None:
    pre = preloader(Cams())
    assert set(pre.stats()) == {"queued", "in_flight", "cache_bytes", "cache_hits", "cache_misses", "fetched_bytes"}
    event = make_event(n=1)
    with pytest.raises(RuntimeError, match="before calling get"):
        await pre.get(event, event.moments[0])


# --- integration: a real HTTP server on loopback -------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[ImageServer]:
    running = await ImageServer.start()
    yield running
    await running.close()


async def test_dedicated_worker_fetches_an_allow_listed_lan_camera(server: ImageServer) -> None:
    """The preloader's own client: the allow-listed name resolves to loopback and the pinned address is dialled."""
    tenant = uuid.uuid4()
    resolver = ScriptedResolver()
    resolver.set("nvr.lan", ["127.0.0.1"])
    server.routes["/snap.jpg"] = IMAGE
    url = f"http://nvr.lan:{server.port}/snap.jpg"
    mine = make_event(n=0, tenant=tenant, allow=["nvr.lan"]).model_copy(
        update={"moments": [MomentRef(index=0, url=url)], "allow_ports": [server.port]}
    )
    theirs = mine.model_copy(update={"tenant_id": uuid.uuid4(), "event_id": uuid.uuid4()})
    async with Preloader(blobs=Blobs(), guard=SsrfGuard(resolver=resolver, dedicated_tenant=tenant)) as pre:
        assert await pre.get(mine, mine.moments[0]) == IMAGE
        with pytest.raises(FetchError, match=r"^refused: nvr\.lan resolves to 127\.0\.0\.1, which is loopback$"):
            await pre.get(theirs, theirs.moments[0])
    assert server.requests == [("/snap.jpg", server.requests[0][1])]
    assert server.requests[0][1]["host"] == f"nvr.lan:{server.port}"
    assert server.requests[0][1]["accept-encoding"] == "identity"


async def test_real_server_endless_chunked_body_is_cut_at_the_limit(server: ImageServer) -> None:
    sent = []

    async def endless(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        writer.write(response_head(200, {"Transfer-Encoding": "chunked"}))
        chunk = IMAGE[:1024]
        for _ in range(20000):  # 20 MB if nobody stops it
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent.append(len(chunk))

    server.routes["/endless.jpg"] = endless
    await _fetch_error(server, "/endless.jpg", FetchError, "over the limit of 262144 bytes", max_bytes=256 << 10)
    assert sum(sent) < 10 << 20


async def test_real_server_bomb_and_slow_drip(server: ImageServer) -> None:
    stop = asyncio.Event()

    async def drip(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        writer.write(response_head(200, {"Content-Length": str(len(IMAGE))}) + IMAGE[:100])
        await writer.drain()
        await stop.wait()  # the rest never comes while the client waits; its deadline must end the fetch

    server.routes["/bomb.jpg"] = jpeg(50000, 50000, 100_000)
    server.routes["/drip.jpg"] = drip
    await _fetch_error(server, "/bomb.jpg", ImageTooLarge, "2500.0 megapixels")
    try:
        await _fetch_error(server, "/drip.jpg", FetchError, "deadline", deadline_s=0.3)
    finally:
        stop.set()


async def _fetch_error(server: ImageServer, route: str, error: type, words: str, **kwargs: object) -> None:
    resolver = ScriptedResolver()
    resolver.set("cam.lan", ["127.0.0.1"])
    guard = SsrfGuard(frozenset({"cam.lan"}), resolver=resolver)
    event = make_event(n=0).model_copy(
        update={"moments": [MomentRef(index=0, url=f"http://cam.lan:{server.port}{route}")]}
    )
    async with Preloader(blobs=Blobs(), guard=guard, **kwargs) as pre:  # type: ignore[arg-type]
        with pytest.raises(error, match=words):
            await pre.get(event, event.moments[0])
