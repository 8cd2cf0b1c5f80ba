"""What a verdict says: the sensor's state line and the JSON on the verdict topic."""

from __future__ import annotations

from core.integrations.verdicts import summarize, verdict_json

EVENT = {
    "id": "e1",
    "camera": "front_door",
    "time": "2026-01-01T10:00:00+00:00",
    "hint": "person",
    "status": "done",
    "n_moments": 24,
    "k": 20,
    "created_at": "2026-01-01T10:00:01+00:00",
    "done_at": "2026-01-01T10:00:03.500000+00:00",
    "verdict": [
        {"label": "car", "moments": 2, "best": 0.4, "median": 0.35},
        {"label": "person", "moments": 12, "best": 0.914, "median": 0.8},
    ],
}


def test_the_state_line_puts_the_surest_label_first_and_fits_home_assistant() -> None:
    assert summarize(EVENT) == "person 12/20 (0.91), car 2/20 (0.40)"
    assert summarize({**EVENT, "verdict": []}) == "nothing seen"
    assert summarize({**EVENT, "status": "failed", "error": "poison"}) == "review failed: poison"
    many = {**EVENT, "verdict": [{"label": f"label{i}", "moments": 1, "best": 0.5, "median": 0.5} for i in range(40)]}
    assert len(summarize(many)) == 255


def test_the_verdict_json_has_labels_k_and_latency() -> None:
    body = verdict_json(EVENT, replayed=False, extra={"frigate_event_id": "1.5-abcdef"})
    assert body["event_id"] == "e1" and body["k"] == 20 and body["moments"] == 24 and body["latency_s"] == 2.5
    assert body["labels"][1] == {"label": "person", "moments": 12, "best": 0.914, "median": 0.8}
    assert body["replayed"] is False and body["frigate_event_id"] == "1.5-abcdef"
    assert verdict_json({**EVENT, "done_at": None}, replayed=True)["latency_s"] is None
