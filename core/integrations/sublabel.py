"""The verdict, written back to Frigate as the tracked object's sub-label.

    text, score = sub_label("person", event, label_map)   # ("person ✓ 0.91", 0.91) or ("not confirmed", None)
    writer = SubLabelWriter(api)
    await writer.write(frigate_id, text, score)           # retried on errors; a refusal is logged once

A Frigate label is confirmed when the review saw it, or one of the model labels that
``label_map[label]`` names (a model with other class names: ``{"person": ["Normal", "Fall"]}``).
Frigate refusing the call (no auth, an old version without the API, a deleted event) is logged once per
kind of answer and the bridge goes on: the verdict still reaches MQTT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from core.integrations.frigate_api import FrigateApi, FrigateError

log = logging.getLogger(__name__)

RETRY_AFTER_S = (2.0, 5.0, 15.0)


def sub_label(label: str, event: dict[str, Any], label_map: Mapping[str, Sequence[str]]) -> tuple[str, float | None]:
    confirming = set(label_map.get(label) or [label])
    best = [float(v["best"]) for v in event.get("verdict") or [] if v.get("label") in confirming]
    if best:
        return f"{label} ✓ {max(best):.2f}", max(best)
    return "not confirmed", None


class SubLabelWriter:
    def __init__(self, api: FrigateApi) -> None:
        self.api = api
        self.refusals: set[int | None] = set()
        self.written = 0

    async def write(self, frigate_id: str, text: str, score: float | None) -> bool:
        failure: FrigateError | None = None
        for wait in (0.0, *RETRY_AFTER_S):
            await asyncio.sleep(wait)
            try:
                await self.api.set_sub_label(frigate_id, text, score)
            except FrigateError as exc:
                if exc.refused:
                    self._refused(exc)
                    return False
                failure = exc
                continue
            self.written += 1
            log.info("Frigate event %s: sub-label %r", frigate_id, text)
            return True
        log.warning("could not write the sub-label of Frigate event %s: %s", frigate_id, failure)
        return False

    def _refused(self, exc: FrigateError) -> None:
        if exc.status in self.refusals:
            log.debug("Frigate refused a sub-label again: %s", exc)
            return
        self.refusals.add(exc.status)
        log.warning(
            "Frigate refused the sub-label (%s): check that this Frigate has the sub-label API and the "
            "bridge's Frigate user; verdicts still go to MQTT (this is logged once)",
            exc,
        )
