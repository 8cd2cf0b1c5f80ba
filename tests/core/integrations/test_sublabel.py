"""The verdict as Frigate's sub-label: confirmed or not, written once, a refusal logged once."""

from __future__ import annotations

import logging

import httpx
import pytest

from core.integrations import sublabel
from core.integrations.frigate_api import FrigateApi
from core.integrations.sublabel import SubLabelWriter, sub_label
from tests.core.integrations.bridge_kit import jpeg
from tests.core.integrations.frigate_standin import FrigateStandIn

EVENT = "1700000000.000001-abcdef"


def event(*verdict: tuple[str, float]) -> dict:
    return {"status": "done", "verdict": [{"label": lb, "moments": 2, "best": b, "median": b} for lb, b in verdict]}


def test_a_confirmed_label_shows_its_best_score_and_an_unconfirmed_one_says_so() -> None:
    assert sub_label("person", event(("car", 0.5), ("person", 0.914)), {}) == ("person ✓ 0.91", 0.914)
    assert sub_label("person", event(("car", 0.5)), {}) == ("not confirmed", None)
    assert sub_label("person", event(), {}) == ("not confirmed", None)
    # A model with its own class names: Normal and Fall are people.
    fall_model = {"person": ["Normal", "Fall"]}
    assert sub_label("person", event(("Normal", 0.76), ("Fall", 0.28)), fall_model) == ("person ✓ 0.76", 0.76)
    assert sub_label("car", event(("Normal", 0.76)), fall_model) == ("not confirmed", None)


async def test_a_refusal_is_logged_once_and_the_bridge_goes_on(caplog) -> None:
    caplog.set_level(logging.INFO, "core.integrations.sublabel")
    with FrigateStandIn(sub_label_api=False) as frigate:  # a Frigate from before the sub-label API
        frigate.add_event(EVENT, jpeg())
        async with httpx.AsyncClient() as client:
            writer = SubLabelWriter(FrigateApi(client, frigate.url))
            assert [await writer.write(EVENT, "person ✓ 0.91", 0.91) for _ in range(3)] == [False] * 3
    assert caplog.text.count("Frigate refused the sub-label") == 1
    assert frigate.count("POST", f"/api/events/{EVENT}/sub_label") == 3  # each tried once, none retried


async def test_a_server_error_is_tried_again(monkeypatch) -> None:
    monkeypatch.setattr(sublabel, "RETRY_AFTER_S", (0.01, 0.01, 0.01))
    with FrigateStandIn() as frigate:
        frigate.add_event(EVENT, jpeg())
        frigate.fail("POST", f"/api/events/{EVENT}/sub_label", 500, 502)
        async with httpx.AsyncClient() as client:
            writer = SubLabelWriter(FrigateApi(client, frigate.url))
            assert await writer.write(EVENT, "person ✓ 0.91", 0.91)
            frigate.fail("POST", f"/api/events/{EVENT}/sub_label", 500, 500, 500, 500)
            assert not await writer.write(EVENT, "not confirmed", None)
    assert frigate.sub_labels[EVENT] == ("person ✓ 0.91", 0.91) and writer.written == 1


@pytest.mark.parametrize("score", [1.0, 0.005])
async def test_scores_are_kept_inside_what_frigate_accepts(score: float) -> None:
    with FrigateStandIn() as frigate:
        frigate.add_event(EVENT, jpeg())
        async with httpx.AsyncClient() as client:
            assert await SubLabelWriter(FrigateApi(client, frigate.url)).write(EVENT, "person ✓", score)
    assert 0 < frigate.sub_labels[EVENT][1] <= 1
