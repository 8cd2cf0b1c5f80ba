"""``insane mqtt publish``: the tenant's verdicts on MQTT, with Home Assistant discovery.

Follows the relay's result stream (resumed from its saved cursor after any outage) and publishes each
verdict on ``insane/<camera>/verdict`` and ``insane/<camera>/<label>`` (ON, then OFF after the off-delay).
"""

from __future__ import annotations

import argparse
from typing import Any

# Imported here so that `insane --help` says what is missing where the bridge extra is not installed.
import aiomqtt  # noqa: F401
import httpx_sse  # noqa: F401


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mqtt",
        help="publish the tenant's verdicts on MQTT, with Home Assistant discovery",
        description="MQTT publishing of verdicts.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    publish = actions.add_parser(
        "publish",
        help="follow the relay's results for a tenant and publish each verdict on MQTT",
        description="Follow the relay's result stream (INSANE_RELAY_URL, INSANE_API_KEY) and publish each "
        "verdict on MQTT (INSANE_MQTT_URL): insane/<camera>/verdict (JSON) and insane/<camera>/<label> (ON, "
        "OFF after INSANE_MQTT_OFF_DELAY_S), with Home Assistant discovery. Resumes where it stopped; an "
        "old alarm is never published as a new one. Ctrl-C stops it.",
    )
    publish.add_argument("--relay-url", help="override INSANE_RELAY_URL")
    publish.add_argument("--mqtt-url", help="override INSANE_MQTT_URL")
    publish.set_defaults(func=publish_command, settings_overrides=_overrides)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"relay_url": getattr(args, "relay_url", None), "mqtt_url": getattr(args, "mqtt_url", None)}


def publish_command(args: argparse.Namespace, settings) -> int:
    from core.integrations.publisher import MqttPublisher
    from insane.commands.bridge import run_service

    return run_service("insane mqtt publish", settings, MqttPublisher, settings.bridge_state_dir / "mqtt")
