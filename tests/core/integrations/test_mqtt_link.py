"""One MQTT connection against a real mosquitto: QoS 1 through outages, credentials, the Last Will."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

from core.integrations.mqtt_link import MqttConfig, MqttLink
from tests.core.integrations.mosquitto import Mosquitto, MqttProbe, publish, until


def config(broker: Mosquitto, name: str, **kw) -> MqttConfig:
    values = dict(host="127.0.0.1", port=broker.port, tls=False, username=None, password=None, client_id=name)
    values.update(kw)
    return MqttConfig(availability_topic=f"{name}/status", **values)


@contextlib.asynccontextmanager
async def linked(cfg: MqttConfig, **kw):
    link = MqttLink(cfg, **kw)
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        await link.close()  # ends the task
        assert task.done()


async def test_a_publish_waits_out_a_broker_outage_and_arrives(broker: Mosquitto) -> None:
    async with linked(config(broker, "outage")) as link:
        await asyncio.wait_for(link.connected.wait(), 10)
        await asyncio.to_thread(broker.stop)
        pending = asyncio.create_task(link.publish("outage/verdict", "kept", retain=True))
        await asyncio.sleep(1.5)
        assert not pending.done()
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(pending, 40)
        async with MqttProbe(broker, ("outage/#",)) as probe:
            assert await probe.wait_for("outage/verdict") == b"kept"
            assert await probe.wait_for("outage/status") == b"online"
        assert link.connections == 2


async def test_messages_come_in_on_the_subscriptions_again_after_a_reconnect(broker: Mosquitto) -> None:
    got: list[tuple[str, bytes]] = []

    async def on_message(topic: str, payload: bytes) -> None:
        got.append((topic, payload))

    async with linked(config(broker, "sub"), subscriptions=["frigate/events"], on_message=on_message) as link:
        await asyncio.wait_for(link.connected.wait(), 10)
        await asyncio.to_thread(broker.restart, 0.2)
        await until(lambda: link.connections >= 2, 20, "reconnected")
        await publish(broker, "frigate/events", b'{"type": "new"}')
        await until(lambda: got, 10, "the message")
    assert got == [("frigate/events", b'{"type": "new"}')]


async def test_credentials_are_used_and_a_wrong_password_is_retried_not_fatal(tmp_path: Path, caplog) -> None:
    broker = Mosquitto(tmp_path / "auth", passwords={"bridge": "s3cret"})
    broker.start()
    try:
        async with linked(config(broker, "good", username="bridge", password="s3cret")) as link:
            await asyncio.wait_for(link.connected.wait(), 10)
            await link.publish("good/x", "1")
        async with linked(config(broker, "bad", username="bridge", password="wrong")) as link:
            await asyncio.sleep(2.5)
            assert link.connections == 0 and not link.connected.is_set()
    finally:
        broker.stop()
    assert "MQTT broker 127.0.0.1" in caplog.text and "connecting again" in caplog.text


LINK_CHILD = """
import asyncio, sys
from core.integrations.mqtt_link import MqttConfig, MqttLink
cfg = MqttConfig("127.0.0.1", int(sys.argv[1]), False, None, None, "child", "child/status")
link = MqttLink(cfg)
async def main():
    task = asyncio.create_task(link.run())
    await link.connected.wait()
    print("connected", flush=True)
    await task
asyncio.run(main())
"""


async def test_a_bridge_that_dies_is_marked_offline_by_its_last_will(broker: Mosquitto) -> None:
    child = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-c", LINK_CHILD, str(broker.port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert (await asyncio.to_thread(child.stdout.readline)).strip() == "connected"
        async with MqttProbe(broker, ("child/status",)) as probe:
            await probe.wait_for("child/status", b"online")
            child.send_signal(signal.SIGKILL)
            await probe.wait_for("child/status", b"offline", within=10)
    finally:
        child.kill()
        await asyncio.to_thread(child.wait)
        child.stdout.close()
