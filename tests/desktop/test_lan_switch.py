"""The tray's DeepStack API switch: Settings turns it on (address, key), an NVR's client gets answers from
the tray's own worker, the tray shows where it serves and the rate; off closes the port."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import tomllib
from pathlib import Path

import pytest
from deepstack import core as ds

from core.settings import load_settings
from desktop.controller import Controller
from desktop.tokens import TokenStore
from insane.devkit import models
from insane.devkit.client import enroll_worker
from tests.desktop.qtasync import run_qt, until

pytestmark = pytest.mark.slow


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_settings_switch_serves_the_api_and_the_tray_shows_it(
    qtbot, qapp, relay, shipped_fall_onnx: Path, app_env: Path, artifacts: Path
) -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("the bus photo ships with Ultralytics (the export extra)")
    bus = models.sample_images()["bus.jpg"]
    TokenStore().save(relay.url, enroll_worker(relay.url).secret)
    settings = load_settings(
        relay_url=relay.url, model=str(shipped_fall_onnx), worker_threads=1, worker_lease_wait_s=1.0
    )
    controller = Controller(settings, use_tray=True)
    tray = controller.tray
    qtbot.addWidget(controller.dashboard)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        controller.show()
        assert await controller.start()
        assert controller.lan is None and not tray.lan_action.isVisible()

        controller.open_settings()
        dialog = controller.settings_dialog
        assert not dialog.lan_address.isEnabled()  # off: nothing to edit
        dialog.serve_deepstack.setChecked(True)
        dialog.lan_address.setText("127.0.0.1:0")  # any free port, on this PC only
        dialog.lan_key.setText("k-123")
        worker = controller.worker
        dialog.buttons.accepted.emit()
        await until(lambda: controller.lan is not None, what="the API to serve")
        assert controller.worker is worker  # only the API started; the worker kept running
        port = controller.lan.port

        client = ds.DeepstackObject(ip="127.0.0.1", port=port, api_key="k-123", min_confidence=0.4)
        preds = await loop.run_in_executor(None, client.detect, bus)
        assert len(preds) >= 2 and {p["label"] for p in preds} == {"Normal"}
        wrong = ds.DeepstackObject(ip="127.0.0.1", port=port, api_key="nope")
        with pytest.raises(ds.DeepstackException, match="401"):
            await loop.run_in_executor(None, wrong.detect, bus)

        # The next snapshot (about a second) shows the two requests' rate.
        await until(lambda: not tray.lan_action.text().endswith(" 0.0 req/s"), what="the tray's request rate")
        text = tray.lan_action.text()
        assert tray.lan_action.isVisible()
        assert text.startswith(f"DeepStack API on 127.0.0.1:{port} · ") and text.endswith(" req/s")
        assert text in tray.icon.toolTip() and controller.dashboard.lan_label.text() == text
        controller.dashboard.grab().save(str(artifacts / "dashboard-deepstack-api.png"))

        dialog.serve_deepstack.setChecked(False)
        dialog.buttons.accepted.emit()
        await until(lambda: controller.lan is None and not tray.lan_action.isVisible(), what="the API to stop")
        assert refused(port)
        controller.request_quit()
        await asyncio.wait_for(controller.finished(), 60)

    run_qt(qapp, scenario())
    saved = tomllib.loads(app_env.read_text())
    assert "serve_deepstack" not in saved and saved["deepstack_api_key"] == "k-123"  # kept for the next time
    assert load_settings().serve_deepstack is None


def test_a_port_in_use_is_shown_not_raised(qtbot, qapp, relay, shipped_fall_onnx: Path, app_env: Path) -> None:
    TokenStore().save(relay.url, enroll_worker(relay.url).secret)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        settings = load_settings(
            relay_url=relay.url, model=str(shipped_fall_onnx), worker_threads=1, serve_deepstack=f"127.0.0.1:{busy}"
        )
        controller = Controller(settings, use_tray=True)
        qtbot.addWidget(controller.dashboard)
        notes: list[tuple[str, str]] = []
        controller.notified.connect(lambda title, message: notes.append((title, message)))

        async def scenario() -> None:
            controller.show()
            assert await controller.start()  # the worker runs; the API could not start
            assert controller.lan is None
            assert notes and notes[-1][0] == "DeepStack API" and f"cannot listen on 127.0.0.1:{busy}" in notes[-1][1]
            controller._show(controller.worker.snapshot())
            assert controller.tray.lan_action.text() == notes[-1][1]
            controller.request_quit()
            await asyncio.wait_for(controller.finished(), 60)

        run_qt(qapp, scenario())
