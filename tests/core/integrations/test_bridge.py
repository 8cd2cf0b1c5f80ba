"""The Frigate bridge end to end: Frigate's MQTT events in, a real relay and worker, the verdict out on
Frigate's sub-label API and on MQTT; and its faults: a broker restart mid-event, the relay down for
10 s, Frigate failing a snapshot, Ctrl-C with events in hand. Nothing is lost, each event posted once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from core.integrations import bridge as bridge_module
from core.integrations.bridge import FrigateBridge
from core.integrations.spool import Spool
from insane.devkit import models
from insane.devkit.client import enroll_worker, make_tenant
from insane.devkit.relay import RelayServer, fresh_database, relay_settings, run_sync
from insane.devkit.worker import make_worker
from tests.core.integrations.bridge_kit import bridge_settings, frigate_id, frigate_message, jpeg, tracked
from tests.core.integrations.frigate_standin import FrigateStandIn
from tests.core.integrations.mosquitto import Mosquitto, MqttProbe, publish, until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def tiny_onnx(sample_images) -> Path:  # sample_images: skips where Ultralytics is not installed
    """YOLOv8n with random weights at 320: real inference, fast; its labels mean nothing."""
    cache = models.test_cache()
    return models.export_onnx(models.yolov8n_pt(cache), cache, 320)


@contextlib.asynccontextmanager
async def running_bridge(settings) -> AsyncIterator[FrigateBridge]:
    bridge = FrigateBridge(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    try:
        await asyncio.wait_for(bridge.link.connected.wait(), 20)
        yield bridge
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@contextlib.asynccontextmanager
async def running_worker(relay_url: str, model: Path):
    worker = make_worker(relay_url, enroll_worker(relay_url).secret, model)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop()
        await task


async def frigate_object(broker: Mosquitto, frigate: FrigateStandIn, label: str = "person", **kw) -> str:
    """A tracked object from ``new`` to ``end``, as Frigate publishes it; returns its Frigate id."""
    ident = frigate_id()
    frigate.add_event(ident, kw.pop("snapshot", jpeg(seed=hash(ident) % 1000)))
    obj = tracked(ident, label=label, **kw)
    await publish(broker, "frigate/events", frigate_message("new", obj))
    await publish(broker, "frigate/events", frigate_message("update", {**obj, "top_score": 0.97}, obj))
    return ident


async def end(broker: Mosquitto, ident: str, label: str = "person") -> None:
    await publish(broker, "frigate/events", frigate_message("end", tracked(ident, label=label)))


def rows_per_key(db_url: str, tenant_id: str) -> dict[str, tuple[int, int, str | None]]:
    """idempotency key -> (rows, moments, hint) for a tenant, from PostgreSQL."""

    async def go():
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch(
                "SELECT idem_key, count(*) OVER (PARTITION BY idem_key) AS n, n_moments, hint FROM events "
                "WHERE tenant_id = $1",
                uuid.UUID(tenant_id),
            )
        finally:
            await conn.close()
        return {r["idem_key"]: (r["n"], r["n_moments"], r["hint"]) for r in rows}

    return run_sync(go())


async def test_a_frigate_event_is_reviewed_and_the_verdict_comes_back_as_a_sub_label_and_on_mqtt(
    relay, relay_db, fresh_tenant, broker: Mosquitto, tmp_path: Path, fall_model_onnx: Path, sample_images
) -> None:
    photos = sample_images
    people = [photos["bus.jpg"], photos["zidane.jpg"]]
    settings = bridge_settings(
        tmp_path,
        broker,
        relay.url,
        fresh_tenant.secret,
        frigate_moments=6,
        frigate_labels=["person", "car"],
        # The test model is the fall model: its classes are people standing (Normal) or fallen (Fall).
        frigate_label_map={"person": ["person", "Normal", "Fall"]},
    )
    with FrigateStandIn({"front_door": people}) as frigate:
        settings = settings.model_copy(update={"frigate_url": frigate.url})
        async with (
            MqttProbe(broker, ("insane/#", "homeassistant/#")) as probe,
            running_bridge(settings),
            running_worker(relay.url, fall_model_onnx),
        ):
            person = await frigate_object(broker, frigate, "person", snapshot=photos["bus.jpg"])
            car = await frigate_object(broker, frigate, "car", snapshot=photos["zidane.jpg"])
            ignored = await frigate_object(broker, frigate, "dog")  # not a forwarded label
            named = await frigate_object(broker, frigate, "person", sub_label=["John Smith", 0.87])  # face recognition
            # The objects stay in view for the 5 frames each takes (every 0.05 s), then leave.
            await until(lambda: frigate.count("GET", r"/api/front_door/latest\.jpg") >= 15, what="frames")
            for ident, label in ((person, "person"), (car, "car"), (ignored, "dog"), (named, "person")):
                await end(broker, ident, label)
            await until(lambda: {person, car} <= set(frigate.sub_labels), what="both sub-labels")
            await until(lambda: named in str(probe.all("insane/front_door/verdict")), what="the named one's verdict")
            await probe.wait_for("insane/front_door/Normal", b"ON")
            verdicts = [json.loads(p) for p in probe.all("insane/front_door/verdict")]
    text, score = frigate.sub_labels[person]
    assert text == f"person ✓ {score:.2f}" and 0.25 <= score <= 1
    assert frigate.sub_labels[car] == ("not confirmed", None)
    assert ignored not in frigate.sub_labels and frigate.count("GET", f"/api/events/{ignored}/snapshot.jpg") == 0
    assert named not in frigate.sub_labels  # its name from face recognition stays
    by_frigate = {v["frigate_event_id"]: v for v in verdicts}
    assert set(by_frigate) == {person, car, named}
    v = by_frigate[person]
    assert v["k"] == 6 and v["moments"] == 6 and v["hint"] == "person" and v["moment_errors"] == []
    assert any(label["label"] == "Normal" and label["moments"] >= 1 for label in v["labels"])
    assert v["latency_s"] > 0 and v["summary"].startswith(("Normal", "Fall"))
    config = json.loads(probe.last("homeassistant/binary_sensor/insane/front_door_Normal/config"))
    assert config["state_topic"] == "insane/front_door/Normal" and config["device"]["name"] == "front_door"
    rows = rows_per_key(relay_db, fresh_tenant.id)
    assert rows == {
        f"frigate:{person}": (1, 6, "person"),
        f"frigate:{car}": (1, 6, "car"),
        f"frigate:{named}": (1, 6, "person"),
    }


async def test_faults_lose_nothing_and_post_each_event_once(
    services, broker: Mosquitto, tmp_path: Path, tiny_onnx: Path
) -> None:
    """The broker restarts mid-event, the relay is down for 10 s, Frigate fails one snapshot."""
    db = fresh_database(services)
    relay_config = relay_settings(services, db, lease_idle_s=5.0, max_moments=64)
    relay = relay_on_port(relay_config)
    port = int(relay.url.rsplit(":", 1)[1])
    tenant = make_tenant(relay.url, tier="pro")
    frames = [jpeg(seed=i) for i in range(4)]
    try:
        with FrigateStandIn({"front_door": frames}) as frigate:
            settings = bridge_settings(
                tmp_path,
                broker,
                relay.url,
                tenant.secret,
                frigate_moments=8,
                frigate_frame_interval_s=0.3,  # ~2 s per object: the broker restart falls inside one
                frigate_url=frigate.url,
            )
            async with running_bridge(settings) as bridge, running_worker(relay.url, tiny_onnx):
                await until(bridge.following.is_set, what="the result stream")
                # 1. The broker restarts while an object is being collected (frames come over HTTP).
                mid = await frigate_object(broker, frigate)
                await asyncio.to_thread(broker.restart, 1.0)
                await until(lambda: bridge.link.connections >= 2, what="the bridge reconnected")
                await end(broker, mid)
                # 2. Frigate fails the snapshot of one object, every time it is asked.
                broken = frigate_id()
                frigate.add_event(broken, jpeg())
                frigate.fail("GET", f"/api/events/{broken}/snapshot.jpg", 500, 500, 500)
                async with MqttProbe(broker, ("insane/front_door/verdict",)) as probe:
                    await publish(broker, "frigate/events", frigate_message("new", tracked(broken)))
                    await until(lambda: {mid, broken} <= set(frigate.sub_labels), within=90, what="sub-labels")
                    await end(broker, broken)  # after its 7 frames were taken
                    await until(lambda: broken in str(probe.all("insane/front_door/verdict")), what="its verdict")
                verdict = next(
                    v
                    for v in map(json.loads, probe.all("insane/front_door/verdict"))
                    if v.get("frigate_event_id") == broken
                )
                assert len(verdict["moment_errors"]) == 1 and verdict["moment_errors"][0].startswith("snapshot: ")
                # 3. The relay is down for 10 s while two objects come and go.
                await asyncio.to_thread(relay.stop)
                during = [await frigate_object(broker, frigate) for _ in range(2)]
                for ident in during:
                    await end(broker, ident)
                await until(lambda: len(bridge.spool) == 2, what="both queued on disk")
                await asyncio.sleep(10)
                relay = await asyncio.to_thread(relay_on_port, relay_config, port)
                await until(lambda: set(during) <= set(frigate.sub_labels), within=120, what="sub-labels after")
                assert len(bridge.spool) == 0 and not bridge.pending
    finally:
        relay.stop()
    rows = rows_per_key(db, tenant.id)
    assert set(rows) == {f"frigate:{i}" for i in (mid, broken, *during)}
    assert all(n == 1 for n, _, _ in rows.values())  # each event posted once
    assert rows[f"frigate:{broken}"][1] == 7  # its 7 frames; the snapshot is a moment error
    assert rows[f"frigate:{mid}"][1] == 8


def relay_on_port(settings, port: int = 0) -> RelayServer:
    """A relay whose listening socket has SO_REUSEADDR, so that another can take its port right after
    it stops (connections it closed linger in FIN_WAIT while their clients hold them)."""
    relay = RelayServer(settings)
    relay.sock.close()
    relay.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    relay.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    relay.sock.bind(("127.0.0.1", port))
    relay.url = f"http://127.0.0.1:{relay.sock.getsockname()[1]}"
    return relay.__enter__()


async def test_a_stop_keeps_the_events_it_holds_and_the_next_start_posts_them(
    relay, relay_db, fresh_tenant, broker: Mosquitto, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(bridge_module, "STOP_GRACE_S", 1.0)  # the relay is down: no use waiting 10 s
    with FrigateStandIn({"front_door": [jpeg(seed=i) for i in range(3)]}) as frigate:
        down = bridge_settings(
            tmp_path,
            broker,
            "http://127.0.0.1:9",  # no relay there
            fresh_tenant.secret,
            frigate_url=frigate.url,
            frigate_moments=50,
            frigate_frame_interval_s=0.1,
        )
        async with running_bridge(down) as bridge:
            finished = await frigate_object(broker, frigate)
            await end(broker, finished)
            await until(lambda: len(bridge.spool) == 1, what="the finished one queued")
            in_hand = await frigate_object(broker, frigate)
            await until(lambda: in_hand in bridge.collectors, what="collecting")
            await asyncio.sleep(0.5)
        # Stopped mid-collection: what it had taken was queued on disk with its snapshot.
        queued = {e.meta["frigate_id"]: e for e in Spool(tmp_path / "frigate" / "spool", 10**9).entries()}
        assert set(queued) == {finished, in_hand}
        assert 3 <= len(queued[in_hand].meta["images"]) < 50
        up = down.model_copy(update={"relay_url": relay.url})
        async with running_bridge(up) as bridge:
            await until(lambda: len(bridge.spool) == 0 and bridge.posted == 2, what="posted at the next start")
            await publish(broker, "frigate/events", frigate_message("update", tracked(in_hand)))
            await asyncio.sleep(0.3)
            assert in_hand not in bridge.collectors  # already collected: not collected again
    rows = rows_per_key(relay_db, fresh_tenant.id)
    assert rows[f"frigate:{finished}"][0] == rows[f"frigate:{in_hand}"][0] == 1


async def test_garbage_on_the_events_topic_is_logged_and_changes_nothing(
    relay, fresh_tenant, broker: Mosquitto, tmp_path: Path, caplog
) -> None:
    with FrigateStandIn({"front_door": [jpeg()]}) as frigate:
        settings = bridge_settings(tmp_path, broker, relay.url, fresh_tenant.secret, frigate_url=frigate.url)
        async with running_bridge(settings) as bridge:
            for payload in (b"\xff\xfe", b"{}", json.dumps({"type": "new", "after": tracked("../x")}).encode()):
                await publish(broker, "frigate/events", payload)
            await asyncio.sleep(0.5)
            assert not bridge.collectors and len(bridge.spool) == 0
    assert caplog.text.count("is not a Frigate event") == 1  # at most one line a minute
    assert frigate.calls == []
