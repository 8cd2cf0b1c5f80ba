"""``insane bridge frigate``: Frigate's tracked objects reviewed by the relay, the verdicts written back.

Runs until Ctrl-C (or SIGTERM): the first signal stops collecting, queues what each object already has
and posts the queue for up to 10 s; a second one stops at once. Whatever is not posted stays queued
on disk for the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

# Imported here so that `insane --help` says what is missing where the bridge extra is not installed.
import aiomqtt  # noqa: F401
import httpx_sse  # noqa: F401

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bridge",
        help="bridge an NVR to the relay (Frigate: events in, verdicts back as sub-labels and on MQTT)",
        description="Bridges that run beside an NVR and talk to the relay with the tenant's API key.",
    )
    kinds = p.add_subparsers(dest="kind", metavar="NVR", required=True)
    frigate = kinds.add_parser(
        "frigate",
        help="review Frigate's tracked objects: sub-labels in Frigate, verdicts on MQTT for Home Assistant",
        description="Subscribe to Frigate's <prefix>/events (INSANE_MQTT_URL, INSANE_FRIGATE_TOPIC_PREFIX), "
        "collect INSANE_FRIGATE_MOMENTS moments of each tracked object from Frigate's API (INSANE_FRIGATE_URL), "
        "post them to the relay (INSANE_RELAY_URL, INSANE_API_KEY), write the verdict back as a sub-label and "
        "publish it on MQTT with Home Assistant discovery. Cameras, labels and zones come from the settings "
        "file. Ctrl-C posts what is queued (up to 10 s) and keeps the rest on disk.",
    )
    frigate.add_argument("--relay-url", help="override INSANE_RELAY_URL")
    frigate.add_argument("--frigate-url", help="override INSANE_FRIGATE_URL")
    frigate.add_argument("--mqtt-url", help="override INSANE_MQTT_URL")
    frigate.set_defaults(func=frigate_command, settings_overrides=_overrides)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "relay_url": getattr(args, "relay_url", None),
        "frigate_url": getattr(args, "frigate_url", None),
        "mqtt_url": getattr(args, "mqtt_url", None),
    }


def frigate_command(args: argparse.Namespace, settings) -> int:
    from core.integrations.bridge import FrigateBridge

    return run_service("insane bridge frigate", settings, FrigateBridge, settings.bridge_state_dir / "frigate")


def run_service(name: str, settings, make, folder) -> int:
    """Run ``make(settings).run(stop, hurry)`` until a signal: the first stops it, a second hurries it."""
    import httpx

    from core.integrations.statefile import FolderBusy, lock_folder

    if settings.api_key is None:
        print(f"{name}: set INSANE_API_KEY to the tenant's API key (insane tenant create prints it)", file=sys.stderr)
        return 2
    try:
        held = lock_folder(folder)
    except (FolderBusy, OSError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    try:
        refused = _key_refused(httpx, settings)
        if refused:
            print(f"{name}: the relay at {settings.relay_url} refused the API key: {refused}", file=sys.stderr)
            return 2
        asyncio.run(_serve(make(settings)))
    finally:
        held.close()
    return 0


def _key_refused(httpx, settings) -> str | None:
    """The relay's word on the key, when it can be had; an unreachable relay is no reason not to start."""
    try:
        resp = httpx.get(
            f"{settings.relay_url}/v1/events",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        log.warning("the relay at %s does not answer (%s); events are queued until it does", settings.relay_url, exc)
        return None
    if resp.status_code in (401, 403):
        try:
            return resp.json().get("detail") or f"HTTP {resp.status_code}"
        except ValueError:
            return f"HTTP {resp.status_code}"
    return None


async def _serve(service) -> None:
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            log.info("stopping now")
            hurry.set()
        else:
            log.info("stopping (Ctrl-C again to stop now)")
            stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await service.run(stop, hurry)
