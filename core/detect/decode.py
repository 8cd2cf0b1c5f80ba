"""JPEG/PNG bytes to an upright BGR(X) uint8 image: three decoders, the same pixels.

    dec = get_decoder("auto")                      # opencv where installed, else simplejpeg, else pillow
    img = dec.decode(data, info, f=2)              # a JPEG decoded at half size in the DCT; EXIF applied
    dec.resize_into(img, 640, 360, out)            # bilinear into RGB planes (3, 360, 640), OpenCV's pixels

- ``opencv``: ``cv2.imdecode`` (``IMREAD_COLOR`` / ``IMREAD_REDUCED_COLOR_f``) and ``cv2.resize``. The
  relay host, the headless worker and the export tools have it.
- ``simplejpeg``: libjpeg-turbo through simplejpeg (a 1 MB wheel) for JPEGs, decoded straight to BGRX with
  the same DCT scaling OpenCV uses; Pillow for PNG and CMYK JPEGs; the numpy resize of
  :mod:`core.detect.resize`. The desktop bundle's decoder: no OpenCV (150 MB of a 250 MB bundle).
- ``pillow``: Pillow with ``draft()`` for the DCT scaling; the fallback where simplejpeg is missing.

All three honour EXIF orientation as OpenCV does (the picture upright, as a photo viewer shows it; boxes
are in that picture's pixels) and turn grey, palette, alpha, 16-bit and CMYK images into 8-bit BGR the way
OpenCV does; tests/core/test_detect_pixels.py holds them to identical arrays.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec

import numpy as np

from core.detect.base import DetectorError
from core.detect.resize import resize_planar
from core.imageinfo import CorruptImage, ImageInfo, jpeg_orientation

try:
    import cv2
except ImportError:  # the desktop bundle
    cv2 = None  # type: ignore[assignment]  # None: not installed (available() asks)
try:
    import simplejpeg
except ImportError:
    simplejpeg = None

DECODERS = ("opencv", "simplejpeg", "pillow")


@dataclass(frozen=True)
class Decoder:
    name: str
    decode: Callable[[bytes, ImageInfo, int], np.ndarray]  # (data, header info, reduction) -> HWC BGR or BGRX
    resize_into: Callable[[np.ndarray, int, int, np.ndarray], None]  # (img, new_w, new_h, out RGB planes)


def _corrupt(info: ImageInfo, data: bytes, exc: object = None) -> CorruptImage:
    detail = f": {exc}" if exc else ""
    return CorruptImage(f"{info.format.upper()} data is corrupt or truncated ({len(data)} bytes){detail}")


# ----- opencv ---------------------------------------------------------------------------------------


def _decode_cv2(data: bytes, info: ImageInfo, f: int) -> np.ndarray:
    flags = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }
    # IMREAD_COLOR turns grayscale, CMYK and alpha into 3-channel BGR and honours EXIF orientation.
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags[f])
    if img is None:
        raise _corrupt(info, data)
    return img


def _resize_cv2(img: np.ndarray, new_w: int, new_h: int, out: np.ndarray) -> None:
    h, w = img.shape[:2]
    if (w, h) != (new_w, new_h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out[:] = img[:, :, 2::-1].transpose(2, 0, 1)


# ----- pillow ---------------------------------------------------------------------------------------


def _decode_pillow(data: bytes, info: ImageInfo, f: int) -> np.ndarray:
    """What ``cv2.imdecode(..., IMREAD_COLOR or IMREAD_REDUCED_COLOR_f)`` returns, through Pillow."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data), formats=[info.format.upper()]) as im:
            if f > 1:
                # libjpeg's DCT scaling picks 1/f when asked for at least width/f × height/f.
                im.draft("RGB", (info.width // f, info.height // f))
                if im.size != (-(-info.width // f), -(-info.height // f)):
                    raise CorruptImage(f"JPEG scaled decode gave {im.size[0]}×{im.size[1]} at 1/{f}")
            im.load()
            upright = ImageOps.exif_transpose(im)
            if upright.mode in ("I;16", "I;16B", "I;16L", "I"):
                # A 16-bit grey PNG: OpenCV keeps the high byte.
                grey = (np.asarray(upright).astype(np.uint32) >> 8).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            if upright.mode == "CMYK":
                # OpenCV's CMYK→BGR on the values libjpeg returns (Pillow inverts Adobe's; undo that).
                cmyk = np.asarray(upright).astype(np.int32)
                if "adobe" in upright.info:
                    cmyk = 255 - cmyk
                k = cmyk[:, :, 3:]
                return (k - (((255 - cmyk[:, :, 2::-1]) * k) >> 8)).astype(np.uint8)
            rgb = np.asarray(upright.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _corrupt(info, data, exc) from exc
    return rgb[:, :, ::-1]  # BGR, as OpenCV returns it (a view)


# ----- simplejpeg -----------------------------------------------------------------------------------

# EXIF orientation → the numpy view that shows the picture upright (PIL's exif_transpose, OpenCV's too).
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: a.transpose(1, 0, 2)[::-1],
}


def _decode_simplejpeg(data: bytes, info: ImageInfo, f: int) -> np.ndarray:
    if info.format != "jpeg":
        return _decode_pillow(data, info, f)
    try:
        _, _, colour, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise _corrupt(info, data, exc) from exc
    if colour == "CMYK":  # libjpeg-turbo's converter has no CMYK → BGR; Pillow's path does it as OpenCV does
        return _decode_pillow(data, info, f)
    size = {} if f == 1 else {"min_height": -(-info.height // f), "min_width": -(-info.width // f), "min_factor": f}
    try:
        img = simplejpeg.decode_jpeg(data, "BGRX", **size)
    except ValueError as exc:
        raise _corrupt(info, data, exc) from exc
    if img.shape[:2] != (-(-info.height // f), -(-info.width // f)):
        raise CorruptImage(f"JPEG scaled decode gave {img.shape[1]}×{img.shape[0]} at 1/{f}")
    turn = _ORIENT.get(jpeg_orientation(data))
    return img if turn is None else turn(img)


def available() -> list[str]:
    """The decoders this install can use, fastest first."""
    return [
        name
        for name, ok in (
            ("opencv", cv2 is not None),
            ("simplejpeg", simplejpeg is not None and find_spec("PIL") is not None),
            ("pillow", find_spec("PIL") is not None),
        )
        if ok
    ]


def get_decoder(name: str = "auto") -> Decoder:
    """The named decoder (``auto``: the first of :func:`available`); DetectorError if it is not installed."""
    if name == "auto":
        if not available():
            raise DetectorError("no image decoder installed: install opencv-python-headless, or simplejpeg and pillow")
        name = available()[0]
    if name not in available():
        raise DetectorError(f"the {name} image decoder is not installed here (available: {', '.join(available())})")
    if name == "opencv":
        # Frames are decoded by a pool of our own threads beside inference; OpenCV's own pool on top of that
        # only adds hand-offs (measured: 4% more CPU per frame with it).
        cv2.setNumThreads(1)
        return Decoder(name, _decode_cv2, _resize_cv2)
    if name == "simplejpeg":
        return Decoder(name, _decode_simplejpeg, resize_planar)
    return Decoder(name, _decode_pillow, resize_planar)
