"""The result stream followed for good: a refused cursor or key is survived, repeats are recognised."""

from __future__ import annotations

import asyncio

import httpx

from core.integrations import results
from core.integrations.results import Seen, follow_results
from insane.devkit.client import enroll_worker, make_tenant
from tests.core.integrations.test_publisher import review


async def test_a_cursor_the_relay_refuses_is_dropped_and_new_results_still_come(relay, caplog) -> None:
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    connected = asyncio.Event()
    async with httpx.AsyncClient() as client:
        stream = follow_results(client, relay.url, tenant.secret, cursor="not-a-cursor", connected=connected)
        first = asyncio.create_task(anext(stream))
        await asyncio.wait_for(connected.wait(), 20)
        position = await asyncio.wait_for(first, 20)
        assert position.event is None and position.cursor  # where to resume from
        event_id = await asyncio.to_thread(review, relay, tenant, worker, "front", [("person", 1, 0.9)])
        result = await asyncio.wait_for(anext(stream), 20)
        await stream.aclose()
    assert result.event["id"] == event_id and result.cursor
    assert "the relay refused the saved cursor" in caplog.text


async def test_a_refused_key_is_an_error_in_the_log_and_is_tried_again(relay, caplog, monkeypatch) -> None:
    monkeypatch.setattr(results, "KEY_RETRY_S", 0.2)
    async with httpx.AsyncClient() as client:
        follower = asyncio.create_task(anext(follow_results(client, relay.url, "ik_nope_" + "x" * 40)))
        await asyncio.sleep(1.5)
        follower.cancel()
    errors = [r for r in caplog.records if "the relay refused the API key (HTTP 401" in r.getMessage()]
    assert len(errors) >= 2 and all(r.levelname == "ERROR" for r in errors)


def test_seen_tells_new_from_a_repeat_and_a_back_fill_and_stays_bounded() -> None:
    seen = Seen(size=3)
    assert seen.status({"id": "a", "k": 8}) == "new"
    seen.add({"id": "a", "k": 8})
    assert seen.status({"id": "a", "k": 8}) == "repeat"
    assert seen.status({"id": "a", "k": 16}) == "update"
    for ident in "bcd":
        seen.add({"id": ident, "k": 1})
    assert list(seen.dump()) == ["b", "c", "d"] and Seen(seen.dump()).status({"id": "d", "k": 1}) == "repeat"
