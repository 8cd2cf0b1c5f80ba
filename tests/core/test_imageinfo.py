"""Header probing: real encoder output, truncations and lies, without decoding a pixel."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from core.imageinfo import CorruptImage, ImageTooLarge, UnsupportedImage, check_pixels, probe


def _encode(ext: str, width: int, height: int, channels: int = 3) -> bytes:
    image = np.zeros((height, width, channels), np.uint8)
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(("ext", "fmt"), [(".jpg", "jpeg"), (".png", "png")])
def test_real_files(ext: str, fmt: str) -> None:
    info = probe(_encode(ext, 640, 360))
    assert (info.format, info.width, info.height, info.pixels) == (fmt, 640, 360, 640 * 360)


def test_progressive_jpeg() -> None:
    ok, buf = cv2.imencode(".jpg", np.zeros((90, 160, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and probe(buf.tobytes()).width == 160


def test_header_of_a_huge_image_is_refused_before_decoding() -> None:
    data = bytearray(_encode(".jpg", 64, 48))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    info = probe(bytes(data))
    assert (info.width, info.height) == (30000, 30000)
    with pytest.raises(ImageTooLarge, match=r"30000×30000 is 900\.0 megapixels, over the limit of 50\.0"):
        check_pixels(info, 50_000_000)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", UnsupportedImage, "empty file"),
        (b"hello world", UnsupportedImage, "unknown file signature"),
        (b"GIF89a" + b"\0" * 20, UnsupportedImage, "GIF is not supported"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", CorruptImage, "truncated"),
        (b"\x89PNG\r\n\x1a\n\0\0", CorruptImage, "PNG header is truncated"),
    ],
)
def test_bad_headers(data: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        probe(data)


def test_truncated_jpeg_keeps_its_header() -> None:
    data = _encode(".jpg", 320, 240)
    assert probe(data[:700]).width == 320  # the header is at the front; truncation is the decoder's to find
