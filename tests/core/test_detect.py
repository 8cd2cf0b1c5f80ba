"""The onnx backend end to end on real ONNX models: letterbox, decode, bad input, batching, providers."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pydantic
import pytest

from core.detect import DetectorError, load_detector, parse_detector_config, providers
from core.detect.base import ModelNotFound
from core.detect.postprocess import nms
from core.detect.preprocess import Letterbox, choose_letterbox, rect_shape, reduce_factor
from core.imageinfo import CorruptImage, ImageInfo, ImageTooLarge, UnsupportedImage


def _jpeg(img: np.ndarray, **params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [k for kv in params.items() for k in (getattr(cv2, kv[0]), kv[1])])
    assert ok
    return buf.tobytes()


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    app1 = b"Exif\x00\x00" + tiff + b"\x00\x00\x00\x00"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_rect_shape_is_stride_aligned() -> None:
    assert rect_shape(640, 16 / 9) == (384, 640)
    assert rect_shape(1280, 16 / 9) == (736, 1280)
    assert rect_shape(640, 4 / 3) == (480, 640)


def test_letterbox_matches_ultralytics_rounding() -> None:
    lb = Letterbox((384, 640))
    assert lb.params(1080, 1920) == ((640, 360), 12, 12, 0, 0)
    assert lb.params(1080, 810) == ((288, 384), 0, 0, 176, 176)
    out = lb.apply(np.full((1080, 810, 3), 7, np.uint8))
    assert out.shape == (384, 640, 3) and out[0, 0, 0] == 114 and out[200, 320, 0] == 7


def test_auto_letterbox_is_long_side_to_imgsz_short_side_to_the_stride() -> None:
    lb = Letterbox((640, 640), auto=True)
    cases = {
        (1080, 1920): (384, 640),  # 16:9
        (480, 640): (480, 640),  # 4:3
        (512, 512): (640, 640),  # 1:1, scaled up as Ultralytics does
        (640, 480): (640, 480),  # 3:4
        (1920, 1080): (640, 384),  # 9:16
        (1080, 2560): (288, 640),  # 21:9
        (240, 320): (480, 640),
        (2160, 3840): (384, 640),
        (1, 3000): (32, 640),  # a sliver keeps one pixel row
    }
    for (h, w), shape in cases.items():
        assert lb.input_shape(h, w) == shape, (h, w)
    assert lb.params(1080, 1920) == ((640, 360), 12, 12, 0, 0)
    assert lb.params(1080, 2560) == ((640, 270), 9, 9, 0, 0)
    assert Letterbox((640, 640)).input_shape(1080, 1920) == (640, 640)  # fixed: every frame one shape


def test_choose_letterbox_follows_model_and_overrides() -> None:
    common = {"rect_aspect": 16 / 9, "stride": 32, "name": "m.onnx"}
    dynamic = choose_letterbox(fixed=None, own=(640, 640), imgsz=None, rect=None, **common)
    assert dynamic.auto and dynamic.shape == (640, 640)
    own_rect = choose_letterbox(fixed=None, own=(384, 640), imgsz=None, rect=None, **common)
    assert own_rect.auto and own_rect.shape == (640, 640)  # a dynamic export's size is only its long side
    assert choose_letterbox(fixed=None, own=None, imgsz=1280, rect=None, **common).shape == (1280, 1280)
    rect = choose_letterbox(fixed=None, own=(640, 640), imgsz=None, rect=True, **common)
    assert not rect.auto and rect.shape == (384, 640)
    square = choose_letterbox(fixed=None, own=(640, 640), imgsz=None, rect=False, **common)
    assert not square.auto and square.shape == (640, 640)
    pair = choose_letterbox(fixed=None, own=(640, 640), imgsz=(320, 480), rect=None, **common)
    assert not pair.auto and pair.shape == (320, 480)
    fixed = choose_letterbox(fixed=(640, 640), own=(640, 640), imgsz=None, rect=True, **common)
    assert not fixed.auto and fixed.shape == (640, 640)
    with pytest.raises(DetectorError, match="not a multiple of the stride 32"):
        choose_letterbox(fixed=None, own=None, imgsz=650, rect=None, **common)
    with pytest.raises(DetectorError, match="fixed input of 640x640"):
        choose_letterbox(fixed=(640, 640), own=None, imgsz=320, rect=None, **common)


def test_reduce_factor_keeps_at_least_the_input_size() -> None:
    assert reduce_factor(ImageInfo("jpeg", 1920, 1080), (384, 640)) == 2  # 960×540 ≥ 640×360
    assert reduce_factor(ImageInfo("jpeg", 3840, 2160), (384, 640)) == 4
    assert reduce_factor(ImageInfo("jpeg", 800, 600), (640, 640)) == 1
    assert reduce_factor(ImageInfo("png", 3840, 2160), (384, 640)) == 1  # libpng has no scaled decode
    auto = Letterbox((640, 640), auto=True)
    assert reduce_factor(ImageInfo("jpeg", 1920, 1080), auto) == 2
    assert reduce_factor(ImageInfo("jpeg", 2560, 1440), auto) == 4  # 640×360: no resize at all
    assert reduce_factor(ImageInfo("jpeg", 1024, 768), auto) == 1  # 512×384 < 640×480


def test_nms_drops_overlaps_and_keeps_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.4], np.float32)
    assert nms(boxes, scores, 0.7).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 2]


def test_config_is_a_union_on_type(tmp_path: Path) -> None:
    cfg = parse_detector_config({"type": "onnx", "path": "m.onnx", "conf": 0.4})
    assert type(cfg).__name__ == "OnnxConfig" and cfg.conf == 0.4
    assert type(parse_detector_config({"type": "ultralytics", "path": "m.pt"})).__name__ == "UltralyticsConfig"
    with pytest.raises(pydantic.ValidationError, match="tag"):
        parse_detector_config({"type": "tflite", "path": "m"})
    with pytest.raises(ModelNotFound, match="not found"):
        load_detector({"type": "onnx", "path": str(tmp_path / "missing.onnx")})


@pytest.fixture(scope="module")
def det(fall_model_onnx: Path):
    with load_detector({"type": "onnx", "path": str(fall_model_onnx), "threads": 2}) as d:
        yield d


def test_metadata_and_batch(det, sample_images: dict[str, bytes]) -> None:
    assert det.labels == ["Normal", "Fall"] and det.input_size == (640, 640) and det.max_batch is None
    prepared = [det.prepare(b) for b in sample_images.values()]
    batched = det.detect(prepared)
    singles = [det.detect([p])[0] for p in prepared]
    assert [len(r) for r in batched] == [len(r) for r in singles] and all(batched)
    for a, b in zip(batched, singles, strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.class_id == y.class_id and abs(x.confidence - y.confidence) < 1e-4
    bus = batched[0]
    assert all(0 <= d.box[0] < d.box[2] <= 810 and 0 <= d.box[1] < d.box[3] <= 1080 for d in bus)
    assert det.detect([]) == []


def test_exif_rotation_maps_boxes_to_the_rotated_image(det, sample_images: dict[str, bytes]) -> None:
    img = cv2.imdecode(np.frombuffer(sample_images["bus.jpg"], np.uint8), cv2.IMREAD_COLOR)
    upright = det.detect([det.prepare(_jpeg(img))])[0]
    # Stored lying on its side, with orientation 6 ("rotate 90° clockwise to view").
    stored = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    p = det.prepare(_with_orientation(_jpeg(stored), 6))
    assert (p.width, p.height) == (810, 1080)
    rotated = det.detect([p])[0]
    assert len(rotated) == len(upright)
    for a, b in zip(sorted(rotated, key=lambda d: d.box[0]), sorted(upright, key=lambda d: d.box[0]), strict=True):
        assert np.allclose(a.box, b.box, atol=12)


def test_class_filters(fall_model_onnx: Path, sample_images: dict[str, bytes]) -> None:
    frame = sample_images["frame1080.jpg"]
    base = {"type": "onnx", "path": str(fall_model_onnx), "conf": 0.1, "reduced_decode": False, "rect": True}
    with load_detector(base) as d:
        everything = d.detect([d.prepare(frame)])[0]
    assert {x.label for x in everything} == {"Normal", "Fall"}
    with load_detector({**base, "classes": ["fall"]}) as d:
        falls = d.detect([d.prepare(frame)])[0]
    assert falls and {x.label for x in falls} == {"Fall"}
    with load_detector({**base, "class_conf": {"Normal": 0.6}}) as d:
        strict = d.detect([d.prepare(frame)])[0]
    assert all(x.confidence > 0.6 for x in strict if x.label == "Normal")
    assert any(x.label == "Fall" for x in strict)
    assert len(strict) < len(everything)
    with pytest.raises(DetectorError, match="unknown class name"):
        load_detector({**base, "classes": ["zebra"]})


def test_fixed_shape_model_splits_batches(shipped_fall_onnx: Path, det, sample_images: dict[str, bytes]) -> None:
    with load_detector({"type": "onnx", "path": str(shipped_fall_onnx)}) as fixed:
        assert fixed.max_batch == 1 and fixed.input_size == (640, 640)
        out = fixed.detect([fixed.prepare(b) for b in sample_images.values()])
    assert len(out) == 3 and [len(r) for r in out] == [
        len(r) for r in det.detect([det.prepare(b) for b in sample_images.values()])
    ]
    with load_detector({"type": "onnx", "path": str(shipped_fall_onnx), "rect": True}) as fixed:
        assert fixed.input_size == (640, 640)  # rect is a preference a fixed model cannot follow
    with pytest.raises(DetectorError, match="fixed input of 640x640"):
        load_detector({"type": "onnx", "path": str(shipped_fall_onnx), "imgsz": [384, 640]})


def test_rect_input_from_config(fall_model_onnx: Path, sample_images: dict[str, bytes]) -> None:
    with load_detector({"type": "onnx", "path": str(fall_model_onnx), "rect": True, "sessions": 2}) as d:
        assert d.input_size == (384, 640)
        prepared = [d.prepare(b) for b in sample_images.values()]
        assert prepared[2].tensor.shape == (3, 384, 640)
        result = d.detect(prepared)
    assert all(result)


def test_provider_switch_takes_effect_next_batch(det, sample_images: dict[str, bytes], monkeypatch) -> None:
    monkeypatch.setitem(providers.PROVIDERS, "TestCPU", ("CPUExecutionProvider", {}))
    assert "TestCPU" in det.available_providers()
    p = det.prepare(sample_images["zidane.jpg"])
    before = det.detect([p])
    det.set_provider("TestCPU")
    assert det.provider == "CPUExecutionProvider"  # not before the next batch
    after = det.detect([p])
    assert det.provider == "TestCPU" and after == before
    with pytest.raises(DetectorError, match="not available"):
        det.set_provider("NoSuchExecutionProvider")
    det.set_provider("CPUExecutionProvider")
    det.detect([p])
    assert det.provider == "CPUExecutionProvider"


def _cmyk_jpeg() -> bytes:
    # A real Adobe CMYK JPEG is hard to make with OpenCV; PIL may be absent. Build one with libjpeg via cv2 is not
    # possible either, so take the 4-channel route of the PNG encoder instead when PIL is missing.
    pil = pytest.importorskip("PIL.Image")
    import io

    buf = io.BytesIO()
    pil.new("CMYK", (64, 48), (0, 255, 255, 0)).save(buf, "JPEG")
    return buf.getvalue()


def test_bad_inputs_fail_precisely(det) -> None:
    img = np.full((120, 160, 3), 90, np.uint8)
    good = _jpeg(img)
    with pytest.raises(UnsupportedImage, match="empty file"):
        det.prepare(b"")
    with pytest.raises(UnsupportedImage, match="not a JPEG or PNG"):
        det.prepare(b"hello, I am a text file" * 10)
    with pytest.raises(CorruptImage):
        det.prepare(good[:300])
    with pytest.raises(CorruptImage):
        det.prepare(good[:2] + b"\xff\xc0\x00\x11\x08" + b"\x00" * 40)
    # A header that claims 30,000×30,000 is refused before any decoder allocates.
    huge = bytearray(good)
    sof = huge.index(b"\xff\xc0")
    huge[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    with pytest.raises(ImageTooLarge, match=r"900\.0 megapixels"):
        det.prepare(bytes(huge))


def test_odd_but_valid_images_decode(det) -> None:
    gray = cv2.imencode(".jpg", np.full((100, 200), 128, np.uint8))[1].tobytes()
    rgba = np.zeros((100, 200, 4), np.uint8)
    rgba[..., 3] = 255
    png = cv2.imencode(".png", rgba)[1].tobytes()
    gray16 = cv2.imencode(".png", np.full((50, 60), 40000, np.uint16))[1].tobytes()
    for data, size, shape in (
        (gray, (200, 100), (320, 640)),
        (png, (200, 100), (320, 640)),
        (gray16, (60, 50), (544, 640)),
    ):
        p = det.prepare(data)
        assert (p.width, p.height) == size and p.tensor.shape == (3, *shape) and p.tensor.dtype == np.uint8
    assert det.detect([det.prepare(gray)]) == [[]]


def test_cmyk_jpeg_decodes(det) -> None:
    p = det.prepare(_cmyk_jpeg())
    assert (p.width, p.height) == (64, 48)
    # C=0 M=100% Y=100% K=0 is red: red channel (tensor index 0, RGB) high, blue low.
    assert p.tensor.shape == (3, 480, 640)
    assert p.tensor[2, 240, 320] < 80 < 180 < p.tensor[0, 240, 320]


def test_gpu_preference_falls_back_to_cpu() -> None:
    assert providers.choose(None, use_gpu=True) in providers.available()
    assert providers.choose(["NoSuch", "CPUExecutionProvider"], use_gpu=False) == "CPUExecutionProvider"


def test_a_non_finite_box_is_no_detection() -> None:
    """A broken model's NaN or infinite box is dropped: the result contract refuses non-finite numbers."""
    from core.detect.base import Prepared
    from core.detect.postprocess import Thresholds, postprocess

    anchors = [  # cx, cy, w, h, score: 0 and 1 overlap, 2 has a NaN centre, 4 an infinite one
        (50, 50, 20, 20, 0.9),
        (52, 50, 20, 20, 0.8),
        (np.nan, 10, 10, 10, 0.7),
        (10, 10, 10, 10, 0.95),
        (np.inf, 10, 10, 10, 0.99),
    ]
    output = np.array(anchors, np.float32).T[None]
    prepared = Prepared(np.zeros((3, 4, 4), np.float32), 100, 100, (1.0, 1.0), (0.0, 0.0))
    [found] = postprocess(output, [prepared], ["person"], Thresholds(["person"], 0.25, None, {}), iou=0.45)
    assert [d.confidence for d in found] == pytest.approx([0.95, 0.9])
    assert all(np.isfinite(d.box).all() for d in found)
