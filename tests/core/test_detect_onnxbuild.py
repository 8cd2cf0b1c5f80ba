"""core/detect/onnxbuild: our ONNX against Ultralytics' own, tensor for tensor and box for box.

Models: random-initialised YOLOv8n/s/m and YOLO11n built offline from Ultralytics' YAML files (BatchNorm
statistics from two photos, so outputs depend on the input; see tests/models.py) and the real trained
fall-detection YOLOv8s. Ultralytics (the export extra, with torch) makes the references; our conversion
needs neither.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from core.detect.checkpoint import UnsupportedModel, read_checkpoint
from core.detect.onnxbuild import build_onnx, convert
from insane.devkit import models
from tests.core.pickles import dumps, module, torch_zip

ARCHS = ["yolov8n", "yolov8s", "yolov8m", "yolo11n"]


def _need_ultralytics() -> None:
    from importlib.util import find_spec

    if find_spec("ultralytics") is None:
        pytest.skip("needs the export extra: Ultralytics makes the reference models")


@pytest.fixture(scope="module", params=[*ARCHS, "fall-yolov8s"])
def checkpoint(request, model_cache: Path, fall_model_pt: Path) -> Path:
    if request.param == "fall-yolov8s":
        return fall_model_pt
    _need_ultralytics()
    return models.random_model_pt(model_cache, request.param)


@pytest.fixture(scope="module")
def ours(checkpoint: Path, tmp_path_factory) -> Path:
    return convert(checkpoint, tmp_path_factory.mktemp("ours") / f"{checkpoint.stem}.onnx").path


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.export
def test_raw_outputs_match_ultralytics_export(checkpoint: Path, ours: Path, model_cache: Path) -> None:
    _need_ultralytics()
    theirs = models.export_onnx(checkpoint, model_cache, 640, dynamic=True)
    a, b = _session(ours), _session(theirs)
    rng = np.random.default_rng(0)
    photo = _letterboxed_photos((384, 640))
    for x in (rng.random((2, 3, 384, 640), np.float32), rng.random((1, 3, 640, 640), np.float32), photo):
        ya, yb = a.run(None, {"images": x})[0], b.run(None, {"images": x})[0]
        assert ya.shape == yb.shape and ya.shape[0] == len(x)
        assert float(np.abs(ya - yb).max()) <= 1e-3
    # The comparison means something: the outputs move with the input by far more than the tolerance.
    moved = np.abs(a.run(None, {"images": photo[:1]})[0] - a.run(None, {"images": photo[1:]})[0])
    assert float(moved[:, :4].max()) > 1.0 and float(moved[:, 4:].max()) > 0.01


def _letterboxed_photos(shape: tuple[int, int]) -> np.ndarray:
    from core.detect.preprocess import Letterbox, prepare_image, to_input

    box = Letterbox(shape)
    images = models.sample_images()
    prepared = [prepare_image(images[k], box, 50_000_000, reduced=False).tensor for k in ("bus.jpg", "zidane.jpg")]
    return to_input(prepared, np.float32)


def test_the_file_has_ultralytics_layout_and_metadata(checkpoint: Path, ours: Path) -> None:
    model = onnx.load(str(ours))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "images" and out.name == "output0"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in model.metadata_props}
    expected_keys = {"description", "author", "date", "version", "license", "docs", "stride", "task", "head"}
    assert expected_keys | {"batch", "imgsz", "names", "args", "channels", "end2end"} == set(meta)
    names = ast.literal_eval(meta["names"])
    assert meta["task"] == "detect" and meta["stride"] == "32" and meta["imgsz"] == "[640, 640]"
    session = _session(ours)
    for batch, h, w in ((1, 320, 320), (3, 384, 640), (2, 640, 480)):
        y = session.run(None, {"images": np.zeros((batch, 3, h, w), np.float32)})[0]
        assert y.shape == (batch, 4 + len(names), sum((h // s) * (w // s) for s in (8, 16, 32)))
    if checkpoint.stem == "fall-yolov8s":
        assert names == {0: "Normal", 1: "Fall"}
        assert meta["description"].startswith("Ultralytics fall-YOLOv8s model trained on D:")


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    if union <= 0:  # two zero-area boxes (random weights make some, clipped to the image edge): same corners?
        return float(max(abs(p - q) for p, q in zip(a, b, strict=True)) <= 0.5)
    return w * h / union


@pytest.mark.export
@pytest.mark.parametrize("rect", [False, True], ids=["640", "rect384x640"])
def test_insane_detect_on_our_onnx_matches_predict_on_the_pt(
    checkpoint: Path, ours: Path, tmp_path: Path, model_cache: Path, rect: bool
) -> None:
    _need_ultralytics()
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(model_cache / "ultralytics-config"))
    import cv2
    from ultralytics import YOLO

    photos = []
    for name, data in models.sample_images().items():
        (tmp_path / name).write_bytes(data)
        photos.append(tmp_path / name)
    args = ["detect", "--model", str(ours), "--json", "--full-decode", "--conf", "0.25"]
    env = {**os.environ, "INSANE_MODEL_DIR": str(tmp_path / "models"), "INSANE_DETECT_RECT": str(rect).lower()}
    done = subprocess.run(
        [sys.executable, "-m", "insane", *args, *map(str, photos)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    yolo = YOLO(str(checkpoint))
    total = 0
    for photo, answer in zip(photos, answers, strict=True):
        image = cv2.imread(str(photo))
        shape = (384, 640) if rect else (640, 640)
        r = yolo.predict(image, imgsz=shape, rect=False, conf=0.25, verbose=False, device="cpu")[0]
        theirs = sorted(((int(b.cls), float(b.conf), b.xyxy[0].tolist()) for b in r.boxes), key=lambda t: -t[1])
        mine = list(answer["detections"])
        assert len(mine) == len(theirs), (photo.name, len(mine), len(theirs))
        for cls, conf, box in theirs:  # one to one: same class, IoU ≥ 0.99, confidence within 0.005
            match = next(
                (
                    d
                    for d in mine
                    if d["class_id"] == cls and _iou(d["box"], box) >= 0.99 and abs(d["confidence"] - conf) <= 0.005
                ),
                None,
            )
            assert match is not None, (photo.name, cls, conf, box)
            mine.remove(match)
        total += len(theirs)
    assert total >= 3  # an empty answer would prove nothing


@pytest.mark.export
@pytest.mark.parametrize(
    ("yaml", "named"),
    [
        ("yolov8n-seg", "Segment head (instance segmentation)"),
        ("yolov8n-pose", "Pose head (pose estimation)"),
        ("yolov8n-obb", "OBB head (oriented bounding boxes)"),
        ("yolov8n-cls", "Classify head (classification)"),
        ("yolov10n", "v10Detect head"),
        ("yolo26n", "end-to-end (NMS-free) Detect head"),
    ],
)
def test_other_tasks_and_heads_are_named_as_unsupported(
    tmp_path: Path, model_cache: Path, yaml: str, named: str
) -> None:
    _need_ultralytics()
    pt = models.yaml_model_pt(model_cache, yaml)
    with pytest.raises(UnsupportedModel, match=named.replace("(", r"\(").replace(")", r"\)")):
        convert(pt, tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == []


def _crafted(layers: dict, cls: str = "ultralytics.nn.tasks.DetectionModel") -> bytes:
    seq = module("torch.nn.modules.container.Sequential", children=layers)
    return torch_zip(dumps({"model": module(cls, children={"model": seq}, names={0: "a"})}))


def test_an_unknown_module_is_named_with_where_it_sits(tmp_path: Path) -> None:
    layers = {
        "0": module("ultralytics.nn.modules.block.RepNCSPELAN4", f=-1, i=0),
        "1": module("ultralytics.nn.modules.head.Detect", f=[0], i=1, nc=1),
    }
    (tmp_path / "m.pt").write_bytes(_crafted(layers))
    with pytest.raises(
        UnsupportedModel, match=r"unsupported module ultralytics\.nn\.modules\.block\.RepNCSPELAN4 at model\.0"
    ):
        build_onnx(read_checkpoint(tmp_path / "m.pt"))
    layers["1"] = module("ultralytics.nn.modules.head.RTDETRDecoder", f=[0], i=1)
    (tmp_path / "m.pt").write_bytes(_crafted(layers, "ultralytics.nn.tasks.RTDETRDetectionModel"))
    with pytest.raises(UnsupportedModel, match=r"RTDETRDecoder head \(RT-DETR detection\)"):
        build_onnx(read_checkpoint(tmp_path / "m.pt"))
    # A torch.nn name dressed up as an Ultralytics module is not taken for one.
    layers["0"] = module("torch.nn.modules.conv.C2f", f=-1, i=0)
    layers["1"] = module("ultralytics.nn.modules.head.Detect", f=[0], i=1, nc=1)
    (tmp_path / "m.pt").write_bytes(_crafted(layers))
    with pytest.raises(UnsupportedModel, match=r"unsupported module torch\.nn\.modules\.conv\.C2f"):
        build_onnx(read_checkpoint(tmp_path / "m.pt"))


def test_hostile_sizes_are_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    """Counts a file could use to make the builder loop 10⁹ times or onnxruntime allocate terabytes."""
    from core.detect.checkpoint import CheckpointError
    from tests.core.pickles import tensor

    head = module("ultralytics.nn.modules.head.Detect", f=[0], i=1, nc=1)
    weight = {"weight": tensor("FloatStorage", "0", 9, (1, 1, 3, 3))}
    conv = module("torch.nn.modules.conv.Conv2d", weight, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    pool = module("torch.nn.modules.pooling.MaxPool2d", kernel_size=5, stride=1, padding=2)
    cases = {
        "upsampling factor 1000000.0 is outside 1..16": module(
            "torch.nn.modules.upsampling.Upsample", f=-1, scale_factor=1e6, mode="nearest"
        ),
        "1000000000 is outside 1..16": module(
            "ultralytics.nn.modules.block.SPPF", children={"cv1": conv, "cv2": conv, "m": pool}, f=-1, n=10**9
        ),
        "1000 is outside 0..64": module(
            "torch.nn.modules.conv.Conv2d", weight, f=-1, stride=(1, 1), padding=(1000, 1000), groups=1
        ),
    }
    for message, layer in cases.items():
        seq = module("torch.nn.modules.container.Sequential", children={"0": layer, "1": head})
        model = module("ultralytics.nn.tasks.DetectionModel", children={"model": seq})
        (tmp_path / "m.pt").write_bytes(torch_zip(dumps({"model": model}), {"0": bytes(36)}))
        with pytest.raises(CheckpointError, match=message):
            build_onnx(read_checkpoint(tmp_path / "m.pt"))
    big = module("ultralytics.nn.modules.head.Detect", f=[0], i=1, nc=10**9)
    identity = module("torch.nn.modules.linear.Identity", f=-1)
    seq = module("torch.nn.modules.container.Sequential", children={"0": identity, "1": big})
    (tmp_path / "m.pt").write_bytes(
        torch_zip(dumps({"model": module("ultralytics.nn.tasks.DetectionModel", children={"model": seq})}))
    )
    with pytest.raises(CheckpointError, match=r"model\.1: 1000000000 is outside 1\.\.100000"):
        build_onnx(read_checkpoint(tmp_path / "m.pt"))
