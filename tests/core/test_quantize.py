"""`insane model quantize` on the real trained fall model: its INT8 copy finds what fp32 finds, the decode
stays float, the copy loads like any model, and bad input fails with a sentence and exit code 1."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from core.detect import load_detector
from core.detect.registry import ModelRegistry, describe

onnx = pytest.importorskip("onnx", reason="quantising needs the onnx package (the export extra)")

ROOT = Path(__file__).resolve().parents[2]
EVAL = ("bus.jpg", "zidane.jpg", "frame1080.jpg")


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _run(*args: str, model_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, INSANE_MODEL_DIR=str(model_dir), YOLO_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "insane", *args], capture_output=True, text=True, env=env, timeout=240, check=False
    )


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory, sample_images: dict[str, bytes]) -> Path:
    """zidane.jpg and the app's own sample picture: bus.jpg stays out, so one evaluation photo is unseen."""
    folder = tmp_path_factory.mktemp("calib")
    (folder / "zidane.jpg").write_bytes(sample_images["zidane.jpg"])
    (folder / "sample.jpg").write_bytes((ROOT / "assets" / "sample.jpg").read_bytes())
    (folder / "notes.txt").write_text("not a picture, not picked up")
    return folder


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory, fall_model_onnx: Path, calib_dir: Path) -> Path:
    """The fall model's INT8 copy, made as a user makes it: the command, into the model folder."""
    model_dir = tmp_path_factory.mktemp("models")
    r = _run(
        "model", "quantize", str(fall_model_onnx), "--calib", str(calib_dir), "--name", "fall", model_dir=model_dir
    )
    assert r.returncode == 0, r.stderr[-3000:]
    path = model_dir / "fall-int8.onnx"
    assert r.stdout.startswith(f"{path}: int8 from 2 calibration picture(s), "), r.stdout
    return path


@pytest.mark.parametrize("rect", [False, True], ids=["square640", "rect384x640"])
def test_int8_finds_what_fp32_finds(fall_model_onnx: Path, int8_model: Path, sample_images, rect: bool) -> None:
    # The bounds: each fp32 box is paired with an int8 box of the same class, at IoU >= 0.85 when fp32 is
    # confident (>= 0.5) and >= 0.75 below that, with a confidence within 0.1, and a median IoU >= 0.95; a box
    # without a partner must be one that a 0.1 shift may legitimately carry across the 0.25 threshold. For
    # scale, fp32 against itself at 640x640 and at 384x640 on these photos differs by IoU down to 0.75 (on a
    # 0.66 box) and by confidence up to 0.14. Measured for int8 (2026-11-29): median IoU 0.98, worst 0.88 on
    # a confident box and 0.81 on a 0.31 one (people cut by bus.jpg's edges), confidence within 0.07, and
    # one extra box at 0.29.
    conf, slack = 0.25, 0.1
    photos = [sample_images[n] for n in EVAL]
    found = {}
    for path in (fall_model_onnx, int8_model):
        with load_detector({"type": "onnx", "path": str(path), "rect": rect, "conf": conf}) as det:
            found[path] = det.detect([det.prepare(b) for b in photos])
    ious = []
    for name, fp32, int8 in zip(EVAL, found[fall_model_onnx], found[int8_model], strict=True):
        assert fp32, f"fp32 found nothing in {name}: the comparison would prove nothing"
        left = list(int8)
        for d in sorted(fp32, key=lambda d: -d.confidence):
            match = max((e for e in left if e.class_id == d.class_id), key=lambda e: _iou(e.box, d.box), default=None)
            if match is None or _iou(match.box, d.box) < 0.5:
                assert d.confidence < conf + slack, (name, "int8 lost", d, int8)
                continue
            left.remove(match)
            iou = _iou(match.box, d.box)
            assert iou >= (0.85 if d.confidence >= 0.5 else 0.75), (name, d, match, iou)
            assert abs(match.confidence - d.confidence) <= slack, (name, d, match)
            ious.append(iou)
        assert all(e.confidence < conf + slack for e in left), (name, "int8 added", left, fp32)
    assert len(ious) >= 8 and statistics.median(ious) >= 0.95, ious


def test_decode_stays_float_and_the_rest_is_int8(int8_model: Path) -> None:
    graph = onnx.load(str(int8_model)).graph
    producer = {out: n for n in graph.node for out in n.output}
    inits = {i.name: i for i in graph.initializer}
    # The float region: walk back from the output until a tensor comes out of a DequantizeLinear (shape-only
    # inputs are not data). It holds the decode (the class sigmoid, the box distribution's softmax and its
    # fixed 1×1 convolution, the final concat) and the head's last convolutions, and nothing more.
    seen, stack = {}, [producer[graph.output[0].name]]
    while stack:
        node = stack.pop()
        if node.name in seen or node.op_type == "DequantizeLinear":
            continue
        seen[node.name] = node
        if node.op_type != "Shape":
            stack += [producer[i] for i in node.input if i in producer]
    ops = {n.op_type for n in seen.values()}
    assert {"Sigmoid", "Softmax", "Concat"} <= ops and "QuantizeLinear" not in ops
    float_convs = [n for n in seen.values() if n.op_type == "Conv"]
    assert 1 <= len(float_convs) <= 7  # the DFL's, and one box and one class convolution per scale
    assert all(inits[c.input[1]].data_type == onnx.TensorProto.FLOAT for c in float_convs)
    # Everything before them is int8: the convolutions' weights come dequantised from int8 initializers.
    convs = [n for n in graph.node if n.op_type == "Conv"]
    int8_convs = [
        c
        for c in convs
        if c.input[1] in producer
        and producer[c.input[1]].op_type == "DequantizeLinear"
        and inits[producer[c.input[1]].input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert len(int8_convs) >= 0.85 * len(convs), (len(int8_convs), len(convs))
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_int8_model_loads_like_any_other(int8_model: Path, fall_model_onnx: Path) -> None:
    info, source = describe(int8_model), describe(fall_model_onnx)
    assert info["labels"] == ["Normal", "Fall"] and info["imgsz"] == source["imgsz"] == "[640, 640]"
    assert info["input_type"] == "tensor(float)" and info["output_shape"] == source["output_shape"]
    meta = {p.key: p.value for p in onnx.load(str(int8_model), load_external_data=False).metadata_props}
    assert meta["stride"] == "32" and meta["quantization"].startswith("static int8 QDQ, per-channel")
    registry = ModelRegistry(int8_model.parent)
    assert registry.resolve("fall-int8") == int8_model
    assert [p.name for p in int8_model.parent.iterdir()] == ["fall-int8.onnx"]  # no part files, no work folder


def test_bench_compares_two_models(int8_model: Path, fall_model_onnx: Path, calib_dir: Path) -> None:
    r = _run(
        "model",
        "bench",
        "--model",
        str(fall_model_onnx),
        "--against",
        "fall-int8",
        "--batch",
        "1",
        "--seconds",
        "0.2",
        "--rounds",
        "2",
        str(calib_dir / "zidane.jpg"),
        model_dir=int8_model.parent,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.splitlines()[-1]
    assert last.startswith(f"fall-int8 / {fall_model_onnx.stem}, median of 2 alternating rounds: model alone ×")


def test_bad_input_fails_with_a_sentence(
    tmp_path: Path, int8_model: Path, fall_model_onnx: Path, fall_model_pt: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    fake = tmp_path / "fake.onnx"
    fake.write_text("not a model")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "frame.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    cases = [
        ((str(fall_model_onnx), "--calib", str(empty)), f"no calibration images (.jpg, .jpeg, .png) in {empty}"),
        ((str(fall_model_onnx), "--calib", str(tmp_path / "nowhere")), "calibration path not found"),
        ((str(fall_model_onnx), "--calib", str(broken)), "none of the 1 calibration images could be read"),
        ((str(fall_model_onnx), "--max-images", "0"), "max_images must be at least 1, not 0"),
        ((str(fall_model_onnx), "--name", "../x"), "'../x' is not a model name"),
        ((str(fake),), "fake.onnx is not an ONNX model"),
        ((str(fall_model_pt),), "expected a .onnx model (export a .pt first: insane model export PATH.pt)"),
        ((str(int8_model),), "fall-int8.onnx is already quantised"),
        (("no-such-model",), "unknown model 'no-such-model'"),
    ]
    for args, message in cases:
        r = _run("model", "quantize", *args, model_dir=tmp_path / "models")
        assert r.returncode == 1 and message in r.stderr, (args, r.returncode, r.stderr)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def _graph(*nodes, inits=()):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)
    return helper.make_graph(list(nodes), "g", [x], [y], list(inits))


def test_a_graph_without_a_detect_head_is_refused() -> None:
    import numpy as np
    from onnx import helper, numpy_helper

    from core.detect.quantize import QuantizeError, decode_tail

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    no_conv = _graph(helper.make_node("Sigmoid", ["images"], ["output0"]))
    with pytest.raises(QuantizeError, match="without a convolution in between; this is not a YOLOv8"):
        decode_tail(no_conv)
    no_sigmoid = _graph(
        helper.make_node("Conv", ["images", "w"], ["c"]), helper.make_node("Relu", ["c"], ["output0"]), inits=[w]
    )
    with pytest.raises(QuantizeError, match="cannot find a YOLOv8 Detect head"):
        decode_tail(no_sigmoid)
    head = _graph(
        helper.make_node("Conv", ["images", "w"], ["c"], name="last"),
        helper.make_node("Sigmoid", ["c"], ["output0"], name="sig"),
        inits=[w],
    )
    tail, convs = decode_tail(head)
    assert [n.name for n in tail] == ["sig"] and [n.name for n in convs] == ["last"]


def test_default_calibration_is_the_bundled_pictures() -> None:
    from core.detect.quantize import calibration_images

    names = [p.name for p in calibration_images(None)]
    assert names[0] == "sample.jpg"
    assert set(names) <= {"sample.jpg", "bus.jpg", "zidane.jpg"}
