"""core/detect/providers.py: TensorRT → CUDA → CPU, fallbacks through the real onnxruntime, device names."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from core.detect import DetectorError, OnnxConfig, load_detector
from core.detect import providers as prov
from core.detect.onnx_backend import run_bound
from core.detect.preprocess import to_input

# What onnxruntime-gpu's get_available_providers() says on any machine, GPU or not.
ORT_GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
ORT_OPENVINO_BUILD = ["OpenVINOExecutionProvider", "CPUExecutionProvider"]


def test_without_cuda_and_tensorrt_the_gpu_order_ends_on_the_cpu_and_says_why() -> None:
    order, skipped = prov.candidates(None, use_gpu=True, offers=["CPUExecutionProvider"], devices=[])
    assert order == ["CPUExecutionProvider"]
    assert dict(skipped)["TensorrtExecutionProvider"] == "not in this onnxruntime build"
    assert dict(skipped)["CUDAExecutionProvider"] == "not in this onnxruntime build"
    assert [n for n, _ in skipped][:2] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


def test_the_gpu_order_is_tensorrt_then_cuda_then_cpu() -> None:
    order, _ = prov.candidates(None, use_gpu=True, offers=ORT_GPU_BUILD, devices=[])
    assert order == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert prov.candidates(None, use_gpu=False, offers=ORT_GPU_BUILD)[0] == ["CPUExecutionProvider"]
    assert prov.choose(None, True, offers=ORT_GPU_BUILD) == "TensorrtExecutionProvider"
    assert prov.choose(["CUDAExecutionProvider"], True, offers=["CPUExecutionProvider"]) == "CPUExecutionProvider"


def test_openvino_gpu_is_offered_only_where_openvino_sees_a_gpu() -> None:
    on_cpu = prov.available(ORT_OPENVINO_BUILD, devices=["CPU"])
    assert "OpenVINOExecutionProvider" not in on_cpu and "OpenVINOCPU" in on_cpu
    order, skipped = prov.candidates(None, use_gpu=True, offers=ORT_OPENVINO_BUILD, devices=["CPU"])
    assert order == ["CPUExecutionProvider"]
    assert dict(skipped)["OpenVINOExecutionProvider"] == "no GPU device here"
    with_igpu = prov.candidates(None, use_gpu=True, offers=ORT_OPENVINO_BUILD, devices=["CPU", "GPU.0"])[0]
    assert with_igpu == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]


def test_a_detector_asked_for_the_gpu_on_a_cpu_machine_falls_back_to_the_cpu_with_one_line(
    monkeypatch, caplog, yolov8n_onnx: Path, tmp_path: Path
) -> None:
    # onnxruntime-gpu installed where there is no GPU: it offers TensorRT and CUDA, a session asked for them
    # runs on the CPU. Here the CPU build of onnxruntime plays it: the sessions are real.
    monkeypatch.setattr(prov, "offered", lambda: list(ORT_GPU_BUILD))
    caplog.set_level(logging.INFO, logger="core.detect.onnx_backend")
    cfg = OnnxConfig(path=str(yolov8n_onnx), use_gpu=True, threads=1, cache_dir=str(tmp_path / "trt"))
    with load_detector(cfg) as det:
        assert det.provider == "CPUExecutionProvider"
        out = det.detect([det.prepare(_jpeg())])
        assert len(out) == 1
    lines = [r.getMessage() for r in caplog.records if "execution provider:" in r.getMessage()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "execution provider: CPUExecutionProvider" in line
    assert "TensorrtExecutionProvider: onnxruntime fell back to the CPU" in line
    assert "CUDAExecutionProvider: onnxruntime fell back to the CPU" in line
    assert line.index("TensorrtExecutionProvider") < line.index("CUDAExecutionProvider")


def test_cpu_only_says_that_no_gpu_was_asked_for(caplog, yolov8n_onnx: Path) -> None:
    caplog.set_level(logging.INFO, logger="core.detect.onnx_backend")
    with load_detector(OnnxConfig(path=str(yolov8n_onnx), threads=1)) as det:
        assert det.provider == "CPUExecutionProvider"
    assert any("CPUExecutionProvider; no GPU provider was asked for" in r.getMessage() for r in caplog.records)


def test_switching_to_a_provider_that_falls_back_keeps_the_current_one(monkeypatch, yolov8n_onnx: Path) -> None:
    monkeypatch.setattr(prov, "offered", lambda: list(ORT_GPU_BUILD))
    with load_detector(OnnxConfig(path=str(yolov8n_onnx), threads=1)) as det:
        assert "CUDAExecutionProvider" in det.available_providers()
        det.set_provider("CUDAExecutionProvider")
        with pytest.raises(DetectorError, match=r"^onnxruntime fell back to the CPU"):
            det.detect([det.prepare(_jpeg())])
        assert det.provider == "CPUExecutionProvider"
        assert len(det.detect([det.prepare(_jpeg())])) == 1  # still works where it was


def test_io_binding_gives_the_same_output_as_run(yolov8n_onnx: Path) -> None:
    with load_detector(OnnxConfig(path=str(yolov8n_onnx), threads=1, sessions=1)) as det:
        batch = to_input([det.prepare(_jpeg(seed)).tensor for seed in range(3)], det.dtype)
        session = det._sessions[0]
        plain = session.run([det._output_name], {det._input_name: batch})[0]
        bound = run_bound(session, det._input_name, det._output_name, batch)
        assert bound.shape == plain.shape and np.array_equal(bound, plain)
    with load_detector(OnnxConfig(path=str(yolov8n_onnx), threads=1, sessions=1, io_binding=True)) as det:
        assert np.array_equal(det.run(batch), plain)


def _ctx(tmp_path: Path, **kw) -> prov.ProviderContext:
    model = tmp_path / "m.onnx"
    model.touch()
    return prov.ProviderContext(model=model, input_name="images", input_hw=(384, 640), max_batch=64, **kw)


def test_tensorrt_runs_fp16_with_an_engine_cache_and_a_profile_up_to_the_largest_batch(tmp_path: Path) -> None:
    cache = tmp_path / "engines"
    providers, notes = prov.provider_plan("TensorrtExecutionProvider", _ctx(tmp_path, cache_dir=cache))
    name, opts = providers[0]
    assert name == "TensorrtExecutionProvider" and providers[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert opts["trt_fp16_enable"] is True and "trt_int8_enable" not in opts
    assert opts["trt_engine_cache_enable"] is True and opts["trt_engine_cache_path"] == str(cache)
    assert opts["trt_profile_min_shapes"] == "images:1x3x384x640"
    assert opts["trt_profile_max_shapes"] == "images:64x3x384x640"
    assert "fp16" in notes
    fp32 = prov.provider_plan("TensorrtExecutionProvider", _ctx(tmp_path, precision="fp32"))[0][0][1]
    assert fp32["trt_fp16_enable"] is False and "trt_engine_cache_enable" not in fp32


def test_tensorrt_int8_only_where_calibration_data_exists(tmp_path: Path) -> None:
    plain = prov.provider_plan("TensorrtExecutionProvider", _ctx(tmp_path))[0][0][1]
    assert "trt_int8_enable" not in plain
    quantised, notes = prov.provider_plan("TensorrtExecutionProvider", _ctx(tmp_path, quantized=True))
    assert quantised[0][1]["trt_int8_enable"] is True and "INT8 (the model's own quantisation)" in notes
    (tmp_path / "m.calib").write_bytes(b"table")
    table, notes = prov.provider_plan("TensorrtExecutionProvider", _ctx(tmp_path))
    assert table[0][1]["trt_int8_enable"] is True and table[0][1]["trt_int8_calibration_table_name"] == "m.calib"
    assert "INT8 (calibration table m.calib)" in notes
    (tmp_path / "m.calib").unlink()
    forced, notes = prov.provider_plan("TensorrtExecutionProvider", _ctx(tmp_path, precision="int8"))
    assert "trt_int8_enable" not in forced[0][1]
    assert any(n.startswith("no INT8: no calibration data") for n in notes)


def test_openvino_gpu_runs_fp16_and_its_cpu_device_fp32(tmp_path: Path) -> None:
    gpu = prov.provider_plan("OpenVINOExecutionProvider", _ctx(tmp_path, cache_dir=tmp_path))[0]
    assert gpu[0] == (
        "OpenVINOExecutionProvider",
        {"device_type": "GPU", "precision": "FP16", "cache_dir": str(tmp_path)},
    )
    cpu = prov.provider_plan("OpenVINOCPU", _ctx(tmp_path))[0]
    assert cpu == [("OpenVINOExecutionProvider", {"device_type": "CPU"}), "CPUExecutionProvider"]


PCI_IDS = """\
# comment
8086  Intel Corporation
\t9a49  TigerLake-LP GT2 [Iris Xe Graphics]
\t\t1028 0a1f  subsystem line that must not match
\t46a6  Alder Lake-P GT2 [Iris Xe Graphics]
\t56a0  DG2 [Arc A770]
10de  NVIDIA Corporation
\t2504  GA106 [GeForce RTX 3060 Lite Hash Rate]
"""


def _card(root: Path, name: str, vendor: str, device: str) -> None:
    (root / name / "device").mkdir(parents=True)
    (root / name / "device" / "vendor").write_text(vendor + "\n")
    (root / name / "device" / "device").write_text(device + "\n")


def test_gpus_are_named_from_sysfs_and_pci_ids(tmp_path: Path) -> None:
    ids = tmp_path / "pci.ids"
    ids.write_text(PCI_IDS)
    drm = tmp_path / "drm"
    _card(drm, "card0", "0x8086", "0x9a49")
    _card(drm, "card1", "0x8086", "0x56a0")
    _card(drm, "card2", "0x8086", "0x7777")  # not in pci.ids
    (drm / "card0-HDMI-A-1").mkdir()  # a connector
    assert prov.pci_name("0x8086", "0x9a49", [ids]) == "Iris Xe Graphics"
    assert prov.linux_gpus(drm, [ids]) == [
        ("Intel", "Intel Iris Xe"),
        ("Intel", "Intel Arc A770"),
        ("Intel", "Intel 0x7777"),
    ]
    assert prov.linux_gpus(tmp_path / "nothing", [ids]) == []


def test_nvidia_gpus_come_from_the_drivers_proc_files(tmp_path: Path) -> None:
    gpu = tmp_path / "0000:01:00.0"
    gpu.mkdir()
    (gpu / "information").write_text("Model: \t NVIDIA GeForce RTX 3060\nIRQ: 130\n")
    assert prov.nvidia_gpus(tmp_path) == ["NVIDIA GeForce RTX 3060"]


def test_cpu_names_have_no_device_label() -> None:
    assert prov.device_label("CPUExecutionProvider") is None and prov.device_label("OpenVINOCPU") is None
    assert prov.device_label("DmlExecutionProvider") == "DirectML"
    assert prov.is_cpu("OpenVINOCPU") and not prov.is_cpu("OpenVINOExecutionProvider")


def _jpeg(seed: int = 0) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), np.uint8), (9, 9), 0)
    return cv2.imencode(".jpg", frame)[1].tobytes()
