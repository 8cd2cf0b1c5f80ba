"""core/detect/precision.py: the float16 copy CUDA runs; made once, float32 at its edges, the same boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.detect import OnnxConfig, load_detector
from core.detect import providers as prov
from core.detect.precision import fp16_copy

onnx = pytest.importorskip("onnx", reason="the fp16 copy needs the onnx package (the export extra)")


def test_the_copy_has_half_weights_float_edges_and_is_made_once(yolov8n_onnx: Path, tmp_path: Path) -> None:
    copy = fp16_copy(yolov8n_onnx, tmp_path)
    assert copy.parent == tmp_path and copy.name.startswith("yolov8n-random-640x640-dyn-") and copy.suffix == ".onnx"
    model = onnx.load(str(copy))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kinds = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}  # convolution weights
    assert kinds == {onnx.TensorProto.FLOAT16}
    stamp = copy.stat().st_mtime_ns
    assert fp16_copy(yolov8n_onnx, tmp_path) == copy and copy.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.part"))


def test_the_half_copy_finds_the_same_boxes(fall_model_onnx: Path, sample_images: dict[str, bytes], tmp_path) -> None:
    copy = fp16_copy(fall_model_onnx, tmp_path)
    with (
        load_detector(OnnxConfig(path=str(fall_model_onnx), threads=2, imgsz=(384, 640))) as full,
        load_detector(OnnxConfig(path=str(copy), threads=2, imgsz=(384, 640))) as half,
    ):
        assert half.dtype == np.float32  # the detector feeds it as before
        found = 0
        for data in sample_images.values():
            a = full.detect([full.prepare(data)])[0]
            b = half.detect([half.prepare(data)])[0]
            strong = [d for d in a if d.confidence > 0.4]
            found += len(strong)
            for d in strong:
                best = max((e for e in b if e.label == d.label), key=lambda e: _iou(d.box, e.box))
                assert _iou(d.box, best.box) > 0.95 and abs(best.confidence - d.confidence) < 0.03
        assert found >= 3


def test_only_cuda_with_a_float32_unquantised_model_gets_the_copy(tmp_path: Path) -> None:
    ctx = prov.ProviderContext(model=tmp_path / "m.onnx")
    assert prov.wants_fp16_copy("CUDAExecutionProvider", ctx)
    assert not prov.wants_fp16_copy("TensorrtExecutionProvider", ctx)  # TensorRT makes its own fp16 engine
    assert not prov.wants_fp16_copy("CPUExecutionProvider", ctx)
    for other in (
        prov.ProviderContext(model=ctx.model, precision="fp32"),
        prov.ProviderContext(model=ctx.model, quantized=True),
        prov.ProviderContext(model=ctx.model, float32=False),
    ):
        assert not prov.wants_fp16_copy("CUDAExecutionProvider", other)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
