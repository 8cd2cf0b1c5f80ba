"""From JPEG/PNG bytes to a model input: header check, scaled decode, EXIF orientation, letterbox.

    plan = Letterbox((384, 640))
    p = prepare_image(data, plan, np.float32, max_pixels=50_000_000)   # Prepared, tensor (3, 384, 640)

The letterbox is Ultralytics' (``LetterBox(auto=False, center=True)``: same rounding, same padding value,
bilinear resize), so the same pixels reach the network. Large JPEGs are decoded by libjpeg at 1/2, 1/4 or
1/8 size when the reduced image is still at least as large as the letterboxed one: a 1080p frame for a
640-wide input decodes at 960×540, which is several times cheaper than a full decode and a resize.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.detect.base import Prepared
from core.imageinfo import CorruptImage, ImageInfo, UnsupportedImage, check_pixels, probe

PAD_VALUE = 114
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def rect_shape(imgsz: int, aspect: float, stride: int = 32) -> tuple[int, int]:
    """(h, w) of a stride-aligned input for frames of ``aspect`` (w/h) at ``imgsz``: 640, 16:9 → (384, 640)."""
    h = imgsz / aspect
    return (int(-(-h // stride) * stride), imgsz)


class Letterbox:
    """Ultralytics' letterbox to a fixed (h, w), computed once per source size."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape

    def params(self, h: int, w: int) -> tuple[tuple[int, int], int, int, int, int]:
        """((new_w, new_h), top, bottom, left, right) for an image of h×w."""
        th, tw = self.shape
        r = min(th / h, tw / w)
        new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
        dw, dh = (tw - new_w) / 2, (th - new_h) / 2
        top, bottom = round(dh - 0.1), round(dh + 0.1)
        left, right = round(dw - 0.1), round(dw + 0.1)
        return (new_w, new_h), top, bottom, left, right

    def apply(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        (new_w, new_h), top, bottom, left, right = self.params(h, w)
        if (w, h) != (new_w, new_h):
            img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)


def reduce_factor(info: ImageInfo, shape: tuple[int, int]) -> int:
    """The largest JPEG decode reduction that still leaves at least the letterboxed size, either orientation."""
    if info.format != "jpeg":
        return 1
    th, tw = shape
    best = 1
    for f in (2, 4, 8):
        ok = True
        for w, h in ((info.width, info.height), (info.height, info.width)):  # EXIF may rotate it
            r = min(th / h, tw / w)
            if -(-w // f) < round(w * r) or -(-h // f) < round(h * r):
                ok = False
        if ok:
            best = f
    return best


def decode(
    data: bytes, shape: tuple[int, int], max_pixels: int, reduced: bool = True
) -> tuple[np.ndarray, int, int, int]:
    """(BGR image, original width, original height, reduction) with EXIF orientation applied.

    Raises :class:`core.imageinfo.ImageError` subclasses: the header is checked before a pixel is decoded.
    """
    info = probe(data)
    check_pixels(info, max_pixels)
    f = reduce_factor(info, shape) if reduced else 1
    buf = np.frombuffer(data, np.uint8)
    # IMREAD_COLOR turns grayscale, CMYK and alpha into 3-channel BGR and honours EXIF orientation.
    img = cv2.imdecode(buf, _REDUCED[f] if f > 1 else cv2.IMREAD_COLOR)
    if img is None:
        raise CorruptImage(f"{info.format.upper()} data is corrupt or truncated ({len(data)} bytes)")
    if img.ndim != 3 or img.shape[2] != 3:
        raise UnsupportedImage(f"decoded to an unexpected shape {img.shape}")
    h, w = img.shape[:2]
    # Orientation may have swapped the sides: the decoded aspect tells which way round the original is.
    rw, rh = -(-info.width // f), -(-info.height // f)
    if (w, h) == (rw, rh):
        ow, oh = info.width, info.height
    elif (w, h) == (rh, rw):
        ow, oh = info.height, info.width
    else:
        raise CorruptImage(f"decoded size {w}×{h} does not match the header's {info.width}×{info.height}")
    return img, ow, oh, f


def prepare_image(
    data: bytes, letterbox: Letterbox, dtype: np.dtype, max_pixels: int, reduced: bool = True
) -> Prepared:
    img, ow, oh, f = decode(data, letterbox.shape, max_pixels, reduced)
    dh, dw = img.shape[:2]
    (new_w, new_h), top, _, left, _ = letterbox.params(dh, dw)
    boxed = letterbox.apply(img)
    # BGR→RGB, HWC→CHW and 0..255→0..1 in one pass into a fresh contiguous array (Ultralytics divides by 255).
    tensor = np.empty((3, *letterbox.shape), dtype)
    np.divide(boxed.transpose(2, 0, 1)[::-1], np.float32(255), out=tensor, dtype=np.float32, casting="unsafe")
    return Prepared(tensor, ow, oh, gain=(new_w / ow, new_h / oh), pad=(float(left), float(top)), decode_scale=f)
