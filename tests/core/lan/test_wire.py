"""The DeepStack / CodeProject.AI wire format: every rule of core/lan/wire.py, on exact inputs."""

from __future__ import annotations

import json

import pytest

from core.lan.address import parse_address
from core.lan.wire import (
    WireError,
    detection_body,
    device,
    encode,
    error_body,
    message,
    parse_max_predictions,
    parse_min_confidence,
    predictions,
)
from core.protocol import Detection


def det(label: str, conf: float, box=(10.0, 20.0, 30.0, 40.0)) -> Detection:
    return Detection(label=label, class_id=0, confidence=conf, box=box)


@pytest.mark.parametrize(("raw", "value"), [(None, 0.4), ("", 0.4), (" ", 0.4), ("0", 0.0), ("1", 1.0), ("0.55", 0.55)])
def test_min_confidence_defaults_to_0_4_and_reads_a_string(raw, value) -> None:
    assert parse_min_confidence(raw) == value


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("abc", "Invalid value for min_confidence"),
        ("nan", "Invalid value for min_confidence"),
        ("inf", "Invalid value for min_confidence"),
        ("-0.1", "Invalid value for min_confidence"),
        ("1.0001", "min_confidence cannot be greater than 1"),
        ("40", "min_confidence cannot be greater than 1"),
    ],
)
def test_a_bad_min_confidence_is_400_in_deepstacks_words(raw, error) -> None:
    with pytest.raises(WireError) as caught:
        parse_min_confidence(raw)
    assert (caught.value.status, caught.value.error) == (400, error)


def test_max_predictions_is_20_unless_asked_1_to_1000() -> None:
    assert parse_max_predictions(None) == 20
    assert parse_max_predictions("300") == 300
    for bad in ("0", "1001", "-3", "2.5", "x", "٣"):
        with pytest.raises(WireError) as caught:
            parse_max_predictions(bad)
        assert caught.value.status == 400


def test_predictions_are_sorted_filtered_capped_and_in_whole_pixels() -> None:
    dets = [det("car", 0.5), det("person", 0.9), det("dog", 0.39999), det("cat", 0.4), det("bus", 0.7)]
    preds = predictions(dets, 0.4, limit=3, width=100, height=100)
    assert [(p.label, p.confidence) for p in preds] == [("person", 0.9), ("bus", 0.7), ("car", 0.5)]
    assert predictions(dets, 0.4, limit=20, width=100, height=100)[-1].label == "cat"  # 0.4 >= 0.4 is kept


def test_boxes_truncate_like_int_and_stay_inside_the_image() -> None:
    (p,) = predictions([det("person", 0.9, (10.99, -0.5, 640.7, 480.2))], 0.1, 20, width=640, height=480)
    assert (p.x_min, p.y_min, p.x_max, p.y_max) == (10, 0, 640, 480)
    assert all(isinstance(v, int) for v in (p.x_min, p.y_min, p.x_max, p.y_max))


def test_message_names_three_labels_then_an_ellipsis() -> None:
    assert message([]) == "No objects found"
    two = predictions([det("person", 0.9), det("car", 0.8)], 0.4, 20, 100, 100)
    assert message(two) == "Found person, car"
    four = predictions([det(str(i), 0.9 - i / 10) for i in range(4)], 0.4, 20, 100, 100)
    assert message(four) == "Found 0, 1, 2..."


def test_the_body_has_codeproject_fields_and_encodes_compactly() -> None:
    preds = predictions([det("person", 0.9)], 0.4, 20, 100, 100)
    body = detection_body(
        preds,
        inference_ms=41.6,
        process_ms=50.2,
        round_trip_ms=60.9,
        model="yolov8n",
        provider="CUDAExecutionProvider",
        command="detect",
        request_id="r1",
        processed_by="pc",
    )
    data = json.loads(encode(body))
    assert data["success"] is True and data["code"] == 200 and data["count"] == 1
    assert (data["inferenceMs"], data["processMs"], data["analysisRoundTripMs"]) == (42, 50, 61)
    assert data["inferenceDevice"] == "GPU" and data["processedBy"] == "pc" and data["moduleName"].endswith("(yolov8n)")
    assert data["predictions"] == [
        {"label": "person", "confidence": 0.9, "x_min": 10, "y_min": 20, "x_max": 30, "y_max": 40}
    ]
    assert b" " not in encode({"a": [1, 2]})
    assert device("CPUExecutionProvider") == "CPU" and device("") == "CPU"


def test_errors_are_success_false_with_the_status() -> None:
    assert error_body("No valid image file found", 400) == {
        "success": False,
        "error": "No valid image file found",
        "code": 400,
    }
    assert WireError(429, "slow down", retry_after=2.1).headers() == {"Retry-After": "3"}
    assert WireError(400, "x").headers() == {}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("32168", ("127.0.0.1", 32168)),
        (" 0.0.0.0:32168 ", ("0.0.0.0", 32168)),
        ("[::1]:80", ("::1", 80)),
        ("nas.local:0", ("nas.local", 0)),
    ],
)
def test_addresses_are_loopback_unless_a_host_is_named(value, parsed) -> None:
    assert parse_address(value) == parsed


@pytest.mark.parametrize("value", ["", "host:", ":80", "65536", "[::1]80", "a:b", "12.5"])
def test_bad_addresses_say_what_is_expected(value) -> None:
    with pytest.raises(ValueError, match="PORT"):
        parse_address(value)
