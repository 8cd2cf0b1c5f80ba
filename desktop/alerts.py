"""When an error needs the user: a desktop notification once per episode, never a stream of them.

    policy = AlertPolicy(after_s=settings.tray_alert_after_s)
    alert = policy.observe(snapshot.state, snapshot.state_detail, now=time.monotonic())
    if alert: tray.notify(alert.title, alert.message)

A refused worker token needs the user at once (enroll again); an unreachable relay only once it has
lasted ``after_s`` (home internet drops for a minute all the time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from desktop.status import state_name


@dataclass(frozen=True)
class Alert:
    title: str
    message: str


def needs_enrollment(detail: str) -> bool:
    # The engine reports errors as text; core.worker's TokenRejected says "worker token" in its message.
    return "worker token" in detail.lower()


class AlertPolicy:
    def __init__(self, after_s: float = 120.0) -> None:
        self.after_s = after_s
        self._since: float | None = None  # when the current error episode began
        self._told: set[str] = set()  # kinds already notified in this episode

    def observe(self, state: Any, detail: str, now: float) -> Alert | None:
        if state_name(state) != "error":
            self._since = None
            self._told.clear()
            return None
        if self._since is None:
            self._since = now
        if needs_enrollment(detail):
            if "token" not in self._told:
                self._told.add("token")
                return Alert("Enrollment needed", f"{detail}. Open Settings and paste a new enrollment code.")
            return None
        if now - self._since >= self.after_s and "unreachable" not in self._told:
            self._told.add("unreachable")
            minutes = max(1, round((now - self._since) / 60))
            return Alert("Relay unreachable", f"No contact with the relay for {minutes} min: {detail}")
        return None
