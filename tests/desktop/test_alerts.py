"""Notifications: once per error episode; a refused token at once, an unreachable relay after a while."""

from __future__ import annotations

from core.worker import WorkerState
from desktop.alerts import AlertPolicy

DOWN = "relay unreachable at http://r: connection refused"
TOKEN = "relay refused the worker token (401); enroll this worker again"


def test_unreachable_relay_is_told_once_after_the_delay() -> None:
    policy = AlertPolicy(after_s=60)
    assert policy.observe(WorkerState.ERROR, DOWN, now=0) is None
    assert policy.observe(WorkerState.ERROR, DOWN, now=59) is None
    alert = policy.observe(WorkerState.ERROR, DOWN, now=61)
    assert alert is not None and alert.title == "Relay unreachable" and DOWN in alert.message
    assert policy.observe(WorkerState.ERROR, DOWN, now=500) is None  # once per episode


def test_recovery_starts_a_new_episode() -> None:
    policy = AlertPolicy(after_s=10)
    policy.observe(WorkerState.ERROR, DOWN, now=0)
    assert policy.observe(WorkerState.ERROR, DOWN, now=11) is not None
    assert policy.observe(WorkerState.IDLE, "", now=12) is None
    assert policy.observe(WorkerState.ERROR, DOWN, now=13) is None  # the clock starts again
    assert policy.observe(WorkerState.ERROR, DOWN, now=24) is not None


def test_refused_token_is_told_at_once() -> None:
    policy = AlertPolicy(after_s=600)
    alert = policy.observe(WorkerState.ERROR, TOKEN, now=0)
    assert alert is not None and alert.title == "Enrollment needed" and "Settings" in alert.message
    assert policy.observe(WorkerState.ERROR, TOKEN, now=1) is None
