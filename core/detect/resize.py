"""OpenCV's bilinear resize (``cv2.resize(..., INTER_LINEAR)`` on uint8 images), bit for bit, in numpy.

    small = resize_linear(img, 640, 360)             # HWC in, HWC out, as cv2.resize
    resize_planar(bgrx, 640, 360, out)                # BGRX in, RGB planes written into out (3, 360, 640)

Where OpenCV is not installed (the desktop bundle: it would be 150 MB of its 250) these give the letterbox
the same pixels, so the models see what Ultralytics feeds them. Both use OpenCV's integer arithmetic: a
horizontal pass with 11-bit weights, then a vertical pass that keeps the high 16 bits of each product and
rounds at the end. An exact halving is OpenCV's 2×2 area mean, as OpenCV switches to it.

:func:`resize_planar` is the fast one: it gathers whole 4-byte BGRX pixels (one uint32 each, so a column
gather is a quarter of the work of gathering bytes) and does the arithmetic one colour plane at a time in
uint32, writing straight into the model's channel-first RGB layout.
"""

from __future__ import annotations

import functools

import numpy as np

# OpenCV's fixed-point bilinear: 11-bit coefficients (INTER_RESIZE_COEF_BITS).
_COEF_SCALE = 2048


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
    """``cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)`` for uint8 HWC images, in numpy."""
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


@functools.lru_cache(maxsize=32)
def _plan(w: int, h: int, new_w: int, new_h: int) -> tuple[tuple[np.ndarray, ...], bool]:
    # A camera sends frames of one size: its taps are computed once.
    x0, x1, a0, a1 = _taps(w, new_w, clamp=True)
    y0, y1, b0, b1 = _taps(h, new_h, clamp=False)
    # Weights that sum to 1 (in 11 bits) keep every result within 0..255: no clamp needed then.
    exact = bool(np.all(a0 + a1 == _COEF_SCALE) and np.all(b0 + b1 == _COEF_SCALE))
    u = np.uint32
    return (x0, x1, a0.astype(u), a1.astype(u), y0, y1, b0.astype(u)[:, None], b1.astype(u)[:, None]), exact


def resize_planar(img: np.ndarray, new_w: int, new_h: int, out: np.ndarray) -> None:
    """Resize a BGR or BGRX uint8 image as :func:`resize_linear` does, into ``out[c]`` = R, G, B planes.

    ``out`` is a ``(3, new_h, new_w)`` uint8 array (usually a view into a letterboxed tensor).
    """
    h, w, cn = img.shape
    if (w, h) == (new_w, new_h):
        out[:] = img[:, :, 2::-1].transpose(2, 0, 1)
        return
    if w == 2 * new_w and h == 2 * new_h:
        out[:] = resize_linear(img[:, :, :3], new_w, new_h)[:, :, ::-1].transpose(2, 0, 1)
        return
    if cn == 3:  # Pillow's output (PNG, CMYK): widen to BGRX once, so columns gather as uint32
        bgrx = np.empty((h, w, 4), np.uint8)
        bgrx[:, :, :3] = img
        img = bgrx
    (x0, x1, a0, a1, y0, y1, b0, b1), exact = _plan(w, h, new_w, new_h)
    # Little-endian whatever the machine: B, G, R are bits 0-7, 8-15 and 16-23 of each pixel.
    packed = np.ascontiguousarray(img).view("<u4").reshape(h, w)
    g0 = np.take(packed, x0, axis=1)
    g1 = np.take(packed, x1, axis=1)
    hor = np.empty_like(g0)
    tmp = np.empty_like(g0)
    for c in range(3):
        np.right_shift(g0, 8 * c, out=hor)
        hor &= 0xFF
        hor *= a0
        np.right_shift(g1, 8 * c, out=tmp)
        tmp &= 0xFF
        tmp *= a1
        hor += tmp
        hor >>= 4
        top = hor[y0]
        top *= b0
        top >>= 16
        bottom = hor[y1]
        bottom *= b1
        bottom >>= 16
        top += bottom
        top += 2
        top >>= 2
        if not exact:
            np.minimum(top, 255, out=top)
        out[2 - c] = top
