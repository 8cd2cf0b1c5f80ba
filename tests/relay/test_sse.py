"""The result stream resumes: Last-Event-ID (or ?cursor=) replays results stored since, then goes on live."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import httpx

from insane.devkit.client import enroll_worker, make_tenant, result_for
from insane.devkit.relay import RelayServer, run_sync
from relay import sse
from tests.relay.test_workers import lease_until, results_post, submit


@contextmanager
def stream(relay: RelayServer, tenant, headers=None, params=None) -> Iterator[queue.Queue]:
    """Messages of one stream as they come: (id, data) for each result, on a queue; None when it ends."""
    got: queue.Queue = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        try:
            with httpx.stream(
                "GET",
                f"{relay.url}/v1/events/stream",
                headers={**tenant.headers, **(headers or {})},
                params=params,
                timeout=30,
            ) as r:
                got.put(("status", r.status_code))
                ident = None
                for line in r.iter_lines():
                    if stop.is_set():
                        return
                    if line == ": connected":
                        got.put(("connected", None))
                    elif line.startswith("id: "):
                        ident = line[4:]
                    elif line.startswith("data: "):
                        got.put((ident, json.loads(line[6:])))
        finally:
            got.put(None)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert got.get(timeout=10) == ("status", 200)
    assert got.get(timeout=10) == ("connected", None)
    try:
        yield got
    finally:
        stop.set()


def take(got: queue.Queue, n: int, timeout: float = 15) -> list[tuple[str, dict]]:
    return [got.get(timeout=timeout) for _ in range(n)]


def review(relay: RelayServer, tenant, worker, camera: str = "front") -> str:
    event_id = submit(relay, tenant, n=2, camera=camera)
    assert results_post(relay, worker, result_for(lease_until(relay, worker, event_id))).status_code == 200
    return event_id


def age_results(relay: RelayServer, event_ids: list[str], seconds: float) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(relay.settings.database_url)
        try:
            await conn.execute(
                "UPDATE results SET updated_at = updated_at - make_interval(secs => $2) WHERE event_id = ANY($1)",
                [uuid.UUID(e) for e in event_ids],
                seconds,
            )
        finally:
            await conn.close()

    run_sync(go())


def test_a_live_message_carries_k_and_a_cursor_as_its_id(relay: RelayServer) -> None:
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    with stream(relay, tenant) as got:
        event_id = review(relay, tenant, worker)
        ident, data = got.get(timeout=15)
    assert data["id"] == event_id and data["k"] == 2 and data["status"] == "done"
    assert data["verdict"][0]["label"] == "person"
    at, ev = sse.decode_cursor(ident)
    assert str(ev) == event_id and at.tzinfo is not None


def test_resuming_replays_what_was_stored_since_the_cursor_then_goes_on_live(relay: RelayServer) -> None:
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    old = review(relay, tenant, worker)
    with stream(relay, tenant) as got:
        first = review(relay, tenant, worker)
        got.get(timeout=15)
    missed = [review(relay, tenant, worker) for _ in range(3)]  # stored while no stream was open
    # Move them an hour back, keeping their order: `old` falls outside the overlap before the cursor.
    age_results(relay, [old], 3600 + 2 * sse.REPLAY_OVERLAP_S)
    age_results(relay, [first], 3600)
    age_results(relay, missed, 3600 - 5)
    cursor = sse.encode_cursor(*_stored_at(relay, first))
    with stream(relay, tenant, headers={"Last-Event-ID": cursor}) as got:
        replayed = [data["id"] for _, data in take(got, 4)]
        live = review(relay, tenant, worker)
        assert got.get(timeout=15)[1]["id"] == live
        assert got.empty()
    # `first` is within the overlap, so it is repeated; clients drop repeats by event id.
    assert replayed == [first, *missed]


def test_the_query_cursor_resumes_like_the_header(relay: RelayServer) -> None:
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    with stream(relay, tenant) as got:
        first = review(relay, tenant, worker)
        cursor, _ = got.get(timeout=15)
    second = review(relay, tenant, worker)
    with stream(relay, tenant, params={"cursor": cursor}) as got:
        ids = [data["id"] for _, data in take(got, 2)]
    # Both are within the overlap before the cursor: the first is repeated, which clients drop by id.
    assert ids == [first, second]


def test_a_stream_sends_its_position_so_a_client_that_saw_nothing_can_resume(relay: RelayServer) -> None:
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    with httpx.stream("GET", f"{relay.url}/v1/events/stream", headers=tenant.headers, timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines) == ": connected" and next(lines) == ""
        position = next(lines)
    assert position.startswith("id: ")
    at, nil = sse.decode_cursor(position[4:])
    assert nil.int == 0 and at.tzinfo is not None
    stored = review(relay, tenant, worker)  # while the client is away
    with stream(relay, tenant, headers={"Last-Event-ID": position[4:]}) as got:
        assert [data["id"] for _, data in take(got, 1)] == [stored]


def test_a_replay_pages_through_many_results_in_order(relay: RelayServer, monkeypatch) -> None:
    monkeypatch.setattr(sse, "REPLAY_PAGE", 2)
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    ids = [review(relay, tenant, worker) for _ in range(5)]
    with stream(relay, tenant, params={"cursor": ids[0]}) as got:  # an old-style id: the event itself
        replayed = [data["id"] for _, data in take(got, 5)]
        assert got.empty()
    assert replayed == ids


def test_a_replay_holds_only_the_tenants_own_results(relay: RelayServer) -> None:
    mine, theirs, worker = make_tenant(relay.url), make_tenant(relay.url), enroll_worker(relay.url)
    own = review(relay, mine, worker)
    review(relay, theirs, worker)
    cursor = sse.encode_cursor(*_stored_at(relay, own))
    with stream(relay, mine, headers={"Last-Event-ID": cursor}) as got:
        assert [data["id"] for _, data in take(got, 1)] == [own]
        theirs_live = review(relay, theirs, worker)
        own_live = review(relay, mine, worker)
        assert got.get(timeout=15)[1]["id"] == own_live != theirs_live


def test_an_old_style_id_without_a_result_streams_live_only(relay: RelayServer) -> None:
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    review(relay, tenant, worker)
    with stream(relay, tenant, headers={"Last-Event-ID": str(uuid.uuid4())}) as got:
        live = review(relay, tenant, worker)
        assert got.get(timeout=15)[1]["id"] == live


def test_a_bad_cursor_is_refused_with_a_precise_problem(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    for bad in ("not-a-cursor", "x" * 201, "MjAyNi0wMS0wMQ"):  # the last: a time without a zone or id
        r = httpx.get(f"{relay.url}/v1/events/stream", headers={**tenant.headers, "Last-Event-ID": bad})
        assert r.status_code == 400, bad
        assert r.json()["type"].endswith("/invalid-cursor") and "Last-Event-ID" in r.json()["detail"]


def _stored_at(relay: RelayServer, event_id: str):
    async def go():
        conn = await asyncpg.connect(relay.settings.database_url)
        try:
            return await conn.fetchval("SELECT updated_at FROM results WHERE event_id = $1", uuid.UUID(event_id))
        finally:
            await conn.close()

    return run_sync(go()), uuid.UUID(event_id)
