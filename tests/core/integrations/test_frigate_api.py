"""Frigate's API through the stand-in: pictures, sub-labels, its login, and errors that say what failed."""

from __future__ import annotations

import httpx
import pytest

from core.integrations.frigate_api import FrigateApi, FrigateError
from tests.core.integrations.bridge_kit import jpeg
from tests.core.integrations.frigate_standin import FrigateStandIn

EVENT = "1607123955.475377-mxklsc"


async def test_pictures_and_a_sub_label_with_its_score() -> None:
    frames = [jpeg(seed=1), jpeg(seed=2)]
    with FrigateStandIn({"front_door": frames}) as frigate:
        frigate.add_event(EVENT, jpeg(seed=9))
        async with httpx.AsyncClient() as client:
            api = FrigateApi(client, frigate.url + "/")
            assert [await api.latest("front_door") for _ in range(3)] == [*frames, frames[0]]
            assert await api.snapshot(EVENT) == jpeg(seed=9)
            await api.set_sub_label(EVENT, "person ✓ 0.914", 0.914)
            await api.set_sub_label(EVENT, "not confirmed", None)
            await api.set_sub_label(EVENT, "x" * 150, 0.0)  # Frigate takes 100 characters and 0 < score <= 1
        assert frigate.sub_labels[EVENT] == ("x" * 100, 0.01)


async def test_errors_carry_the_status_and_whether_asking_again_can_help() -> None:
    with FrigateStandIn({"front_door": [b"<html>login</html>"]}) as frigate:
        async with httpx.AsyncClient() as client:
            api = FrigateApi(client, frigate.url)
            with pytest.raises(
                FrigateError, match=r"GET /api/events/1.5-abc/snapshot.jpg: HTTP 404 Event not found"
            ) as e:
                await api.snapshot("1.5-abc")
            assert e.value.refused
            frigate.fail("GET", "/api/front_door/latest.jpg", 500)
            with pytest.raises(FrigateError, match="HTTP 500") as e:
                await api.latest("front_door")
            assert not e.value.refused
            with pytest.raises(FrigateError, match=r"not a JPEG \(text/html|not a JPEG \(image/jpeg"):
                await api.latest("front_door")
            with pytest.raises(FrigateError, match="HTTP 404") as e:
                await api.set_sub_label("1.5-abc", "person ✓ 0.9", 0.9)
            assert e.value.refused
        async with httpx.AsyncClient() as client:
            api = FrigateApi(client, "http://127.0.0.1:9")  # nothing listens on the discard port
            with pytest.raises(FrigateError, match=r"GET /api/front_door/latest\.jpg") as e:
                await api.latest("front_door")
            assert e.value.status is None and not e.value.refused


async def test_with_auth_it_logs_in_and_logs_in_again_when_the_token_expires() -> None:
    with FrigateStandIn({"cam": [jpeg()]}, auth=("bridge", "s3cret")) as frigate:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{frigate.url}/api/cam/latest.jpg")).status_code == 401
            api = FrigateApi(client, frigate.url, "bridge", "s3cret")
            assert await api.latest("cam") == jpeg()
            frigate.tokens.clear()  # the JWT expired
            assert await api.latest("cam") == jpeg()
            assert frigate.count("POST", "/api/login") == 2
            wrong = FrigateApi(client, frigate.url, "bridge", "wrong")
            with pytest.raises(FrigateError, match="login refused: HTTP 401") as e:
                await wrong.latest("cam")
            assert e.value.refused
