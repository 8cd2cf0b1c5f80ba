"""The fault harness, small: worker SIGKILLs, a Redis SIGKILL, a PostgreSQL outage, a poison event,
a relay SIGKILL, a full disk under PostgreSQL's tables, and two relays behind HAProxy killed in turn,
each against real processes; nothing accepted is lost or stored twice.

The full run with published figures is ``python bench/chaos.py`` (see the README).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import pytest

from insane.devkit.chaos.harness import Chaos
from insane.devkit.chaos.plan import Plan, table

pytestmark = [pytest.mark.timeout(240), pytest.mark.chaos]


@pytest.fixture(scope="module")
def report(small_onnx) -> Iterator[dict]:
    # Its own temporary folder: PostgreSQL runs as its own user and cannot enter pytest's (mode 0700).
    got = asyncio.run(Chaos(Plan.quick(str(small_onnx))).run())
    yield got
    shutil.rmtree(got["logs"], ignore_errors=True)


def phase(report: dict, name: str) -> dict:
    return next(ph for ph in report["phases"] if ph["name"] == name)


def test_no_phase_loses_or_doubles_an_event(report: dict) -> None:
    plan = Plan.quick("")
    print(table(report))
    for ph in report["phases"]:
        assert ph["accepted"] == ph["submitted"] > 0, ph
        assert ph["lost"] == 0 and ph["duplicate_rows"] == 0 and ph["unstored_202"] == 0, ph
        assert ph["unexpected_failed"] == 0 and ph["server_errors"] == 0, (ph["name"], ph["notes"])
    assert phase(report, "workers")["faults"] == plan.worker_kills
    assert phase(report, "redis")["faults"] == plan.redis_kills
    assert phase(report, "relay")["faults"] == 1
    assert phase(report, "relay")["stored_not_acked"] > 0  # the kill landed between a commit and its ack
    # Every moment of every event was reviewed (none lost to a fault): uploads are stored in PostgreSQL
    # before their 202, so even the Redis crash phase has no moment reported gone.
    for name in ("workers", "redis", "postgres"):
        ph = phase(report, name)
        assert ph["moment_errors"] == 0 and ph["moments_reviewed"] == ph["accepted"] * plan.moments, ph
    # The relay phase pauses Redis's writes and then kills the relay: an upload being downloaded right then can run
    # past the worker's download deadline. That moment is reported as an error in a stored result; every
    # other moment is reviewed, and no event is lost.
    relay = phase(report, "relay")
    assert relay["moments_reviewed"] + relay["moment_errors"] == relay["accepted"] * plan.moments, relay
    assert relay["moment_errors"] <= plan.moments, relay


def test_two_relays_behind_haproxy_lose_nothing_when_each_is_killed_in_turn(report: dict) -> None:
    ph = phase(report, "balanced")
    assert ph["faults"] == 2  # relay 0 killed and started again, then relay 1
    assert ph["lost"] == 0 and ph["duplicate_rows"] == 0 and ph["unstored_202"] == 0, ph
    assert ph["moments_reviewed"] + ph["moment_errors"] == ph["accepted"] * Plan.quick("").moments, ph
    # Cameras saw one address throughout; what made them retry is reported, and nothing else failed.
    assert set(ph["retried"]) <= {"transport", "429", "502", "503", "504"}, ph["retried"]
    assert ph["server_errors"] == 0, ph["notes"]


def test_a_full_disk_answers_503_never_202_and_recovers_by_itself(report: dict) -> None:
    ph = phase(report, "disk")
    assert ph["faults"] == 1 and ph["answers_503"] > 0 and ph["answers_503_without_retry_after"] == 0
    assert ph["unstored_202"] == 0 and ph["lost"] == 0 and ph["unexpected_failed"] == 0
    # Space came back: every event offered while the disk was full was stored on retry and reviewed.
    assert ph["accepted"] == ph["submitted"]
    assert ph["moment_errors"] == 0 and ph["moments_reviewed"] == ph["accepted"] * Plan.quick("").moments, ph


def test_postgres_outage_answers_503_with_retry_after_and_never_202(report: dict) -> None:
    ph = phase(report, "postgres")
    assert ph["faults"] == 1 and ph["answers_503"] > 0
    assert ph["answers_503_without_retry_after"] == 0
    assert ph["unstored_202"] == 0 and ph["lost"] == 0


def test_poison_is_delivered_exactly_n_times_then_dead_lettered_once(report: dict) -> None:
    plan = Plan.quick("")
    ph = phase(report, "poison")
    assert ph["poison_deliveries"] == plan.max_deliveries
    assert ph["crashes"] == plan.max_deliveries  # each delivery killed the worker that decoded it
    assert ph["poison_status"] == "failed" and ph["dead_letters"] == 1
    assert len(report["dead_letter_stream"]) == 1
    # The poison's batch-mates were reviewed, not dead-lettered with it.
    assert ph["unexpected_failed"] == 0 and ph["lost"] == 0
