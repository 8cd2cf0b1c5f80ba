"""Same answers as Ultralytics: its ``predict`` on the same model against our pipeline, frame by frame.

Each frame gets its own input shape, as ``predict`` gives it with a dynamic-shape model: the long side at
640, the short side padded to the next multiple of 32 (4:3 → 480×640, 9:16 → 640×384). Every camera shape
a user may have is here, with grey, PNG and EXIF-rotated JPEGs, through both decoders (OpenCV, the
development one; simplejpeg, the desktop bundle's). The bar: the same boxes at IoU ≥ 0.99, confidences
within 0.005.

Orientation: ``predict`` reads a JPEG with OpenCV, which turns it upright by its EXIF orientation, as a
photo viewer shows it; we do the same, and boxes are in the upright picture's pixels.

Exact pixels need the same decode, so these run with ``reduced_decode=False``; the scaled JPEG decode (the
default, for speed) is held to a looser bound in its own test.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.detect import load_detector
from core.detect.decode import available
from core.protocol import Detection
from insane.devkit.models import test_cache

pytestmark = pytest.mark.export

DECODERS = [d for d in ("opencv", "simplejpeg") if d in available()]


@pytest.fixture(scope="module")
def yolo(fall_model_onnx: Path):
    pytest.importorskip("ultralytics", reason="needs the export extra (Ultralytics, torch)")
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(test_cache() / "ultralytics-config"))
    from ultralytics import YOLO

    return YOLO(str(fall_model_onnx), task="detect")


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    app1 = b"Exif\x00\x00" + tiff + b"\x00\x00\x00\x00"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


# name → (expected input shape (h, w), expected upright size (w, h))
SHAPES = {
    "4x3.jpg": ((480, 640), (1024, 768)),
    "1x1.jpg": ((640, 640), (800, 800)),
    "3x4.jpg": ((640, 480), (768, 1024)),
    "9x16.jpg": ((640, 384), (1080, 1920)),
    "21x9.jpg": ((288, 640), (2560, 1080)),
    "320x240.jpg": ((480, 640), (320, 240)),
    "3840x2160.jpg": ((384, 640), (3840, 2160)),
    "grey.jpg": ((480, 640), (1024, 768)),
    "4x3.png": ((480, 640), (1024, 768)),
    "exif3.jpg": ((640, 480), (810, 1080)),
    "exif6.jpg": ((640, 480), (810, 1080)),
    "exif8.jpg": ((640, 480), (810, 1080)),
}


@pytest.fixture(scope="module")
def frames(sample_images: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Camera frames of every common shape, cut from the photos (people in each), written as files."""
    composite = cv2.imdecode(np.frombuffer(sample_images["frame1080.jpg"], np.uint8), cv2.IMREAD_COLOR)
    bus = cv2.imdecode(np.frombuffer(sample_images["bus.jpg"], np.uint8), cv2.IMREAD_COLOR)  # 810×1080
    zidane = cv2.imdecode(np.frombuffer(sample_images["zidane.jpg"], np.uint8), cv2.IMREAD_COLOR)  # 1280×720

    def fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR)

    four_three = fit(composite[:, 480:1920], 1024, 768)
    files = {
        "4x3.jpg": _jpeg(four_three),
        "1x1.jpg": _jpeg(fit(composite[:, 840:1920], 800, 800)),
        "3x4.jpg": _jpeg(fit(bus, 768, 1024)),
        "9x16.jpg": _jpeg(fit(bus[:, 101:709], 1080, 1920)),
        "21x9.jpg": _jpeg(fit(zidane[90:630], 2560, 1080)),
        "320x240.jpg": _jpeg(fit(bus[400:1008], 320, 240)),
        "3840x2160.jpg": _jpeg(fit(composite, 3840, 2160)),
        "grey.jpg": _jpeg(cv2.cvtColor(four_three, cv2.COLOR_BGR2GRAY)),
        "4x3.png": cv2.imencode(".png", four_three)[1].tobytes(),
        # Stored turned, with the EXIF orientation that turns it upright (3: 180°, 6: 90° clockwise, 8: 90° ccw).
        "exif3.jpg": _with_orientation(_jpeg(cv2.rotate(bus, cv2.ROTATE_180)), 3),
        "exif6.jpg": _with_orientation(_jpeg(cv2.rotate(bus, cv2.ROTATE_90_COUNTERCLOCKWISE)), 6),
        "exif8.jpg": _with_orientation(_jpeg(cv2.rotate(bus, cv2.ROTATE_90_CLOCKWISE)), 8),
    }
    folder = tmp_path_factory.mktemp("frames")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def _predict(yolo, source, **kw) -> list[tuple[int, float, list[float]]]:
    r = yolo.predict(source, verbose=False, device="cpu", **kw)[0]
    return [(int(b.cls), float(b.conf), b.xyxy[0].tolist()) for b in r.boxes]


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _assert_same(ours: list[Detection], theirs: list[tuple[int, float, list[float]]], iou=0.99, conf=0.005) -> None:
    assert len(ours) == len(theirs), (ours, theirs)
    for cls, score, box in theirs:
        match = max((d for d in ours if d.class_id == cls), key=lambda d: _iou(d.box, box), default=None)
        assert match is not None, (cls, box, ours)
        assert _iou(match.box, box) >= iou and abs(match.confidence - score) <= conf, (match, score, box)


@pytest.fixture(scope="module")
def predicted(yolo, frames: dict[str, Path]) -> dict[str, list[tuple[int, float, list[float]]]]:
    """Ultralytics' answers, once per frame: predict on the file, as a user runs it (imgsz 640, rect default)."""
    return {name: _predict(yolo, str(path), imgsz=640) for name, path in frames.items()}


@pytest.mark.parametrize("decoder", DECODERS)
def test_every_camera_shape_matches_predict(fall_model_onnx, frames, predicted, decoder) -> None:
    cfg = {"type": "onnx", "path": str(fall_model_onnx), "reduced_decode": False, "decoder": decoder}
    with load_detector(cfg) as det:
        assert det.input_size == (640, 640)  # the box each frame's own shape fits in
        prepared = {name: det.prepare(path.read_bytes()) for name, path in frames.items()}
        for name, p in prepared.items():
            shape, size = SHAPES[name]
            assert p.tensor.shape == (3, *shape) and (p.width, p.height) == size, name
        found = dict(zip(prepared, det.detect(list(prepared.values())), strict=True))  # one call, mixed shapes
    for name, ours in found.items():
        _assert_same(ours, predicted[name])
    assert sum(map(len, predicted.values())) >= 20  # the frames hold people; empty answers would prove nothing
    assert all(predicted[n] for n in ("4x3.jpg", "3x4.jpg", "9x16.jpg", "21x9.jpg", "exif6.jpg", "3840x2160.jpg"))


def test_exif_orientation_is_the_upright_picture(frames, predicted) -> None:
    # The three turned copies of one photo answer as the photo itself does: boxes in the upright picture.
    upright = sorted(predicted["exif3.jpg"], key=lambda t: t[2][0])
    for name in ("exif6.jpg", "exif8.jpg"):
        turned = sorted(predicted[name], key=lambda t: t[2][0])
        assert len(turned) == len(upright)
        for a, b in zip(turned, upright, strict=True):
            assert _iou(a[2], b[2]) > 0.9


def test_rect_override_matches_predict_at_that_shape(yolo, fall_model_onnx, sample_images) -> None:
    # INSANE_DETECT_RECT=true: every frame boxed into one 384×640 input, as predict does with that imgsz.
    cfg = {"type": "onnx", "path": str(fall_model_onnx), "reduced_decode": False, "rect": True}
    with load_detector(cfg) as det:
        assert det.input_size == (384, 640)
        prepared = [det.prepare(b) for b in sample_images.values()]
        assert {p.tensor.shape for p in prepared} == {(3, 384, 640)}
        ours = det.detect(prepared)
    for got, data in zip(ours, sample_images.values(), strict=True):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        _assert_same(got, _predict(yolo, img, imgsz=(384, 640), rect=False))


def test_shipped_fixed_shape_export_keeps_its_shape(yolo, shipped_fall_onnx, sample_images) -> None:
    with load_detector({"type": "onnx", "path": str(shipped_fall_onnx), "reduced_decode": False}) as det:
        prepared = [det.prepare(b) for b in sample_images.values()]
        assert {p.tensor.shape for p in prepared} == {(3, 640, 640)}
        ours = det.detect(prepared)
    for got, data in zip(ours, sample_images.values(), strict=True):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        _assert_same(got, _predict(yolo, img, imgsz=640, rect=False), conf=0.01)  # fp16 weights


def test_ultralytics_backend_agrees_with_onnx(fall_model_pt, fall_model_onnx, frames) -> None:
    pytest.importorskip("ultralytics", reason="needs the export extra (Ultralytics, torch)")
    names = ("4x3.jpg", "9x16.jpg", "21x9.jpg", "exif6.jpg")
    with (
        load_detector({"type": "ultralytics", "path": str(fall_model_pt)}) as pt,
        load_detector({"type": "onnx", "path": str(fall_model_onnx)}) as onnx,
    ):
        assert pt.labels == onnx.labels and pt.input_size == onnx.input_size == (640, 640)
        a = pt.detect([pt.prepare(frames[n].read_bytes()) for n in names])
        b = onnx.detect([onnx.prepare(frames[n].read_bytes()) for n in names])
    for x, y in zip(a, b, strict=True):
        _assert_same(y, [(d.class_id, d.confidence, list(d.box)) for d in x])
    assert any(a)


def test_scaled_decode_stays_close(yolo, fall_model_onnx, sample_images) -> None:
    with load_detector({"type": "onnx", "path": str(fall_model_onnx)}) as det:
        prepared = [det.prepare(sample_images[k]) for k in ("zidane.jpg", "frame1080.jpg")]
        assert [p.decode_scale for p in prepared] == [2, 2]
        ours = det.detect(prepared)
    for got, key in zip(ours, ("zidane.jpg", "frame1080.jpg"), strict=True):
        img = cv2.imdecode(np.frombuffer(sample_images[key], np.uint8), cv2.IMREAD_COLOR)
        confident = [t for t in _predict(yolo, img, imgsz=640) if t[1] >= 0.5]
        assert confident
        _assert_same(
            [d for d in got if d.confidence >= 0.45 and any(_iou(d.box, t[2]) > 0.5 for t in confident)],
            confident,
            iou=0.95,
            conf=0.05,
        )
