"""What the tray shows for each worker state, and how the GPU item reads."""

from __future__ import annotations

import time

import pytest

from core.protocol import ClassVerdict
from core.worker import MetricsSnapshot, WorkerState
from desktop.status import gpu_choice, is_on_gpu, k_text, look_for, pause_text, status_text, tooltip, verdict_text


def snap(state: WorkerState, detail: str = "", **kw) -> MetricsSnapshot:
    values = dict(
        at=time.time(),
        state=state,
        state_detail=detail,
        images_per_s=12.34,
        events_per_s=0.5,
        latency_ms={"event": {"p50": 120.0, "p95": 300.0, "p99": 400.0}},
        queue_depth={"pro": 2, "standard": 5},
        batch_size=8,
        k={"pro": 64, "standard": 16},
        provider="CPUExecutionProvider",
        model="yolov8n",
        threads=2,
        images_total=100,
        events_total=4,
        errors_total=0,
    )
    values.update(kw)
    return MetricsSnapshot(**values)


@pytest.mark.parametrize("state", list(WorkerState))
def test_every_worker_state_has_its_own_look(state: WorkerState) -> None:
    look = look_for(state)
    assert look.kind == state.value
    assert look.colour.startswith("#")


def test_an_unknown_state_looks_like_an_error() -> None:
    assert look_for("exploded").kind == "error"


def test_status_text_and_tooltip() -> None:
    assert status_text(snap(WorkerState.RUNNING)) == "running · 12.3 img/s · queue 7"
    assert tooltip(snap(WorkerState.PAUSED)).startswith("Insane AI Security: paused")
    err = snap(WorkerState.ERROR, "relay unreachable at http://x: connection refused")
    assert status_text(err) == "error: relay unreachable at http://x: connection refused"


def test_pause_text_follows_state() -> None:
    assert pause_text(WorkerState.PAUSED) == "Resume"
    assert pause_text(WorkerState.RUNNING) == "Pause"
    assert pause_text(WorkerState.IDLE) == "Pause"


def test_gpu_disabled_with_a_reason_on_cpu_only() -> None:
    choice = gpu_choice(["CPUExecutionProvider"])
    assert not choice.enabled
    assert "no GPU" in choice.text
    assert "no GPU execution provider" in choice.reason
    assert choice.cpu == "CPUExecutionProvider"


def test_gpu_that_cannot_load_says_why() -> None:
    why = "CUDA cannot load: libcublasLt.so.12: cannot open shared object file: No such file or directory"
    choice = gpu_choice(["CPUExecutionProvider"], {"CUDAExecutionProvider": why})
    assert not choice.enabled and choice.gpu is None
    assert choice.text == "Use GPU (cannot load)"
    assert choice.reason == why


def test_gpu_prefers_the_engine_order_then_the_workers_own() -> None:
    choice = gpu_choice(["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"])
    assert choice.enabled and choice.gpu == "TensorrtExecutionProvider"
    # A name the engine does not know (e.g. a test's CPU-backed stand-in) still counts as a GPU.
    odd = gpu_choice(["CPUExecutionProvider", "FakeGpuExecutionProvider"])
    assert odd.enabled and odd.gpu == "FakeGpuExecutionProvider"
    assert is_on_gpu("FakeGpuExecutionProvider") and not is_on_gpu("CPUExecutionProvider") and not is_on_gpu("")


def test_verdict_and_k_text() -> None:
    verdict = (
        ClassVerdict(label="person", moments=2, best=0.8, median=0.7),
        ClassVerdict(label="Fall", moments=5, best=0.9, median=0.6),
    )
    assert verdict_text(verdict) == "Fall ×5 (0.90), person ×2 (0.80)"
    assert verdict_text(()) == "nothing seen"
    assert k_text({"standard": 16, "pro": 64}) == "pro 64 · standard 16"


def test_use_gpu_names_the_device_it_finds(monkeypatch) -> None:
    from core.detect import providers

    # An Intel iGPU through onnxruntime-openvino, named from the kernel's DRM devices and pci.ids.
    monkeypatch.setattr(providers, "linux_gpus", lambda: [("Intel", "Intel Iris Xe")])
    monkeypatch.setattr(providers.sys, "platform", "linux")
    providers.device_label.cache_clear()
    try:
        choice = gpu_choice(["OpenVINOExecutionProvider", "OpenVINOCPU", "CPUExecutionProvider"])
    finally:
        providers.device_label.cache_clear()
    assert choice.enabled and choice.gpu == "OpenVINOExecutionProvider"
    assert choice.text == "Use GPU (Intel Iris Xe)"
    assert choice.reason == "run inference on Intel Iris Xe through OpenVINO; off: CPU"
    # OpenVINO's CPU device is not a GPU: alone with the CPU provider there is nothing to switch to.
    assert not gpu_choice(["OpenVINOCPU", "CPUExecutionProvider"]).enabled
    assert not is_on_gpu("OpenVINOCPU")
    named = gpu_choice(["CUDAExecutionProvider", "CPUExecutionProvider"], label=lambda n: "NVIDIA GeForce RTX 3060")
    assert named.text == "Use GPU (NVIDIA GeForce RTX 3060)"


def test_lan_line_says_where_the_api_serves_and_its_rate() -> None:
    from core.lan.service import LanStats
    from desktop.status import lan_line

    assert lan_line(None) == ""
    assert lan_line("http://127.0.0.1:32168", LanStats(0.25, 3, 0, 0)) == "DeepStack API on 127.0.0.1:32168 · 0.2 req/s"
    assert lan_line(None, problem="DeepStack API: cannot listen on 0.0.0.0:80") == (
        "DeepStack API: cannot listen on 0.0.0.0:80"
    )
