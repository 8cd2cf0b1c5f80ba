"""The decoders of core/detect/decode.py give the same bytes.

OpenCV decodes and resizes where it is installed; the desktop bundle has no OpenCV, so simplejpeg decodes
JPEGs (the same libjpeg-turbo, scaled decode included), Pillow the rest, and numpy resizes; Pillow alone is
the fallback. Ultralytics feeds its models OpenCV's pixels, so the parity tests (test_detect_parity.py) hold
for the bundle only if these are equal to the last bit: every comparison here is exact.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from core.detect import decode
from core.detect.decode import get_decoder
from core.detect.preprocess import Letterbox, prepare_image, resize_linear
from core.detect.resize import resize_planar
from core.imageinfo import CorruptImage, jpeg_orientation, probe

cv2 = pytest.importorskip("cv2", reason="OpenCV is the reference")
Image = pytest.importorskip("PIL.Image", reason="Pillow is the bundle's decoder")


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    app1 = b"Exif\x00\x00" + tiff + b"\x00\x00\x00\x00"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def _sizes() -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(source h, w) → (target h, w): the letterbox's usual steps, exact halving and doubling, edges, random."""
    cases = [
        ((1080, 810), (640, 480)),
        ((540, 960), (360, 640)),
        ((720, 1280), (360, 640)),
        ((405, 540), (480, 640)),
        ((180, 320), (360, 640)),
        ((333, 517), (640, 640)),
        ((1, 1), (640, 640)),
        ((2, 3), (7, 5)),
        ((9, 17), (3, 4)),
        ((640, 640), (639, 641)),
    ]
    rng = np.random.default_rng(7)
    cases += [
        (tuple(int(v) for v in rng.integers(1, 300, 2)), tuple(int(v) for v in rng.integers(1, 700, 2)))
        for _ in range(60)
    ]
    return cases


def test_resize_is_opencv_bilinear_to_the_bit() -> None:
    rng = np.random.default_rng(1)
    for (h, w), (nh, nw) in _sizes():
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        got = resize_linear(img, nw, nh)
        assert got.dtype == np.uint8 and np.array_equal(got, expected), ((h, w), (nh, nw))


def test_planar_resize_is_opencv_bilinear_to_the_bit() -> None:
    rng = np.random.default_rng(2)
    for (h, w), (nh, nw) in _sizes():
        for cn in (3, 4):
            img = rng.integers(0, 256, (h, w, cn), dtype=np.uint8)
            expected = cv2.resize(img[:, :, :3], (nw, nh), interpolation=cv2.INTER_LINEAR)
            out = np.zeros((3, nh, nw), np.uint8)
            resize_planar(img, nw, nh, out)
            assert np.array_equal(out, expected[:, :, ::-1].transpose(2, 0, 1)), ((h, w), (nh, nw), cn)


def test_resize_of_real_photos_is_exact(sample_images: dict[str, bytes]) -> None:
    for data in sample_images.values():
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        for shape in ((640, 640), (384, 640)):
            (nw, nh), *_ = Letterbox(shape).params(*img.shape[:2])
            expected = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
            assert np.array_equal(resize_linear(img, nw, nh), expected)


def _odd_images(sample_images: dict[str, bytes]) -> dict[str, bytes]:
    bus = cv2.imdecode(np.frombuffer(sample_images["bus.jpg"], np.uint8), cv2.IMREAD_COLOR)
    rgba = np.dstack([bus[:200, :300], np.full((200, 300), 77, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(bus[:120, :160, ::-1].copy()).convert("P", palette=Image.Palette.ADAPTIVE).save(buf, "PNG")
    cmyk = io.BytesIO()  # Pillow writes Adobe's inverted CMYK, the kind cameras' software exports
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 64, 4), dtype=np.uint8), "CMYK").save(cmyk, "JPEG")
    gradient = (np.arange(60 * 50, dtype=np.uint32).reshape(50, 60) * 21).astype(np.uint16)
    return {
        **sample_images,
        "grey.jpg": _jpeg(cv2.cvtColor(bus, cv2.COLOR_BGR2GRAY)),
        "rotated.jpg": _with_orientation(_jpeg(cv2.rotate(bus, cv2.ROTATE_90_COUNTERCLOCKWISE)), 6),
        "mirrored.jpg": _with_orientation(_jpeg(bus), 2),
        "rgba.png": _png(rgba),
        "palette.png": buf.getvalue(),
        "grey16.png": _png(gradient),
        "colour.png": _png(bus[:300, :200]),
        "cmyk.jpg": cmyk.getvalue(),
    }


NOT_OPENCV = [d for d in ("simplejpeg", "pillow") if d in decode.available()]


@pytest.mark.parametrize("name", NOT_OPENCV)
def test_decoders_decode_what_opencv_decodes(sample_images: dict[str, bytes], name: str) -> None:
    dec = get_decoder(name)
    for key, data in _odd_images(sample_images).items():
        info = probe(data)
        for f in (1, 2, 4, 8) if info.format == "jpeg" else (1,):
            expected = decode._decode_cv2(data, info, f)
            got = dec.decode(data, info, f)[:, :, :3]
            assert got.shape == expected.shape and np.array_equal(got, expected), (key, f)


@pytest.mark.parametrize("name", NOT_OPENCV)
def test_every_exif_orientation_turns_as_opencv_turns_it(sample_images: dict[str, bytes], name: str) -> None:
    bus = cv2.imdecode(np.frombuffer(sample_images["bus.jpg"], np.uint8), cv2.IMREAD_COLOR)[:300, :200]
    dec = get_decoder(name)
    for orientation in range(1, 9):
        data = _with_orientation(_jpeg(bus), orientation)
        assert jpeg_orientation(data) == orientation
        info = probe(data)
        for f in (1, 2):
            expected = decode._decode_cv2(data, info, f)
            assert np.array_equal(dec.decode(data, info, f)[:, :, :3], expected), (orientation, f)


def test_orientation_of_odd_exif_is_upright() -> None:
    plain = _jpeg(np.full((40, 60, 3), 50, np.uint8))
    assert jpeg_orientation(plain) == 1
    assert jpeg_orientation(_with_orientation(plain, 9)) == 1  # out of range: shown as stored, as OpenCV does
    broken = _with_orientation(plain, 6)
    cut = broken.index(b"Exif") + 8
    assert jpeg_orientation(broken[:cut] + b"\x00" * 4 + broken[cut + 4 :]) == 1  # not a TIFF header
    assert jpeg_orientation(broken[:40]) in (1, 6)  # truncated: never an error
    assert jpeg_orientation(b"") == 1


@pytest.mark.parametrize("letterbox", [Letterbox((640, 640), auto=True), Letterbox((384, 640))], ids=["auto", "rect"])
@pytest.mark.parametrize("reduced", [True, False], ids=["scaled-decode", "full-decode"])
@pytest.mark.parametrize("name", NOT_OPENCV)
def test_every_decoder_makes_the_same_tensor(sample_images, letterbox, reduced, name) -> None:
    images = _odd_images(sample_images)
    for key, data in images.items():
        a = prepare_image(data, letterbox, 50_000_000, reduced, get_decoder("opencv"))
        b = prepare_image(data, letterbox, 50_000_000, reduced, get_decoder(name))
        assert a.tensor.dtype == np.uint8 and np.array_equal(a.tensor, b.tensor), key
        assert (a.width, a.height, a.gain, a.pad, a.decode_scale) == (b.width, b.height, b.gain, b.pad, b.decode_scale)


@pytest.mark.parametrize("name", NOT_OPENCV)
def test_decoders_refuse_broken_images(name) -> None:
    dec = get_decoder(name)
    good = _jpeg(np.full((120, 160, 3), 90, np.uint8))
    with pytest.raises(CorruptImage):
        prepare_image(good[:300], Letterbox((640, 640)), 50_000_000, decoder=dec)
    png = _png(np.full((40, 30, 3), 9, np.uint8))
    with pytest.raises(CorruptImage):
        prepare_image(png[:60], Letterbox((640, 640)), 50_000_000, decoder=dec)
