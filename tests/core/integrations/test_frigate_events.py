"""Frigate's documented ``frigate/events`` messages are read, bad ones refused precisely, filters applied."""

from __future__ import annotations

import json

import pytest

from core.integrations.frigate_events import BadEvent, Rules, idempotency_key, parse_event
from core.settings import load_settings
from tests.core.integrations.bridge_kit import frigate_message, tracked

# The example of Frigate's MQTT documentation (integrations/mqtt, frigate/events), as published.
DOCUMENTED = """{
  "type": "update",
  "before": {
    "id": "1607123955.475377-mxklsc", "camera": "front_door", "frame_time": 1607123961.837752,
    "snapshot": {"frame_time": 1607123965.975463, "box": [415, 489, 528, 700], "area": 12728,
                 "region": [260, 446, 660, 846], "score": 0.77546, "attributes": []},
    "label": "person", "sub_label": null, "top_score": 0.958984375, "false_positive": false,
    "start_time": 1607123955.475377, "end_time": null, "score": 0.7890625, "box": [424, 500, 536, 712],
    "area": 23744, "ratio": 2.113207, "region": [264, 450, 667, 853], "current_zones": ["driveway"],
    "entered_zones": ["yard", "driveway"], "thumbnail": null, "has_snapshot": false, "has_clip": false,
    "active": true, "stationary": false, "motionless_count": 0, "position_changes": 2,
    "attributes": {"face": 0.64}, "current_attributes": []
  },
  "after": {
    "id": "1607123955.475377-mxklsc", "camera": "front_door", "frame_time": 1607123962.082975,
    "snapshot": {"frame_time": 1607123965.975463, "box": [415, 489, 528, 700], "area": 12728,
                 "region": [260, 446, 660, 846], "score": 0.77546, "attributes": []},
    "label": "person", "sub_label": ["John Smith", 0.79], "top_score": 0.958984375, "false_positive": false,
    "start_time": 1607123955.475377, "end_time": null, "score": 0.87890625, "box": [432, 496, 544, 854],
    "area": 40096, "ratio": 1.251397, "region": [218, 440, 693, 915], "current_zones": ["yard", "driveway"],
    "entered_zones": ["yard", "driveway"], "thumbnail": null, "has_snapshot": false, "has_clip": false,
    "active": true, "stationary": false, "motionless_count": 0, "position_changes": 2,
    "attributes": {"face": 0.86}, "current_attributes": [{"label": "face", "box": [442, 506, 534, 524],
    "score": 0.86}], "current_estimated_speed": 0.71, "velocity_angle": 180, "recognized_license_plate": null,
    "recognized_license_plate_score": null
  }
}"""


def test_the_documented_update_is_read() -> None:
    message = parse_event(DOCUMENTED.encode())
    obj = message.after
    assert message.type == "update" and not message.ended
    assert (obj.id, obj.camera, obj.label) == ("1607123955.475377-mxklsc", "front_door", "person")
    assert obj.start_time == 1607123955.475377 and obj.entered_zones == ["yard", "driveway"]
    assert obj.sub_label_name == "John Smith" and message.before.sub_label_name is None


def test_an_end_message_ends_the_object() -> None:
    assert parse_event(frigate_message("end", tracked("1.5-abcdef"))).ended
    assert not parse_event(frigate_message("new", tracked("1.5-abcdef"))).ended


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "message: Invalid JSON"),
        (b"[]", "message: Input should be an object"),
        (json.dumps({"type": "new"}).encode(), "after: Field required"),
        (json.dumps({"type": "moved", "after": tracked("1.5-abcdef")}).encode(), "type: Input should be 'new'"),
        (
            json.dumps({"type": "new", "after": tracked("../../config")}).encode(),
            "after.id: Value error, not a Frigate",
        ),
        (json.dumps({"type": "new", "after": tracked("1.5-a", camera="a/../b")}).encode(), "after.camera: Value error"),
        (json.dumps({"type": "new", "after": {**tracked("1.5-a"), "start_time": "x"}}).encode(), "after.start_time"),
        (json.dumps({"type": "new", "after": {**tracked("1.5-a"), "label": ""}}).encode(), "after.label"),
    ],
)
def test_a_bad_message_is_refused_with_where_and_why(payload: bytes, message: str) -> None:
    with pytest.raises(BadEvent) as err:
        parse_event(payload)
    assert str(err.value).startswith(message), str(err.value)


def test_the_idempotency_key_is_the_frigate_event_id() -> None:
    assert idempotency_key("1607123955.475377-mxklsc") == "frigate:1607123955.475377-mxklsc"


def rules(**settings) -> Rules:
    return Rules.from_settings(load_settings(**settings))


def obj(camera: str = "front_door", label: str = "person", zones=None, **extra):
    return parse_event(frigate_message("new", tracked("1.5-abcdef", camera, label, zones=zones, **extra))).after


def test_by_default_every_camera_and_label_is_forwarded_with_the_default_moments() -> None:
    rule = rules().accepts(obj("garage", "cat"))
    assert rule is not None and rule.moments == 24 and rule.frame_interval_s == 0.5
    assert rules().accepts(obj(false_positive=True)) is None


def test_cameras_labels_and_zones_filter_with_per_camera_overrides() -> None:
    r = rules(
        frigate_cameras=["front_door", "driveway", "yard"],
        frigate_labels=["person"],
        frigate_zones=["porch"],
        frigate_moments=30,
        frigate_camera_overrides={
            "driveway": {"labels": ["car", "person"], "zones": ["street"], "moments": 40, "frame_interval_s": 1},
            "yard": {"enabled": False},
        },
    )
    assert r.accepts(obj("front_door", "person", ["porch"])).moments == 30
    assert r.accepts(obj("front_door", "person", ["street"])) is None  # not in a wanted zone
    assert r.accepts(obj("front_door", "car", ["porch"])) is None  # not a wanted label
    assert r.accepts(obj("front_door", "person")) is None  # no zone yet: an update may bring one
    driveway = r.accepts(obj("driveway", "car", ["street"]))
    assert (driveway.moments, driveway.frame_interval_s) == (40, 1.0)
    assert r.accepts(obj("yard", "person", ["porch"])) is None  # turned off
    assert r.accepts(obj("garage", "person", ["porch"])) is None  # not listed


def test_an_override_for_a_camera_that_is_not_listed_is_reported(caplog) -> None:
    rules(frigate_cameras=["front_door"], frigate_camera_overrides={"gate": {"labels": ["car"]}})
    assert "frigate_camera_overrides names gate, which frigate_cameras does not list" in caplog.text
