"""The tray app's controller and widgets, offscreen, against a real worker and a real relay.

Enrollment through the Settings flow, Pause stops leasing and Resume continues, the GPU item (disabled
with a reason, then switching to a CPU-backed stand-in provider), the dashboard following the worker's
metrics, and a Quit that leaves no task or thread behind.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.detect import providers
from core.settings import load_settings
from core.worker import WorkerState
from desktop.controller import Controller
from desktop.selftest import sample_path
from desktop.tokens import TokenStore
from insane.devkit.client import admin_headers
from tests.desktop.qtasync import run_qt, until

pytestmark = pytest.mark.slow


def native_threads() -> set[int]:
    return {int(p.name) for p in Path("/proc/self/task").iterdir()} if Path("/proc/self/task").is_dir() else set()


def enroll_code(relay_url: str) -> str:
    r = httpx.post(f"{relay_url}/admin/enroll-codes", json={"tenant": None}, headers=admin_headers(), timeout=30)
    r.raise_for_status()
    return r.json()["code"]


async def post_upload(relay_url: str, tenant, camera: str) -> str:
    import json

    event = {"camera": camera, "time": "2026-01-01T00:00:00Z", "moments": []}
    files = [
        ("event", (None, json.dumps(event), "application/json")),
        ("moment", ("m0.jpg", sample_path().read_bytes(), "image/jpeg")),
    ]
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{relay_url}/v1/events", files=files, headers=tenant.headers)
    assert r.status_code in (200, 201, 202), r.text
    return r.json()["id"]


async def event_status(relay_url: str, tenant, event_id: str) -> dict:
    async with httpx.AsyncClient(timeout=30, headers=tenant.headers) as client:
        return (await client.get(f"{relay_url}/v1/events/{event_id}")).json()


def test_tray_drives_a_real_worker(
    qtbot, qapp, relay, tenant, shipped_fall_onnx: Path, app_env: Path, monkeypatch
) -> None:
    settings = load_settings(
        relay_url=relay.url,
        model=str(shipped_fall_onnx),
        worker_threads=1,
        worker_lease_wait_s=1.0,
        tray_alert_after_s=600,
    )
    threads_before = {t.ident for t in threading.enumerate()}
    native_before = native_threads()
    controller = Controller(settings, use_tray=True)
    dash, tray = controller.dashboard, controller.tray
    assert tray is not None
    qtbot.addWidget(dash)
    snapshots = []
    controller.snapshot_changed.connect(snapshots.append)

    async def scenario() -> None:
        controller.show()
        # Not enrolled yet: an error state that says what to do, and no worker.
        assert await controller.start() is False
        assert controller.last.state == WorkerState.ERROR and "not enrolled" in controller.last.state_detail
        assert tray.kind == "error"

        # Enrollment through the Settings window: the token lands in the keyring and the worker starts.
        controller.open_settings()
        dialog = controller.settings_dialog
        dialog.code.setText(enroll_code(relay.url))
        started = asyncio.Event()
        controller.worker_started.connect(started.set)
        dialog.enroll_button.click()
        await asyncio.wait_for(started.wait(), 120)
        assert TokenStore().load(relay.url)
        assert "enrolled" in dialog.message.text()
        worker = controller.worker
        assert worker is not None

        # The GPU item on a machine without a GPU provider: disabled, with the reason.
        if not any(providers.PROVIDERS[p][0] != "CPUExecutionProvider" for p in worker.available_providers()):
            assert not tray.gpu_action.isEnabled() and "no GPU" in tray.gpu_action.toolTip()
            assert not dash.gpu_box.isEnabled()

        # Pause from the tray menu: the worker stops leasing.
        await until(lambda: worker.state in (WorkerState.IDLE, WorkerState.RUNNING), what="worker idle")
        tray.pause_action.trigger()
        assert worker.state == WorkerState.PAUSED and tray.pause_action.text() == "Resume"
        # A long-poll already in flight may still bring work (it is finished, not dropped): let it end.
        seen = len(snapshots)
        await until(lambda: len(snapshots) >= seen + 2, what="the in-flight long-poll to end")
        paused_event = await post_upload(relay.url, tenant, "while-paused")
        seen = len(snapshots)
        await until(lambda: len(snapshots) >= seen + 3, what="three snapshots while paused")  # ~3 lease rounds
        assert worker.snapshot().events_total == 0
        assert (await event_status(relay.url, tenant, paused_event))["status"] != "done"

        # Resume from the dashboard's own button: the event is reviewed, and the dashboard shows it.
        dash.pause_button.click()
        await until(lambda: controller.last.events_total >= 1, 120, "the paused event to be reviewed")
        assert (await event_status(relay.url, tenant, paused_event))["status"] == "done"
        await until(lambda: dash.figures["events"].text() == "1", what="dashboard events figure")
        assert dash.recent_rows()[0][1] == "while-paused"
        assert dash.figures["model"].text() == controller.last.model == shipped_fall_onnx.stem
        assert dash.history.series("images_per_s")

        # A CPU-backed stand-in for a GPU provider: the item enables and switches between batches.
        monkeypatch.setitem(providers.PROVIDERS, "StandInGpuExecutionProvider", ("CPUExecutionProvider", {}))
        controller._show(worker.snapshot())
        assert tray.gpu_action.isEnabled() and not tray.gpu_action.isChecked()
        tray.gpu_action.trigger()  # checks it: Use GPU on
        gpu_event = await post_upload(relay.url, tenant, "on-gpu")
        await until(lambda: controller.last.events_total >= 2, 120, "the second event")
        assert (await event_status(relay.url, tenant, gpu_event))["provider"] == "StandInGpuExecutionProvider"
        await until(lambda: dash.figures["provider"].text() == "StandInGpu", what="provider shown")
        assert tray.gpu_action.isChecked() and dash.gpu_box.isChecked()
        assert load_settings().use_gpu is True  # the choice is kept for the next start

        # Quit from the tray menu: the worker drains and stops; nothing of ours keeps running.
        tray.quit_action.trigger()
        await asyncio.wait_for(controller.finished(), 60)
        assert worker.state == WorkerState.STOPPED
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not others, others

    run_qt(qapp, scenario())
    # Python threads (decode pool, executors) and native ones (onnxruntime's pools, Qt's) alike.
    leftover = [
        t.name
        for t in threading.enumerate()
        if t.ident not in threads_before and not isinstance(t, threading._DummyThread)
    ]
    assert not leftover, leftover
    # QThread.wait() returns before the OS thread is fully gone: give the kernel a bounded moment.
    deadline = time.monotonic() + 10
    while native_threads() - native_before and time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.05)
    assert not native_threads() - native_before, "native threads left running after Quit"


def test_settings_round_trip(qtbot, qapp, relay, shipped_fall_onnx: Path, app_env: Path) -> None:
    from insane.devkit.client import enroll_worker

    TokenStore().save(relay.url, enroll_worker(relay.url).secret)
    settings = load_settings(
        relay_url=relay.url, model=str(shipped_fall_onnx), worker_threads=1, worker_lease_wait_s=1.0
    )
    controller = Controller(settings, use_tray=False)
    qtbot.addWidget(controller.dashboard)

    async def scenario() -> None:
        controller.show()
        assert await controller.start()
        controller.open_settings()
        dialog = controller.settings_dialog
        assert "this PC is enrolled" in dialog.enroll_status.text()
        assert dialog.values()["relay_url"] == relay.url
        dialog.threads.setValue(2)
        dialog.start_at_login.setChecked(True)
        restarted = asyncio.Event()
        controller.worker_started.connect(restarted.set)
        dialog.buttons.accepted.emit()  # Save: threads changed, so the worker is rebuilt
        await asyncio.wait_for(restarted.wait(), 120)
        assert dialog.message.text().startswith("saved")
        assert controller.last.threads == 2
        # A bad value is refused with the setting's own message, and nothing is written.
        dialog.relay_url.setText("ftp://nope")
        dialog.buttons.accepted.emit()
        await until(lambda: "must start with http" in dialog.message.text(), what="the refusal")
        controller.request_quit()
        await asyncio.wait_for(controller.finished(), 60)

    run_qt(qapp, scenario())
    reread = load_settings()  # from the config file the dialog wrote
    assert reread.worker_threads == 2 and reread.start_at_login is True and reread.relay_url == relay.url
    assert "token" not in app_env.read_text()  # the secret lives only in the keyring
    assert TokenStore().load(relay.url)
    entry = app_env.parent / "autostart" / "insane-ai-security.desktop"
    assert "tray" in entry.read_text()
