"""Ultralytics detection checkpoints (``.pt``) to ONNX without torch: the ``onnx`` package and numpy only.

    result = convert(Path("yolov8n.pt"), Path("models/yolov8n.onnx"))   # CheckpointError when it cannot
    result.labels, result.title, result.seconds

    proto = build_onnx(read_checkpoint(Path("best.pt")), imgsz=640)     # the onnx.ModelProto, unsaved

The checkpoint is read by :mod:`core.detect.checkpoint` (nothing in it runs); the layers of its
DetectionModel are walked in order, each through the emitter of its class (:mod:`.layers`, :mod:`.head`),
wired by the layer's ``f`` (from) index exactly as ``DetectionModel._predict_once`` wires them. The file
has Ultralytics' export layout: input ``images`` (batch, 3, height, width), all three dynamic; output
``output0`` (batch, 4 + classes, anchors); metadata ``names``, ``stride``, ``imgsz``, ``task`` and the rest
of the keys its exporter writes. :func:`convert` then runs the file once in onnxruntime before it takes the
target's name, so a file that is there is a file that loads.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from core.detect.checkpoint import Checkpoint, CheckpointError, Module, UnsupportedModel, read_checkpoint
from core.detect.onnxbuild import head as _head  # noqa: F401  # registers the Detect emitter
from core.detect.onnxbuild.graph import OPSET, Graph
from core.detect.onnxbuild.head import OTHER_HEADS
from core.detect.onnxbuild.layers import Builder

log = logging.getLogger(__name__)

OTHER_TASKS = {
    "SegmentationModel": "instance segmentation",
    "PoseModel": "pose estimation",
    "OBBModel": "oriented bounding boxes",
    "ClassificationModel": "classification",
    "RTDETRDetectionModel": "RT-DETR detection",
    "WorldModel": "open-vocabulary detection (YOLO-World)",
    "YOLOEModel": "open-vocabulary detection (YOLOE)",
    "YOLOESegModel": "open-vocabulary segmentation (YOLOE)",
}


@dataclass(frozen=True)
class Converted:
    path: Path
    title: str  # "YOLOv8n", "YOLO11n", or the file's stem
    labels: list[str]
    seconds: float


def convert(pt: Path, target: Path, imgsz: int | tuple[int, int] = 640) -> Converted:
    """``pt`` to ONNX at ``target`` (written atomically, checked by onnxruntime first)."""
    start = time.perf_counter()
    pt, target = Path(pt), Path(target)
    ckpt = read_checkpoint(pt)
    proto = build_onnx(ckpt, imgsz)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise CheckpointError(f"{pt.name}: the ONNX graph built from it is not valid: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        onnx.save(proto, part)
        labels = _labels(proto)
        _smoke_test(part, len(labels), int(_meta(proto)["stride"]), pt.name)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    title = _meta(proto)["description"].split(" ")[1]
    log.info("converted %s to %s (%s, %d classes) in %.2f s", pt, target, title, len(labels), seconds)
    return Converted(target, title, labels, seconds)


def build_onnx(ckpt: Checkpoint, imgsz: int | tuple[int, int] = 640) -> onnx.ModelProto:
    model = ckpt.model
    layers = _layers(model, ckpt.path.name)
    graph = Graph()
    builder = Builder(graph)
    outputs: list[Any] = []
    x: Any = "images"
    for i, layer in enumerate(layers):
        x = _inputs(layer.attrs.get("f", -1), x, outputs, i)
        x = builder.emit(layer, x, f"model.{i}")
        outputs.append(x)
    graph.rename_output(x, "output0")
    nc = int(layers[-1].attrs["nc"])
    names = _names(model.attrs.get("names"), nc, ckpt.path.name)
    shape = (imgsz, imgsz) if isinstance(imgsz, int) else (imgsz[0], imgsz[1])
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + nc, "anchors"])
    return graph.model([images], [output], _metadata(ckpt, names, shape))


def _layers(model: Module, name: str) -> list[Module]:
    """The model's layers, after refusing what is not a YOLOv8/YOLO11-style detection model (by its head first)."""
    seq = model.child("model")
    layers = list(seq.children().values()) if isinstance(seq, Module) else []
    if not layers or not all(isinstance(m, Module) for m in layers):
        raise CheckpointError(f"{name}: the model has no layers")
    last = layers[-1]
    if last.name in OTHER_HEADS:
        raise UnsupportedModel(
            f"unsupported: {name} has a {last.name} head ({OTHER_HEADS[last.name]}); only detection models "
            "(a Detect head) convert"
        )
    if model.name in OTHER_TASKS:
        raise UnsupportedModel(
            f"unsupported: {name} is a {OTHER_TASKS[model.name]} model ({model.name}); only detection models convert"
        )
    if model.name != "DetectionModel" or not model.cls.startswith("ultralytics."):
        raise UnsupportedModel(f"unsupported: {name} holds a {model.cls}, not an Ultralytics DetectionModel")
    if last.name != "Detect" or not last.cls.startswith("ultralytics."):
        raise UnsupportedModel(f"unsupported: {name} ends in {last.cls}, not a Detect head")
    return layers


def _inputs(f: Any, x: Any, outputs: list[Any], i: int) -> Any:
    """Layer ``i``'s input: the previous output (``f`` -1), an earlier layer's, or a list of them."""

    def pick(j: Any) -> Any:
        if isinstance(j, bool) or not isinstance(j, int) or not -len(outputs) <= j < len(outputs):
            raise CheckpointError(f"layer {i} takes its input from layer {j!r}, which does not come before it")
        return outputs[j]

    if f == -1:
        return x
    if isinstance(f, list | tuple):
        return [x if j == -1 else pick(j) for j in f]
    return pick(f)


def _names(names: Any, nc: int, source: str) -> dict[int, str]:
    if names is None:
        return {i: f"class{i}" for i in range(nc)}
    if isinstance(names, list | tuple):
        names = dict(enumerate(names))
    if (
        not isinstance(names, dict)
        or sorted(names) != list(range(nc))
        or not all(isinstance(v, str) and len(v) <= 200 for v in names.values())
    ):
        raise CheckpointError(f"{source}: its class names do not match the {nc} classes its head predicts")
    return {i: names[i] for i in range(nc)}


def _metadata(ckpt: Checkpoint, names: dict[int, str], shape: tuple[int, int]) -> dict[str, str]:
    """The keys and value forms Ultralytics' exporter writes (engine/exporter.py), as strings."""
    model = ckpt.model
    found = model.attrs.get("yaml")
    yaml: dict[str, Any] = found if isinstance(found, dict) else {}
    yaml_file = yaml.get("yaml_file")
    source = yaml_file if isinstance(yaml_file, str) else ckpt.path.name
    title = PurePath(source).stem.replace("yolo", "YOLO")
    args = model.attrs.get("args")
    data = args.get("data") if isinstance(args, dict) else None
    data = str(data) if isinstance(data, str | PurePath) else ""
    stride = model.tensor("stride")
    version = ckpt.meta.get("version")
    return {
        "description": f"Ultralytics {title} model {f'trained on {data}' if data else ''}",
        "author": "Ultralytics",
        "date": datetime.now().astimezone().isoformat(),
        "version": str(version) if isinstance(version, str) else "",
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "stride": str(int(stride.max()) if stride is not None and stride.size else 32),
        "task": "detect",
        "head": "Detect",
        "batch": "1",
        "imgsz": str([int(shape[0]), int(shape[1])]),
        "names": str(names),
        "args": str({"batch": 1, "half": False, "dynamic": True, "simplify": False, "opset": OPSET, "nms": False}),
        "channels": str(yaml.get("channels", 3) if isinstance(yaml.get("channels", 3), int) else 3),
        "end2end": "False",
    }


def _meta(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def _labels(proto: onnx.ModelProto) -> list[str]:
    import ast

    names = ast.literal_eval(_meta(proto)["names"])
    return [names[i] for i in sorted(names)]


def _smoke_test(path: Path, nc: int, stride: int, source: str) -> None:
    """One run on a small blank image: the file loads in onnxruntime and answers in the layout it declares."""
    import onnxruntime as ort

    side = 2 * stride
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        out = session.run(None, {"images": np.zeros((1, 3, side, side), np.float32)})[0]
    except Exception as exc:  # onnxruntime's pybind errors share no base but Exception
        raise CheckpointError(f"{source}: the ONNX graph built from it does not run: {exc}") from exc
    if out.ndim != 3 or out.shape[:2] != (1, 4 + nc):
        raise CheckpointError(f"{source}: the converted model answers {out.shape}, expected (1, {4 + nc}, anchors)")
