"""From JPEG/PNG bytes to a model input: header check, scaled decode, EXIF orientation, letterbox.

    plan = Letterbox((384, 640))
    p = prepare_image(data, plan, np.float32, max_pixels=50_000_000)   # Prepared, tensor (3, 384, 640)

The letterbox is Ultralytics' (``LetterBox(auto=False, center=True)``: same rounding, same padding value,
bilinear resize), so the same pixels reach the network. Large JPEGs are decoded by libjpeg at 1/2, 1/4 or
1/8 size when the reduced image is still at least as large as the letterboxed one: a 1080p frame for a
640-wide input decodes at 960×540, which is several times cheaper than a full decode and a resize.

Two pixel paths give the same bytes. With OpenCV installed (the relay host, the headless worker, the
export tools) it decodes and resizes. Without it (the desktop bundle, where OpenCV would be 150 MB of
its 250) Pillow decodes through the same libjpeg-turbo scaled decode, and :func:`resize_linear`
reproduces ``cv2.resize(..., INTER_LINEAR)`` in integer numpy, bit for bit (tests/core/test_detect_pixels.py
holds both paths to identical arrays).
"""

from __future__ import annotations

import io

import numpy as np

from core.detect.base import Prepared
from core.imageinfo import CorruptImage, ImageInfo, UnsupportedImage, check_pixels, probe

try:
    import cv2
except ImportError:  # the desktop bundle: Pillow decodes, numpy resizes
    cv2 = None

PAD_VALUE = 114
# OpenCV's fixed-point bilinear: 11-bit coefficients (INTER_RESIZE_COEF_BITS).
_COEF_SCALE = 2048


def rect_shape(imgsz: int, aspect: float, stride: int = 32) -> tuple[int, int]:
    """(h, w) of a stride-aligned input for frames of ``aspect`` (w/h) at ``imgsz``: 640, 16:9 → (384, 640)."""
    h = imgsz / aspect
    return (int(-(-h // stride) * stride), imgsz)


def _taps(src: int, dst: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and 11-bit weights of each output position, computed as OpenCV does (float32 offsets).

    Columns past an edge take the edge pixel with weight 1 (``clamp``); rows keep their fractional weight
    and read the edge row twice, which rounds differently: OpenCV does exactly this.
    """
    scale = 1.0 / (dst / src)  # OpenCV inverts the inverse scale; the last bit of the offsets depends on it
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    f = f - i.astype(np.float32)
    if clamp:
        edge = (i < 0) | (i >= src - 1)
        f[edge] = 0
        i = np.clip(i, 0, src - 1)
    w0 = np.rint((np.float32(1) - f) * np.float32(_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int32)
    return np.clip(i, 0, src - 1), np.clip(i + 1, 0, src - 1), w0, w1


def resize_linear(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """``cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)`` for uint8 HWC images, in numpy.

    Same integer arithmetic as OpenCV's SIMD path: a horizontal pass with 11-bit weights, then a vertical
    pass that keeps the high 16 bits of each product and rounds at the end. An exact halving is OpenCV's
    2×2 area mean, as OpenCV switches to it.
    """
    h, w = img.shape[:2]
    if (w, h) == (new_w, new_h):
        return img.copy()
    if w == 2 * new_w and h == 2 * new_h:
        s = img.astype(np.uint16)
        return ((s[0::2, 0::2] + s[0::2, 1::2] + s[1::2, 0::2] + s[1::2, 1::2] + 2) >> 2).astype(np.uint8)
    cn = img.shape[2]
    x0, x1, a0, a1 = _taps(w, new_w, clamp=True)
    y0, y1, b0, b1 = _taps(h, new_h, clamp=False)
    rows, where = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    # Rows flattened to (row, column·channel): one gather per tap, on bytes, then 32-bit products.
    src = img[rows].reshape(len(rows), w * cn)
    lanes = np.arange(cn)
    hor = np.multiply(np.take(src, (x0[:, None] * cn + lanes).ravel(), axis=1), np.repeat(a0, cn), dtype=np.int32)
    hor += np.multiply(np.take(src, (x1[:, None] * cn + lanes).ravel(), axis=1), np.repeat(a1, cn), dtype=np.int32)
    hor >>= 4  # OpenCV packs the horizontal sums into 16 bits this way (they stay below 2^15)
    out = hor[where[:new_h]]
    out *= b0[:, None]
    out >>= 16
    bottom = hor[where[new_h:]]
    bottom *= b1[:, None]
    bottom >>= 16
    out += bottom
    out += 2
    out >>= 2
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8).reshape(new_h, new_w, cn)


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
        if cv2 is not None:
            if (w, h) != (new_w, new_h):
                img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
        if (w, h) != (new_w, new_h):
            img = resize_linear(img, new_w, new_h)
        boxed = np.full((new_h + top + bottom, new_w + left + right, img.shape[2]), PAD_VALUE, np.uint8)
        boxed[top : top + new_h, left : left + new_w] = img
        return boxed


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
        raise CorruptImage(f"{info.format.upper()} data is corrupt or truncated ({len(data)} bytes)")
    return img


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
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # A 16-bit grey PNG: OpenCV keeps the high byte.
                grey = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            if im.mode == "CMYK":
                # OpenCV's CMYK→BGR on the values libjpeg returns (Pillow inverts Adobe's; undo that).
                cmyk = np.asarray(im).astype(np.int32)
                if "adobe" in im.info:
                    cmyk = 255 - cmyk
                k = cmyk[:, :, 3:]
                return (k - (((255 - cmyk[:, :, 2::-1]) * k) >> 8)).astype(np.uint8)
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImage(f"{info.format.upper()} data is corrupt or truncated ({len(data)} bytes): {exc}") from exc
    return rgb[:, :, ::-1]  # BGR, as OpenCV returns it (a view: the tensor step flips it back for free)


def decode(
    data: bytes, shape: tuple[int, int], max_pixels: int, reduced: bool = True
) -> tuple[np.ndarray, int, int, int]:
    """(BGR image, original width, original height, reduction) with EXIF orientation applied.

    Raises :class:`core.imageinfo.ImageError` subclasses: the header is checked before a pixel is decoded.
    """
    info = probe(data)
    check_pixels(info, max_pixels)
    f = reduce_factor(info, shape) if reduced else 1
    img = (_decode_cv2 if cv2 is not None else _decode_pillow)(data, info, f)
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
