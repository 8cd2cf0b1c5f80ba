"""Faster (INT8), core/detect/int8.py: a real quantisation on real moments, an A/B here, a kept verdict."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.detect import DetectorError
from core.detect.int8 import MIN_IOU, MIN_MOMENTS, box_agreement, load_trial, source_name, try_int8, verdict
from core.protocol import Detection

pytestmark = pytest.mark.export


def d(cls: int, box: tuple[float, float, float, float]) -> Detection:
    return Detection(label=str(cls), class_id=cls, confidence=0.9, box=box)


def test_box_agreement_counts_every_box_of_both_answers() -> None:
    same = [[d(0, (0, 0, 10, 10))], [d(1, (5, 5, 25, 25))]]
    assert box_agreement(same, same) == 1.0
    shifted = [[d(0, (1, 0, 11, 10))], [d(1, (5, 5, 25, 25))]]
    assert box_agreement(same, shifted) == pytest.approx((9 / 11 + 1) / 2)  # median of 9/11, 1, 9/11, 1
    other_class = [[d(1, (0, 0, 10, 10))], [d(1, (5, 5, 25, 25))]]
    assert box_agreement(same, other_class) == 0.5  # a class mismatch is no match: median of 0, 1, 0, 1
    missing = [[], []]
    assert box_agreement(same, missing) == 0.0  # a box with no match counts 0
    assert box_agreement([[]], [[]]) is None


def test_verdict_needs_both_speed_and_agreement() -> None:
    assert verdict(1.8, 0.97, 20) == (
        True,
        "using INT8: 1.80× the speed of fp32 on this PC, boxes agree at a median IoU of 0.97, on 20 of your moments",
    )
    use, said = verdict(0.93, 0.99, 20)
    assert not use and said.startswith("not using INT8, it is not faster here: 0.93×")
    use, said = verdict(1.8, 0.90, 20)
    assert not use and f"median IoU below {MIN_IOU}" in said
    use, said = verdict(1.8, None, 20)
    assert not use and "nothing in your moments" in said
    assert source_name("yolov8n-int8") == "yolov8n" and source_name("yolov8n") == "yolov8n"


def moments_from(sample_images: dict[str, bytes], n: int) -> list[bytes]:
    """Camera-like moments: crops of the photos, each a frame of its own."""
    out = []
    photos = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in sample_images.values()]
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        x, y = (i * 37) % (w // 5), (i * 23) % (h // 5)
        out.append(cv2.imencode(".jpg", img[y : y + h * 4 // 5, x : x + w * 4 // 5])[1].tobytes())
    return out


def test_too_few_moments_is_a_sentence(fall_model_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match=f"at least {MIN_MOMENTS} of your own moments.*has 3 so far"):
        try_int8(fall_model_onnx, tmp_path, [b"x"] * 3)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_trial_quantises_measures_and_keeps_its_verdict(
    fall_model_onnx: Path, sample_images: dict[str, bytes], tmp_path: Path
) -> None:
    moments = moments_from(sample_images, 10)
    trial = try_int8(fall_model_onnx, tmp_path, moments, name="fall", source_model="/x/fall.onnx", rounds=1, seconds=1)
    assert trial.source == "fall" and trial.int8 == "fall-int8" and trial.moments == 10
    assert trial.source_model == "/x/fall.onnx"
    assert trial.speedup > 0 and trial.median_iou is not None and 0 < trial.median_iou <= 1
    # The trained model's INT8 copy finds the same people (README: median IoU 0.98 on these photos).
    assert trial.median_iou >= 0.9
    assert (trial.use, trial.message) == verdict(trial.speedup, trial.median_iou, 10)
    assert (tmp_path / "fall-int8.onnx").is_file() == trial.use  # an unused copy is not left behind
    assert load_trial(tmp_path, "fall") == trial
    assert load_trial(tmp_path, "other") is None
