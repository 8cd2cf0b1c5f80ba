"""Same answers as Ultralytics: its ``predict`` on the real trained ``.pt`` against our pipeline on its ONNX export.

Exact pixels need the same decode, so these run with ``reduced_decode=False``; the scaled JPEG decode (the
default, for speed) is held to a looser bound in its own test.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.detect import load_detector
from core.protocol import Detection
from insane.devkit.models import test_cache

pytestmark = pytest.mark.export


@pytest.fixture(scope="module")
def yolo(fall_model_pt: Path):
    pytest.importorskip("ultralytics", reason="needs the export extra (Ultralytics, torch)")
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(test_cache() / "ultralytics-config"))
    from ultralytics import YOLO

    return YOLO(str(fall_model_pt))


def _predict(yolo, data: bytes, imgsz) -> list[tuple[int, float, list[float]]]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    r = yolo.predict(img, imgsz=imgsz, rect=False, verbose=False, device="cpu")[0]
    return [(int(b.cls), float(b.conf), b.xyxy[0].tolist()) for b in r.boxes]


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _assert_same(ours: list[Detection], theirs: list[tuple[int, float, list[float]]], iou=0.99, conf=0.01) -> None:
    assert len(ours) == len(theirs), (ours, theirs)
    for cls, score, box in theirs:
        match = max((d for d in ours if d.class_id == cls), key=lambda d: _iou(d.box, box), default=None)
        assert match is not None, (cls, box, ours)
        assert _iou(match.box, box) >= iou and abs(match.confidence - score) <= conf, (match, score, box)


@pytest.mark.parametrize("rect", [False, True], ids=["square640", "rect384x640"])
def test_batch_of_mixed_sizes_matches_predict(yolo, fall_model_onnx, fall_model_onnx_rect, sample_images, rect):
    model = fall_model_onnx_rect if rect else fall_model_onnx
    with load_detector({"type": "onnx", "path": str(model), "reduced_decode": False}) as det:
        assert det.input_size == ((384, 640) if rect else (640, 640))
        ours = det.detect([det.prepare(b) for b in sample_images.values()])
    total = 0
    for got, data in zip(ours, sample_images.values(), strict=True):
        theirs = _predict(yolo, data, det.input_size)
        _assert_same(got, theirs)
        total += len(theirs)
    assert total >= 5  # the photos hold people; an empty answer would prove nothing


def test_shipped_fixed_shape_export_agrees(yolo, shipped_fall_onnx, sample_images):
    with load_detector({"type": "onnx", "path": str(shipped_fall_onnx), "reduced_decode": False}) as det:
        ours = det.detect([det.prepare(b) for b in sample_images.values()])
    for got, data in zip(ours, sample_images.values(), strict=True):
        _assert_same(got, _predict(yolo, data, 640))


def test_ultralytics_backend_agrees_with_onnx(fall_model_pt, fall_model_onnx_rect, sample_images):
    pytest.importorskip("ultralytics", reason="needs the export extra (Ultralytics, torch)")
    cfg = {"path": str(fall_model_pt), "rect": True, "imgsz": 640}
    with (
        load_detector({"type": "ultralytics", **cfg}) as pt,
        load_detector({"type": "onnx", "path": str(fall_model_onnx_rect)}) as onnx,
    ):
        assert pt.labels == onnx.labels and pt.input_size == onnx.input_size == (384, 640)
        a = pt.detect([pt.prepare(b) for b in sample_images.values()])
        b = onnx.detect([onnx.prepare(b) for b in sample_images.values()])
    for x, y in zip(a, b, strict=True):
        _assert_same(y, [(d.class_id, d.confidence, list(d.box)) for d in x])


def test_scaled_decode_stays_close(yolo, fall_model_onnx_rect, sample_images):
    with load_detector({"type": "onnx", "path": str(fall_model_onnx_rect)}) as det:
        prepared = [det.prepare(sample_images[k]) for k in ("zidane.jpg", "frame1080.jpg")]
        assert [p.decode_scale for p in prepared] == [2, 2]
        ours = det.detect(prepared)
    for got, key in zip(ours, ("zidane.jpg", "frame1080.jpg"), strict=True):
        confident = [t for t in _predict(yolo, sample_images[key], (384, 640)) if t[1] >= 0.5]
        assert confident
        _assert_same(
            [d for d in got if d.confidence >= 0.45 and any(_iou(d.box, t[2]) > 0.5 for t in confident)],
            confident,
            iou=0.95,
            conf=0.05,
        )
