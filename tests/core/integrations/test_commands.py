"""``insane bridge frigate`` and ``insane mqtt publish`` as a user runs them: settings, refusals, Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from core.integrations.spool import Spool
from insane.devkit import INSANE
from tests.core.integrations.bridge_kit import frigate_id, frigate_message, jpeg, tracked
from tests.core.integrations.frigate_standin import FrigateStandIn
from tests.core.integrations.mosquitto import Mosquitto, publish


def env(**values: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("INSANE_")}
    out.update({f"INSANE_{k.upper()}": v for k, v in values.items()})
    return out


def test_without_an_api_key_both_commands_say_what_to_set(tmp_path: Path) -> None:
    for command in (["bridge", "frigate"], ["mqtt", "publish"]):
        r = subprocess.run([*INSANE, *command], env=env(bridge_state_dir=str(tmp_path)), capture_output=True, text=True)
        assert r.returncode == 2 and "set INSANE_API_KEY to the tenant's API key" in r.stderr, r.stderr


def test_a_key_the_relay_refuses_stops_the_start_with_the_relays_word(relay, tmp_path: Path) -> None:
    r = subprocess.run(
        [*INSANE, "mqtt", "publish", "--relay-url", relay.url],
        env=env(api_key="ik_nope_" + "x" * 40, bridge_state_dir=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and f"the relay at {relay.url} refused the API key" in r.stderr, r.stderr


def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path) -> None:
    r = subprocess.run(
        [*INSANE, "bridge", "frigate", "--mqtt-url", "tcp://broker"],
        env=env(api_key="k", bridge_state_dir=str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "invalid setting: INSANE_MQTT_URL='tcp://broker' is invalid: must be mqtt://host[:port]" in r.stderr


async def test_ctrl_c_keeps_what_the_bridge_holds_and_a_second_bridge_on_its_folder_is_refused(
    broker: Mosquitto, tmp_path: Path
) -> None:
    with FrigateStandIn({"front_door": [jpeg()]}) as frigate:
        settings = env(
            api_key="ik_a_" + "b" * 40,
            relay_url="http://127.0.0.1:9",  # the relay is down: events stay queued
            mqtt_url=broker.url,
            frigate_url=frigate.url,
            frigate_moments="3",
            frigate_frame_interval_s="0.05",
            bridge_state_dir=str(tmp_path),
        )
        proc = await asyncio.to_thread(
            subprocess.Popen, [*INSANE, "bridge", "frigate"], env=settings, stderr=subprocess.PIPE, text=True
        )
        try:
            ident = frigate_id()
            frigate.add_event(ident, jpeg(seed=3))
            deadline = time.monotonic() + 30
            spool = tmp_path / "frigate" / "spool"
            while time.monotonic() < deadline and not any(spool.glob("0*")):
                await publish(broker, "frigate/events", frigate_message("new", tracked(ident)))
                await asyncio.sleep(0.5)
            second = await asyncio.to_thread(
                subprocess.run, [*INSANE, "bridge", "frigate"], env=settings, capture_output=True, text=True
            )
            assert second.returncode == 2 and "another process uses" in second.stderr
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, err
    assert "1 events stay queued" in err
    entries = Spool(spool, 10**9).entries()
    assert [e.meta["frigate_id"] for e in entries] == [ident] and len(entries[0].meta["images"]) == 3
