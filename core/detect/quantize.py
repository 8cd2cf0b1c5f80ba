"""Static INT8 quantisation of a YOLOv8 ONNX model, with the Detect head's decode kept in float.

    images = calibration_images([Path("frames/")])     # JPEG/PNG files; None: the bundled sample pictures
    result = quantize_model(Path("yolov8n.onnx"), model_dir, images, name="yolov8n")
    result.path                                         # model_dir/yolov8n-int8.onnx, loaded like any model

The result is QDQ ONNX (onnxruntime fuses it into integer kernels): int8 weights, per output channel by
default, and uint8 activations whose ranges come from running the model on the calibration images with
the detector's own letterbox. Its input and output stay float32 and its metadata (class names, imgsz,
stride) is the source's, so the registry, ``insane detect`` and the worker need nothing new.

Why the decode stays float: a YOLOv8 output row holds box pixels (0…640) and class probabilities (0…1)
side by side, and one int8 scale over both rounds every probability to 0. The nodes after the head's last
convolutions (distribution softmax, anchor and stride arithmetic, sigmoid, the final concat) are found
from the graph, not by name: walk back from the output, through everything but a convolution, then take
everything downstream of what was reached (that pulls in the DFL's fixed 1×1 convolution). The last
convolutions themselves, where the walk stopped, stay float as well: their outputs are raw logits that
quantise poorly, and they are a percent or two of the model's work.

Needs the ``onnx`` package (the export extra); onnxruntime ships the quantiser.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from core.detect.base import DetectorError
from core.detect.preprocess import Letterbox, prepare_image, to_input
from core.detect.registry import describe
from core.imageinfo import ImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}
# Nodes that read only a tensor's shape: the walk back from the output does not follow their input,
# or a dynamic export's anchor arithmetic (built from feature-map shapes) would lead it into the neck.
SHAPE_OPS = {"Shape", "Size"}


class QuantizeError(DetectorError):
    """The model or the calibration images cannot be quantised; ``str()`` says why and what to do."""


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    images: int  # calibration images used
    samples: int  # letterboxed inputs run (an image may be run at more than one input shape)
    float_nodes: int  # nodes left in float: the decode and the head's last convolutions
    per_channel: bool


def bundled_samples() -> list[Path]:
    """The sample pictures that come with the app, and Ultralytics' bus.jpg and zidane.jpg when it is installed."""
    roots = [Path(getattr(sys, "_MEIPASS", "")), Path(__file__).resolve().parents[2]]
    found: list[Path] = []
    for root in roots:
        if (root / "assets").is_dir():
            found += sorted(p for p in (root / "assets").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            break
    spec = find_spec("ultralytics")  # located, not imported: importing it pulls in torch
    if spec is not None and spec.origin is not None:
        photos = Path(spec.origin).parent / "assets"
        found += [p for p in (photos / "bus.jpg", photos / "zidane.jpg") if p.is_file()]
    return found


def calibration_images(sources: Sequence[Path] | None = None) -> list[Path]:
    """Image files from folders (not recursive) and files; ``None`` or empty: :func:`bundled_samples`."""
    if not sources:
        found = bundled_samples()
        if not found:
            raise QuantizeError("no bundled sample pictures here; give calibration images with --calib DIR")
        return found
    found = []
    for source in sources:
        if source.is_dir():
            found += sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif source.is_file():
            found.append(source)
        else:
            raise QuantizeError(f"calibration path not found: {source}")
    if not found:
        names = ", ".join(str(s) for s in sources)
        raise QuantizeError(f"no calibration images (.jpg, .jpeg, .png) in {names}")
    return found


def decode_tail(graph: Any) -> tuple[list[Any], list[Any]]:
    """(the decode nodes after the head's last convolutions, those last convolutions) of a YOLOv8 graph."""
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    inputs = {i.name for i in graph.input}
    tail: dict[int, Any] = {}
    stops: dict[int, Any] = {}
    stack = [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        node = stack.pop()
        if id(node) in tail or id(node) in stops:
            continue
        if node.op_type == "Conv":
            stops[id(node)] = node
            continue
        tail[id(node)] = node
        if node.op_type in SHAPE_OPS:
            continue
        for name in node.input:
            if name in inputs:
                raise QuantizeError(
                    "the output depends on the image without a convolution in between; "
                    "this is not a YOLOv8 detection model"
                )
            if name in producer:
                stack.append(producer[name])
    stack = list(tail.values())
    while stack:  # everything downstream of the decode is decode too (the DFL's 1×1 convolution)
        for out in stack.pop().output:
            for node in consumers[out]:
                if id(node) not in tail:
                    tail[id(node)] = node
                    stack.append(node)
    last_convs = [node for key, node in stops.items() if key not in tail]
    if not last_convs or not any(n.op_type == "Sigmoid" for n in tail.values()):
        raise QuantizeError("cannot find a YOLOv8 Detect head (convolutions, then a sigmoid) before the output")
    return list(tail.values()), last_convs


class _Frames:
    """Calibration inputs: each image letterboxed as the detector does it, with every letterbox given."""

    def __init__(
        self, input_name: str, images: Sequence[Path | bytes], letterboxes: Sequence[Letterbox], batch: int
    ) -> None:
        self._input_name = input_name
        self._batch = batch  # a fixed-batch model takes the image repeated
        self._letterboxes = list(letterboxes)
        self._iter = self._frames(images)
        self.images = 0
        self.samples = 0

    def _frames(self, images: Sequence[Path | bytes]) -> Iterator[dict[str, np.ndarray]]:
        for i, image in enumerate(images):
            try:
                data = image if isinstance(image, bytes) else image.read_bytes()
                prepared = [prepare_image(data, lb, 50_000_000).tensor for lb in self._letterboxes]
            except (OSError, ImageError) as exc:
                log.warning("calibration: skipped %s (%s)", image if isinstance(image, Path) else f"picture {i}", exc)
                continue
            self.images += 1
            for t in prepared:
                self.samples += 1
                yield {self._input_name: to_input([t] * self._batch, np.float32)}

    def get_next(self) -> dict[str, np.ndarray] | None:  # onnxruntime's CalibrationDataReader protocol
        return next(self._iter, None)


def _load_onnx(path: Path) -> Any:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors share no base but Exception
        raise QuantizeError(f"{path.name} is not an ONNX model ({exc})") from exc
    if not model.graph.node:
        raise QuantizeError(f"{path.name} is not an ONNX model (no graph)")
    return model


def _input_shapes(model: Any) -> tuple[str, list[Letterbox], int]:
    """The input's name, the letterboxes to calibrate with (a fixed shape; or each picture's own shape, as the
    detector runs by default, and the square one) and the batch size to feed (a fixed batch, or 1)."""
    from onnx import TensorProto

    inp = model.graph.input[0]
    ttype = inp.type.tensor_type
    if ttype.elem_type == TensorProto.FLOAT16:
        raise QuantizeError(
            "the model has float16 weights; quantise a float32 export (insane model export PATH.pt, without --half)"
        )
    if ttype.elem_type != TensorProto.FLOAT or len(ttype.shape.dim) != 4:
        raise QuantizeError(f"input {inp.name!r} is not a float32 image batch (N×3×H×W)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
    batch = dims[0] or 1
    if dims[2] and dims[3]:
        return inp.name, [Letterbox((dims[2], dims[3]))], batch
    meta = {p.key: p.value for p in model.metadata_props}
    stride = int(meta.get("stride", 32))
    try:
        h, w = (int(v) for v in meta["imgsz"].strip("[]() ").split(","))
    except (KeyError, ValueError):
        h = w = 640
    size = max(h, w)
    return inp.name, [Letterbox((size, size), auto=True, stride=stride), Letterbox((size, size))], batch


def quantize_model(
    src: Path,
    out_dir: Path,
    images: Iterable[Path | bytes],
    name: str | None = None,
    per_channel: bool = True,
    max_images: int | None = None,
) -> QuantizeResult:
    """Write ``out_dir/NAME-int8.onnx`` (atomically) from the float32 YOLOv8 model ``src``.

    ``images`` are picture files or their bytes (the tray calibrates on moments it holds in memory).
    """
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quant_pre_process,
            quantize_static,
        )
    except ImportError as exc:
        raise QuantizeError(
            f"quantising needs the onnx package: pip install 'insane-ai-security[export]' ({exc})"
        ) from exc
    src = Path(src)
    if not src.is_file():
        raise QuantizeError(f"no such file: {src}")
    if src.suffix.lower() != ".onnx":
        raise QuantizeError(f"{src.name}: expected a .onnx model (export a .pt first: insane model export PATH.pt)")
    if name is not None and (not name or "/" in name or "\\" in name or name.startswith(".")):
        raise QuantizeError(f"{name!r} is not a model name (no folders, no leading dot)")
    if max_images is not None and max_images < 1:
        raise QuantizeError(f"max_images must be at least 1, not {max_images}")
    images = list(images)[:max_images]
    if not images:
        raise QuantizeError("no calibration images")
    model = _load_onnx(src)
    if any(n.op_type in QUANTIZED_OPS for n in model.graph.node):
        raise QuantizeError(f"{src.name} is already quantised")
    input_name, letterboxes, batch = _input_shapes(model)
    decode_tail(model.graph)  # refuse a model without a Detect head before the slow part
    metadata = {p.key: p.value for p in model.metadata_props}

    target = Path(out_dir) / f"{name or src.stem}-int8.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".quantize-", dir=target.parent))
    try:
        # Shape inference and graph optimisation first, as onnxruntime's quantiser expects; symbolic shape
        # inference gives up on a dynamic export's anchor arithmetic and is not needed for a CNN.
        pre = work / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception as exc:  # onnx's checker and onnxruntime's pybind errors share no base but Exception
            raise QuantizeError(f"{src.name} cannot be prepared for quantisation: {exc}") from exc
        model = onnx.load(str(pre))
        for i, node in enumerate(model.graph.node):  # exclusion goes by node name
            if not node.name:
                node.name = f"{node.op_type}_{i}"
        tail, last_convs = decode_tail(model.graph)
        keep_float = [n.name for n in (*tail, *last_convs)]
        frames = _Frames(input_name, images, letterboxes, batch)
        try:
            quantize_static(
                model,
                str(work / "q.onnx"),
                frames,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep_float,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except ValueError as exc:  # onnxruntime's "No data is collected." when every image failed
            if frames.images == 0:
                raise QuantizeError(f"none of the {len(images)} calibration images could be read") from exc
            raise QuantizeError(f"quantising {src.name} failed: {exc}") from exc
        quantized = onnx.load(str(work / "q.onnx"))
        del quantized.metadata_props[:]
        metadata["quantization"] = (
            f"static int8 QDQ, {'per-channel' if per_channel else 'per-tensor'} weights, "
            f"MinMax over {frames.images} images; decode in float"
        )
        onnx.helper.set_model_props(quantized, metadata)
        done = work / target.name
        onnx.save(quantized, str(done))
        describe(done)  # loads as the registry and the detector will, before it takes the name
        os.replace(done, target)  # same folder, so atomic: a reader sees the old file or the whole new one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "quantised %s to %s: %d calibration images (%d inputs), %d nodes kept float",
        src,
        target,
        frames.images,
        frames.samples,
        len(keep_float),
    )
    return QuantizeResult(target, frames.images, frames.samples, len(keep_float), per_channel)
