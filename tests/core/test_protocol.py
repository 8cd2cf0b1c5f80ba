"""The relay-worker contract refuses what PostgreSQL cannot store, on both sides, and stays readable to old workers."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import pydantic
import pytest

from core.protocol import EventResult, Heartbeat, LeasedEvent, LeaseResponse
from core.worker.state import MetricsSnapshot, WorkerState


def result(**changes) -> dict:
    body = {
        "event_id": str(uuid.uuid4()),
        "k": 1,
        "moments": [
            {"index": 0, "detections": [{"label": "p", "class_id": 0, "confidence": 0.5, "box": [1, 2, 3, 4]}]}
        ],
        "verdict": [{"label": "p", "moments": 1, "best": 0.5, "median": 0.5}],
        "timings_ms": {"infer": 3.0},
        "model": "m",
        "provider": "cpu",
    }
    body.update(changes)
    return body


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_wherever_floats_enter(raw: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="finite number"):
        Heartbeat.model_validate_json(f'{{"metrics": {{"x": {raw}}}}}')
    ok = EventResult.model_validate(result()).model_dump_json()
    for where, finite in [('"infer":', "3.0"), ('"best":', "0.5"), ('"box":[', "1.0"), ('"confidence":', "0.5")]:
        bad = ok.replace(where + finite, where + raw, 1)
        assert bad != ok, where
        with pytest.raises(pydantic.ValidationError, match=r"finite number|less than or equal"):
            EventResult.model_validate_json(bad)


@pytest.mark.parametrize(
    "changes",
    [
        {"k": 10**6},
        {"moments": [{"index": 10**30}]},
        {"moments": [{"index": 0, "width": -1}]},
        {"verdict": [{"label": "p", "moments": 1, "best": 1.5, "median": 0.5}]},
        {"timings_ms": {"": 1.0}},
        {"timings_ms": {f"s{i}": 1.0 for i in range(65)}},
        {"model": "m" * 501},
    ],
)
def test_counts_and_texts_have_bounds(changes: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        EventResult.model_validate(result(**changes))


def test_allow_ports_is_left_out_when_empty_so_older_workers_still_read_leases() -> None:
    event = LeasedEvent(
        lease_id="standard:1-0",
        event_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        lane="standard",
        camera="c",
        created_at=datetime.now(UTC),
        moments=[],
    )
    assert "allow_ports" not in LeaseResponse(events=[event]).model_dump_json()
    with_ports = event.model_copy(update={"allow_ports": [5000]})
    dumped = LeaseResponse(events=[with_ports]).model_dump_json()
    assert '"allow_ports":[5000]' in dumped
    assert LeaseResponse.model_validate_json(dumped).events[0].allow_ports == [5000]


def test_the_workers_heartbeat_drops_metrics_it_could_not_send() -> None:
    snap = MetricsSnapshot(
        at=0.0,
        state=WorkerState.RUNNING,
        state_detail="",
        images_per_s=math.nan,
        events_per_s=2.0,
        latency_ms={"infer": {"p50": math.inf, "p99": 30.0}},
        queue_depth={},
        batch_size=1,
        k={},
        provider="cpu",
        model="m",
        threads=1,
        images_total=1,
        events_total=1,
        errors_total=0,
    )
    metrics = snap.heartbeat_metrics()
    assert "images_per_s" not in metrics and "latency_infer_p50_ms" not in metrics and metrics["events_per_s"] == 2.0
    Heartbeat(metrics=metrics)  # what the worker sends validates
