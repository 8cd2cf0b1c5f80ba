"""The controller tells the user when a GPU provider cannot load, and why, instead of running on the CPU quietly.

A real worker with the real model on this CPU build of onnxruntime. What a CUDA build on a PC without
CUDA reports comes in at the seam ``desktop.controller.load_problems`` (the loader's own message is
tested against real libraries in tests/core/test_provider_load.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.settings import load_settings
from desktop.controller import Controller
from tests.desktop.qtasync import run_qt

WHY = (
    "CUDA cannot load: libcublasLt.so.12: cannot open shared object file: No such file or directory "
    "(onnxruntime-gpu 1.26.0 needs the CUDA 12 runtime and cuDNN 9 for CUDA 12; running on the CPU)"
)


@pytest.mark.parametrize("use_gpu", [True, False])
def test_a_gpu_that_cannot_load_is_named_with_its_reason(
    qtbot, qapp, shipped_fall_onnx: Path, app_env: Path, monkeypatch: pytest.MonkeyPatch, use_gpu: bool
) -> None:
    monkeypatch.setattr("desktop.controller.load_problems", lambda: {"CUDAExecutionProvider": WHY})
    settings = load_settings(
        relay_url="http://127.0.0.1:9",  # nothing listens: the worker only needs to start
        worker_token="iw_test",
        model=str(shipped_fall_onnx),
        worker_threads=1,
        use_gpu=use_gpu,
    )
    controller = Controller(settings, use_tray=False)
    qtbot.addWidget(controller.dashboard)
    notes: list[tuple[str, str]] = []
    controller.notified.connect(lambda title, message: notes.append((title, message)))

    async def scenario() -> None:
        assert await controller.start()
        assert controller.worker is not None and controller.worker.detector.provider == "CPUExecutionProvider"
        controller.request_quit()
        await asyncio.wait_for(controller.finished(), 60)

    run_qt(qapp, scenario())
    box = controller.dashboard.gpu_box
    assert box.text() == "Use GPU (cannot load)" and not box.isEnabled()
    assert box.toolTip() == WHY
    # Asked for the GPU: a notification says why it is on the CPU. Not asked: no message.
    assert (("Use GPU", WHY) in notes) is use_gpu
