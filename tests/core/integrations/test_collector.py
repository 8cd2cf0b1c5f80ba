"""One tracked object's moments: the snapshot first, frames at the configured rate, errors per moment."""

from __future__ import annotations

import asyncio

import httpx

from core.integrations.collector import Collector
from core.integrations.frigate_api import FrigateApi
from core.integrations.frigate_events import CameraRule, parse_event
from tests.core.integrations.bridge_kit import frigate_message, jpeg, tracked
from tests.core.integrations.frigate_standin import FrigateStandIn

EVENT = "1700000000.000001-abcdef"
SNAPSHOT = f"/api/events/{EVENT}/snapshot.jpg"


def collector(api: FrigateApi, moments: int, interval: float = 0.02, max_s: float = 30.0) -> Collector:
    obj = parse_event(frigate_message("new", tracked(EVENT))).after
    return Collector(api, obj, CameraRule(None, None, moments, interval), max_s)


async def test_the_snapshot_goes_first_then_the_frames_in_order() -> None:
    frames = [jpeg(seed=i) for i in range(10)]
    with FrigateStandIn({"front_door": frames}) as frigate:
        frigate.add_event(EVENT, jpeg(seed=99))
        async with httpx.AsyncClient() as client:
            got = await collector(FrigateApi(client, frigate.url), moments=6).run()
    assert got.images == [jpeg(seed=99), *frames[:5]] and got.errors == []


async def test_a_failed_frame_is_a_moment_error_and_the_next_tick_takes_its_place() -> None:
    with FrigateStandIn({"front_door": [jpeg(seed=1)]}) as frigate:
        frigate.add_event(EVENT, jpeg(seed=99))
        frigate.fail("GET", "/api/front_door/latest.jpg", 500, 503)
        frigate.fail("GET", SNAPSHOT, 500)  # asked for again, and then given
        async with httpx.AsyncClient() as client:
            got = await collector(FrigateApi(client, frigate.url), moments=4).run()
    assert len(got.images) == 4 and got.images[0] == jpeg(seed=99)
    assert len(got.errors) == 2 and got.errors[0].startswith(
        "frame 1 (+0.0 s): GET /api/front_door/latest.jpg: HTTP 500"
    )
    assert frigate.count("GET", SNAPSHOT) == 2


async def test_a_snapshot_frigate_never_gives_is_an_error_not_a_lost_event() -> None:
    with FrigateStandIn({"front_door": [jpeg(seed=1)]}) as frigate:
        frigate.add_event(EVENT, jpeg(seed=99))
        frigate.fail("GET", SNAPSHOT, 500, 500, 500)
        async with httpx.AsyncClient() as client:
            got = await collector(FrigateApi(client, frigate.url), moments=3).run()
    assert got.images == [jpeg(seed=1)] * 2
    assert got.errors == [f"snapshot: GET {SNAPSHOT}: HTTP 500 injected 500"]


async def test_the_end_of_the_object_stops_the_frames() -> None:
    with FrigateStandIn({"front_door": [jpeg(seed=1)]}) as frigate:
        frigate.add_event(EVENT, jpeg(seed=99))
        async with httpx.AsyncClient() as client:
            c = collector(FrigateApi(client, frigate.url), moments=100, interval=0.1)
            task = asyncio.create_task(c.run())
            await asyncio.sleep(0.35)
            c.update(parse_event(frigate_message("end", tracked(EVENT))))
            got = await asyncio.wait_for(task, 5)
    assert 3 <= len(got.images) <= 6 and got.obj.end_time is not None


async def test_stop_keeps_what_was_taken_and_the_longest_wait_is_max_event_s() -> None:
    with FrigateStandIn({"front_door": [jpeg(seed=1)]}) as frigate:
        frigate.add_event(EVENT, jpeg(seed=99))
        async with httpx.AsyncClient() as client:
            api = FrigateApi(client, frigate.url)
            c = collector(api, moments=100, interval=0.1)
            task = asyncio.create_task(c.run())
            await asyncio.sleep(0.25)
            c.stop()
            stopped = await asyncio.wait_for(task, 5)
            capped = await asyncio.wait_for(collector(api, moments=1000, interval=0.05, max_s=0.5).run(), 5)
    assert stopped.images[0] == jpeg(seed=99) and 2 <= len(stopped.images) <= 5
    assert 6 <= len(capped.images) <= 12  # ~0.5 s of frames at 20 a second, and the snapshot
