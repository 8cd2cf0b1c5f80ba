"""``insane mqtt publish`` against a real relay and a real mosquitto: verdicts, discovery, restarts."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from core.integrations.publisher import MqttPublisher
from insane.devkit.client import enroll_worker, event_body, result_for
from insane.devkit.relay import RelayServer, run_sync
from tests.core.integrations.bridge_kit import bridge_settings
from tests.core.integrations.mosquitto import Mosquitto, MqttProbe, publish

pytestmark = pytest.mark.timeout(120)


def review(relay: RelayServer, tenant, worker, camera: str, verdict: list[tuple[str, int, float]]) -> str:
    """An event of ``camera`` reviewed by a worker of the relay's worker API with this verdict."""
    r = httpx.post(f"{relay.url}/v1/events", json=event_body(n=4, camera=camera), headers=tenant.headers, timeout=30)
    assert r.status_code == 202, r.text
    event_id = r.json()["id"]
    for _ in range(40):
        leased = httpx.post(
            f"{relay.url}/v1/worker/lease", json={"max_events": 64, "wait_s": 0.5}, headers=worker.headers, timeout=30
        ).json()["events"]
        mine = [e for e in leased if e["event_id"] == event_id]
        if mine:
            body = result_for(
                mine[0],
                verdict=[{"label": lb, "moments": n, "best": b, "median": round(b - 0.05, 2)} for lb, n, b in verdict],
            )
            r = httpx.post(f"{relay.url}/v1/worker/results", json={"results": [body]}, headers=worker.headers)
            assert r.json()["stored"] == [event_id], r.text
            return event_id
    raise AssertionError(f"event {event_id} was never leased")


@asynccontextmanager
async def running(settings):
    publisher = MqttPublisher(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        await asyncio.wait_for(publisher.following.wait(), 20)
        await asyncio.wait_for(publisher.link.connected.wait(), 20)
        for _ in range(200):  # the stream's first message is the position to resume from
            if publisher.state.data.get("cursor"):
                break
            await asyncio.sleep(0.05)
        yield publisher
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def rises(states: list[bytes]) -> int:
    """How many times a binary sensor went from OFF (or nothing) to ON: the alarms Home Assistant sees."""
    return sum(1 for before, now in zip([b"OFF", *states], states, strict=False) if now == b"ON" and before != b"ON")


def cam() -> str:
    return f"cam_{uuid.uuid4().hex[:6]}"


async def test_a_verdict_is_published_with_discovery_and_its_labels_go_off_after_the_delay(
    relay, fresh_tenant, broker: Mosquitto, tmp_path: Path
) -> None:
    worker, camera = enroll_worker(relay.url), cam()
    settings = bridge_settings(tmp_path, broker, relay.url, fresh_tenant.secret)
    async with MqttProbe(broker) as probe, running(settings):
        assert await probe.wait_for("insane/status") == b"online"
        event_id = await asyncio.to_thread(
            review, relay, fresh_tenant, worker, camera, [("person", 3, 0.91), ("car", 1, 0.4)]
        )
        verdict = json.loads(await probe.wait_for(f"insane/{camera}/verdict"))
        await probe.wait_for(f"insane/{camera}/person", b"ON")
        await probe.wait_for(f"insane/{camera}/car", b"ON")
        # OFF when announced, ON with the verdict, OFF after the off-delay (2 s here).
        await probe.wait_for(f"insane/{camera}/person", b"OFF", within=10, count=2)
        await probe.wait_for(f"insane/{camera}/car", b"OFF", within=10, count=2)
    assert verdict["event_id"] == event_id and verdict["camera"] == camera and verdict["k"] == 4
    assert verdict["labels"] == [
        {"label": "person", "moments": 3, "best": 0.91, "median": 0.86},
        {"label": "car", "moments": 1, "best": 0.4, "median": 0.35},
    ]
    assert verdict["summary"] == "person 3/4 (0.91), car 1/4 (0.40)"
    assert verdict["replayed"] is False and 0 <= verdict["latency_s"] < 30 and verdict["status"] == "done"
    assert probe.last("insane/status") == b"offline"  # said on a clean stop
    assert probe.all(f"insane/{camera}/person") == [b"OFF", b"ON", b"OFF"]


async def test_home_assistant_finds_every_entity_from_the_retained_discovery_topics(
    relay, fresh_tenant, broker: Mosquitto, tmp_path: Path
) -> None:
    worker, front, yard = enroll_worker(relay.url), cam(), cam()
    settings = bridge_settings(tmp_path, broker, relay.url, fresh_tenant.secret, mqtt_labels=["person", "dog"])
    async with MqttProbe(broker, ("insane/#",)) as probe, running(settings):
        await asyncio.to_thread(review, relay, fresh_tenant, worker, front, [("person", 2, 0.8), ("chair", 1, 0.5)])
        await asyncio.to_thread(review, relay, fresh_tenant, worker, yard, [("dog", 1, 0.7)])
        await probe.wait_for(f"insane/{yard}/verdict")
        # Home Assistant connects later and reads what is retained, as it does after a restart.
        async with MqttProbe(broker, ("homeassistant/#", "insane/#")) as ha:
            await asyncio.sleep(1.0)
    configs = {t: json.loads(p) for t, p, retained in ha.messages if t.endswith("/config") and retained}
    assert set(configs) == {
        f"homeassistant/sensor/insane/{front}_verdict/config",
        f"homeassistant/binary_sensor/insane/{front}_person/config",
        f"homeassistant/sensor/insane/{yard}_verdict/config",
        f"homeassistant/binary_sensor/insane/{yard}_dog/config",
    }  # no binary sensor for "chair": not in INSANE_MQTT_LABELS
    for topic, config in configs.items():
        assert config["unique_id"] and config["state_topic"].startswith("insane/"), topic
        assert config["device"]["identifiers"] and config["device"]["name"] in (front, yard)
        assert config["availability"] == [{"topic": "insane/status"}]
        assert config["payload_available"] == "online" and config["payload_not_available"] == "offline"
        retained_state = [p for t, p, r in ha.messages if t == config["state_topic"] and r]
        assert retained_state, f"no retained state on {config['state_topic']}"
    assert len({c["unique_id"] for c in configs.values()}) == 4
    person = configs[f"homeassistant/binary_sensor/insane/{front}_person/config"]
    assert person["name"] == "person" and person["device_class"] == "occupancy"
    assert (person["payload_on"], person["payload_off"]) == ("ON", "OFF")
    sensor = configs[f"homeassistant/sensor/insane/{front}_verdict/config"]
    assert sensor["value_template"] == "{{ value_json.summary }}"
    assert sensor["json_attributes_topic"] == sensor["state_topic"] == f"insane/{front}/verdict"
    assert [p for t, p, r in ha.messages if t == "insane/status" and r] == [b"online"]


async def test_a_restart_resumes_from_the_cursor_and_fires_no_alarm_twice(
    relay, fresh_tenant, broker: Mosquitto, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, "core.integrations.verdicts")
    worker, a, b, c = enroll_worker(relay.url), cam(), cam(), cam()
    settings = bridge_settings(tmp_path, broker, relay.url, fresh_tenant.secret, mqtt_off_delay_s=30.0)
    async with MqttProbe(broker, ("insane/#",)) as probe:
        async with running(settings):
            first = await asyncio.to_thread(review, relay, fresh_tenant, worker, a, [("person", 1, 0.9)])
            await probe.wait_for(f"insane/{a}/person", b"ON")
        # Stored while nothing was publishing.
        missed = [await asyncio.to_thread(review, relay, fresh_tenant, worker, x, [("person", 1, 0.9)]) for x in (b, c)]
        async with running(settings) as again:
            await probe.wait_for(f"insane/{c}/person", b"ON")
            await asyncio.sleep(1.0)  # time for any repeat to show up
            state = again.state.data
    for camera in (a, b, c):  # a state re-sent on reconnect (ON while ON) is no new alarm to Home Assistant
        assert rises(probe.all(f"insane/{camera}/person")) == 1, camera
    ids = [json.loads(p)["event_id"] for t, p, _ in probe.messages if t.endswith("/verdict")]
    assert set(ids) == {first, *missed}
    # Each verdict was published once; the replay repeats `first` (within the overlap) and it was dropped.
    # (On each connection the last verdict per camera is re-sent as it was, for a broker that lost it.)
    published = [r.getMessage().split()[2] for r in caplog.records if r.getMessage().startswith("verdict for ")]
    assert sorted(published) == sorted([first, *missed])
    assert state["cursor"] and set(state["published"]) >= {first, *missed}


async def test_a_result_older_than_the_off_delay_is_history_not_an_alarm(
    relay, fresh_tenant, broker: Mosquitto, tmp_path: Path
) -> None:
    worker, camera = enroll_worker(relay.url), cam()
    settings = bridge_settings(tmp_path, broker, relay.url, fresh_tenant.secret)
    async with running(settings):
        pass  # a cursor to resume from
    old = await asyncio.to_thread(review, relay, fresh_tenant, worker, camera, [("person", 2, 0.8)])

    async def age() -> None:
        conn = await asyncpg.connect(relay.settings.database_url)
        try:
            await conn.execute("UPDATE events SET done_at = done_at - interval '2 hours' WHERE id = $1", uuid.UUID(old))
        finally:
            await conn.close()

    run_sync(age())
    async with MqttProbe(broker, ("insane/#",)) as probe, running(settings):
        verdict = json.loads(await probe.wait_for(f"insane/{camera}/verdict"))
        await asyncio.sleep(0.5)
    assert verdict["event_id"] == old and verdict["replayed"] is True
    assert b"ON" not in probe.all(f"insane/{camera}/person")


async def test_a_broker_restart_is_ridden_out_and_discovery_comes_back(
    relay, fresh_tenant, broker: Mosquitto, tmp_path: Path
) -> None:
    worker, camera = enroll_worker(relay.url), cam()
    settings = bridge_settings(tmp_path, broker, relay.url, fresh_tenant.secret)
    async with running(settings) as publisher:
        async with MqttProbe(broker, ("insane/#",)) as probe:
            await asyncio.to_thread(review, relay, fresh_tenant, worker, camera, [("person", 1, 0.9)])
            await probe.wait_for(f"insane/{camera}/verdict")
        await asyncio.to_thread(broker.stop)  # no persistence: every retained message is gone with it
        later = await asyncio.to_thread(review, relay, fresh_tenant, worker, camera, [("dog", 1, 0.6)])
        await asyncio.sleep(1.0)
        await asyncio.to_thread(broker.start)
        async with MqttProbe(broker, ("homeassistant/#", "insane/#")) as probe:
            verdict = await probe.wait_for(f"insane/{camera}/verdict", within=40)
            await probe.wait_for(f"homeassistant/binary_sensor/insane/{camera}_dog/config")
            await probe.wait_for(f"homeassistant/binary_sensor/insane/{camera}_person/config")
            assert await probe.wait_for("insane/status") == b"online"
        assert publisher.link.connections >= 2
    assert json.loads(verdict)["event_id"] == later


async def test_home_assistant_coming_back_online_gets_the_discovery_again(
    relay, fresh_tenant, broker: Mosquitto, tmp_path: Path
) -> None:
    worker, camera = enroll_worker(relay.url), cam()
    settings = bridge_settings(tmp_path, broker, relay.url, fresh_tenant.secret)
    config = f"homeassistant/binary_sensor/insane/{camera}_person/config"
    async with MqttProbe(broker, ("homeassistant/#",)) as probe, running(settings):
        await asyncio.to_thread(review, relay, fresh_tenant, worker, camera, [("person", 1, 0.9)])
        await probe.wait_for(config)
        await publish(broker, "homeassistant/status", "online")  # Home Assistant's birth message
        await probe.wait_for(config, count=2)
