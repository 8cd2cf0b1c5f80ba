"""From JPEG/PNG bytes to a model input: header check, scaled decode, EXIF orientation, letterbox.

    lb = Letterbox((640, 640), auto=True)                 # each frame its own shape, as Ultralytics' predict
    p = prepare_image(data, lb, max_pixels=50_000_000)    # Prepared: tensor uint8 RGB (3, 384, 640) for 16:9
    batch = to_input([p.tensor, ...], np.float32)         # (n, 3, 384, 640) in 0..1: what the model takes

The letterbox is Ultralytics' ``LetterBox`` (same rounding, same padding value, bilinear resize), so the
same pixels reach the network. ``auto`` is the one its ``predict`` uses for a dynamic-shape model: the long
side goes to ``imgsz``, the short side is padded up to the next multiple of the stride (16:9 at 640 →
384×640, 4:3 → 480×640, 1:1 → 640×640, 9:16 → 640×384). Without ``auto`` every frame is boxed into one fixed
shape: a fixed-shape model's own, or an override (``imgsz`` as a pair, ``rect``).

Large JPEGs are decoded by libjpeg at 1/2, 1/4 or 1/8 size when the reduced image is still at least as
large as the letterboxed one: a 1080p frame for a 640-wide input decodes at 960×540, several times cheaper
than a full decode and a resize. The decoders are in :mod:`core.detect.decode`.

A prepared tensor stays uint8 until its batch is assembled: a worker holds dozens of them while they wait
for inference, and float32 would take four times the memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from core.detect.base import DetectorError, Prepared
from core.detect.decode import Decoder, get_decoder
from core.detect.resize import resize_linear
from core.imageinfo import CorruptImage, ImageInfo, UnsupportedImage, check_pixels, jpeg_orientation, probe

log = logging.getLogger(__name__)

PAD_VALUE = 114

__all__ = [
    "PAD_VALUE",
    "Letterbox",
    "choose_letterbox",
    "decode",
    "group_by_shape",
    "prepare_image",
    "rect_shape",
    "reduce_factor",
    "resize_linear",
    "to_input",
]


def rect_shape(imgsz: int, aspect: float, stride: int = 32) -> tuple[int, int]:
    """(h, w) of a stride-aligned input for frames of ``aspect`` (w/h) at ``imgsz``: 640, 16:9 → (384, 640)."""
    h = imgsz / aspect
    return (int(-(-h // stride) * stride), imgsz)


class Letterbox:
    """Ultralytics' letterbox into ``shape`` (h, w); with ``auto``, ``shape`` bounds each frame's own input."""

    def __init__(self, shape: tuple[int, int], auto: bool = False, stride: int = 32) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.auto = auto
        self.stride = stride

    def __repr__(self) -> str:
        kind = f"auto, stride {self.stride}" if self.auto else "fixed"
        return f"Letterbox({self.shape[0]}x{self.shape[1]}, {kind})"

    def params(self, h: int, w: int) -> tuple[tuple[int, int], int, int, int, int]:
        """((new_w, new_h), top, bottom, left, right) for an image of h×w."""
        th, tw = self.shape
        r = min(th / h, tw / w)
        new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
        dw, dh = tw - new_w, th - new_h
        if self.auto:  # the smallest stride multiple that holds the resized frame
            dw, dh = dw % self.stride, dh % self.stride
        half_w, half_h = dw / 2, dh / 2
        top, bottom = round(half_h - 0.1), round(half_h + 0.1)
        left, right = round(half_w - 0.1), round(half_w + 0.1)
        return (new_w, new_h), top, bottom, left, right

    def input_shape(self, h: int, w: int) -> tuple[int, int]:
        """The (h, w) of the model input for an image of h×w."""
        (new_w, new_h), top, bottom, left, right = self.params(h, w)
        return new_h + top + bottom, new_w + left + right

    def apply(self, img: np.ndarray) -> np.ndarray:
        """The letterboxed HWC image, as Ultralytics' ``LetterBox`` returns it."""
        h, w = img.shape[:2]
        (new_w, new_h), top, bottom, left, right = self.params(h, w)
        img = resize_linear(img, new_w, new_h)
        boxed = np.full((new_h + top + bottom, new_w + left + right, img.shape[2]), PAD_VALUE, np.uint8)
        boxed[top : top + new_h, left : left + new_w] = img
        return boxed


def choose_letterbox(
    *,
    fixed: tuple[int, int] | None,
    own: tuple[int, int] | None,
    imgsz: int | Sequence[int] | None,
    rect: bool | None,
    rect_aspect: float,
    stride: int,
    name: str,
) -> Letterbox:
    """The letterbox a model runs with.

    ``fixed``: the model's fixed input (h, w), if it has one; ``own``: the size in its metadata; ``imgsz``,
    ``rect``: the config. A fixed-shape model keeps its shape. Otherwise each frame gets its own shape with
    the long side at ``imgsz`` (default: the model's own long side), unless ``imgsz`` is a pair or ``rect``
    is set: True boxes every frame into one ``rect_aspect`` shape (640 → 384×640), False into a square.
    """
    if fixed is not None:
        wanted = None
        if isinstance(imgsz, int):
            wanted = rect_shape(imgsz, rect_aspect, stride) if rect else (imgsz, imgsz)
        elif imgsz is not None:
            wanted = (int(imgsz[0]), int(imgsz[1]))
        if wanted is not None and wanted != fixed:
            raise DetectorError(
                f"{name} has a fixed input of {fixed[0]}x{fixed[1]}; it cannot run at "
                f"{wanted[0]}x{wanted[1]} (export it with --dynamic, or drop imgsz/rect)"
            )
        if rect is not None and wanted is None:
            log.info("%s has a fixed %dx%d input; rect does not apply", name, *fixed)
        return Letterbox(fixed)
    if imgsz is not None and not isinstance(imgsz, int):
        shape = (int(imgsz[0]), int(imgsz[1]))
        auto = False
    else:
        size = imgsz if isinstance(imgsz, int) else max(own) if own else 640
        if rect is None:
            shape, auto = (size, size), True
        else:
            shape, auto = (rect_shape(size, rect_aspect, stride) if rect else (size, size)), False
    if any(v % stride for v in shape):
        raise DetectorError(f"input size {shape[0]}x{shape[1]} is not a multiple of the stride {stride}")
    return Letterbox(shape, auto=auto, stride=stride)


def _oriented(info: ImageInfo, data: bytes) -> tuple[int, int]:
    """(width, height) as the picture is shown: EXIF orientations 5–8 swap the sides."""
    if info.format == "jpeg" and jpeg_orientation(data) >= 5:
        return info.height, info.width
    return info.width, info.height


def reduce_factor(info: ImageInfo, letterbox: Letterbox | tuple[int, int], data: bytes = b"") -> int:
    """The largest JPEG decode reduction that still leaves at least the letterboxed size."""
    if info.format != "jpeg":
        return 1
    if not isinstance(letterbox, Letterbox):
        letterbox = Letterbox(letterbox)
    w, h = _oriented(info, data)
    (new_w, new_h), *_ = letterbox.params(h, w)
    best = 1
    for f in (2, 4, 8):
        if -(-w // f) >= new_w and -(-h // f) >= new_h:
            best = f
    return best


def decode(
    data: bytes, letterbox: Letterbox, max_pixels: int, reduced: bool = True, decoder: Decoder | None = None
) -> tuple[np.ndarray, int, int, int]:
    """(BGR or BGRX image, original width, original height, reduction) with EXIF orientation applied.

    Raises :class:`core.imageinfo.ImageError` subclasses: the header is checked before a pixel is decoded.
    """
    info = probe(data)
    check_pixels(info, max_pixels)
    f = reduce_factor(info, letterbox, data) if reduced else 1
    img = (decoder or get_decoder()).decode(data, info, f)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
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
    data: bytes, letterbox: Letterbox, max_pixels: int, reduced: bool = True, decoder: Decoder | None = None
) -> Prepared:
    """One image decoded and letterboxed into a uint8 RGB tensor (3, h, w) of its input shape."""
    decoder = decoder or get_decoder()
    img, ow, oh, f = decode(data, letterbox, max_pixels, reduced, decoder)
    (new_w, new_h), top, bottom, left, right = letterbox.params(oh, ow)
    tensor = np.empty((3, new_h + top + bottom, new_w + left + right), np.uint8)
    tensor[:, :top] = PAD_VALUE
    tensor[:, top + new_h :] = PAD_VALUE
    tensor[:, top : top + new_h, :left] = PAD_VALUE
    tensor[:, top : top + new_h, left + new_w :] = PAD_VALUE
    decoder.resize_into(img, new_w, new_h, tensor[:, top : top + new_h, left : left + new_w])
    return Prepared(tensor, ow, oh, gain=(new_w / ow, new_h / oh), pad=(float(left), float(top)), decode_scale=f)


def group_by_shape(batch: Sequence[Prepared]) -> list[list[int]]:
    """Indices of the batch grouped by input shape, each group in batch order, groups by first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(batch):
        groups.setdefault(p.tensor.shape, []).append(i)
    return list(groups.values())


def to_input(tensors: Sequence[np.ndarray], dtype: np.dtype | type, out: np.ndarray | None = None) -> np.ndarray:
    """Prepared uint8 tensors of one shape as a model batch in ``dtype``, scaled to 0..1 as Ultralytics does."""
    shape = tensors[0].shape
    if out is None:
        out = np.empty((len(tensors), *shape), dtype)
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise ValueError(f"a batch mixes input shapes {shape} and {t.shape}; group it by shape first")
        np.divide(t, np.float32(255), out=out[i], dtype=np.float32, casting="unsafe")
    return out
