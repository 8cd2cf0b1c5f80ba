"""What an image file is and how big it claims to be, read from its first bytes without decoding it.

    info = probe(data)                  # ImageInfo(format="jpeg", width=1920, height=1080)
    check_pixels(info, max_pixels)      # raises ImageTooLarge before any decoder allocates a pixel

Used by the preloader (to stop a download early) and the detector (to refuse a decompression bomb).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class ImageError(Exception):
    """An image we cannot review. ``str()`` is a precise, user-facing reason."""


class UnsupportedImage(ImageError):
    """Not an image, or a format we do not read."""


class CorruptImage(ImageError):
    """An image whose header or data is broken or truncated."""


class ImageTooLarge(ImageError):
    """More pixels (or bytes) than the configured limit."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


# JPEG start-of-frame markers carry the dimensions (all SOFn except DHT 0xC4, JPG 0xC8, DAC 0xCC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff(data: bytes) -> str | None:
    """The format named by the magic bytes, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    return None


def probe(data: bytes) -> ImageInfo:
    """Format and dimensions from the header. Needs only the first few KB of a JPEG's bytes."""
    if not data:
        raise UnsupportedImage("empty file (0 bytes)")
    kind = sniff(data)
    if kind == "jpeg":
        width, height = _jpeg_size(data)
    elif kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise CorruptImage("PNG header is truncated")
        width, height = struct.unpack(">II", data[16:24])
    else:
        raise UnsupportedImage(
            f"not a JPEG or PNG image ({kind.upper()} is not supported)"
            if kind
            else "not a JPEG or PNG image (unknown file signature)"
        )
    if width == 0 or height == 0:
        raise CorruptImage(f"{kind.upper()} header declares an empty image ({width}×{height})")
    return ImageInfo(kind, width, height)


def check_pixels(info: ImageInfo, max_pixels: int) -> None:
    if info.pixels > max_pixels:
        raise ImageTooLarge(
            f"{info.width}×{info.height} is {info.pixels / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.1f}"
        )


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    size = len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            raise CorruptImage(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            raise CorruptImage(f"JPEG segment with invalid length {length}")
        if marker in _SOF:
            if pos + 9 > size:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            raise CorruptImage("JPEG has no frame header before its image data")
        pos += 2 + length
    raise CorruptImage("JPEG header is truncated (no frame header found)")


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation (1–8) of a JPEG, read from its APP1 segment; 1 when it has none or it is unreadable.

    A broken EXIF block never makes an image unreadable: OpenCV and Pillow ignore it too, and show the
    picture as stored.
    """
    pos, size = 2, len(data)
    while pos + 4 <= size and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xDA, 0xD9) or marker in _SOF:  # EXIF comes before the image data
            return 1
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            return 1
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return _tiff_orientation(data[pos + 10 : pos + 2 + length])
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return 1
        tag, kind = struct.unpack(order + "HH", tiff[entry : entry + 4])
        if tag == 0x0112:
            if kind != 3:  # SHORT
                return 1
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return value if 1 <= value <= 8 else 1
    return 1
