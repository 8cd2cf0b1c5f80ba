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


def test_faster_int8_measures_switches_and_goes_back(qtbot, qapp, relay, tenant, app_env: Path, monkeypatch) -> None:
    pytest.importorskip("ultralytics", reason="the fp32 export of the fall model needs the export extra")
    import json

    import cv2
    import numpy as np

    from core.detect import int8
    from insane.devkit import models
    from insane.devkit.client import enroll_worker

    cache = models.test_cache()
    fp32 = models.export_onnx(models.fall_model_pt(cache), cache, 640)
    model_dir = app_env.parent / "models"
    TokenStore().save(relay.url, enroll_worker(relay.url).secret)
    monkeypatch.setenv("INSANE_MODEL_DIR", str(model_dir))
    settings = load_settings(relay_url=relay.url, model=str(fp32), worker_threads=1)
    # The switch itself is under test here: whatever this machine's A/B says about speed, agreeing boxes win.
    monkeypatch.setattr(int8, "MIN_SPEEDUP", 0.0)
    controller = Controller(settings, use_tray=True)
    tray = controller.tray
    qtbot.addWidget(controller.dashboard)
    photos = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in models.sample_images().values()]

    async def post(i: int) -> None:
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        crop = img[(i * 29) % (h // 5) :, (i * 41) % (w // 5) :]
        event = {"camera": f"cam{i % 3}", "time": "2026-01-01T00:00:00Z"}
        files = [("event", (None, json.dumps(event), "application/json"))]
        files += [("moment", ("m.jpg", cv2.imencode(".jpg", crop)[1].tobytes(), "image/jpeg"))]
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(f"{relay.url}/v1/events", files=files, headers=tenant.headers)
        assert r.status_code == 202, r.text

    async def scenario() -> None:
        controller.show()
        assert await controller.start()
        controller.open_settings()
        dialog = controller.settings_dialog
        assert dialog.int8_status.text().startswith("not tried yet")
        assert not tray.int8_action.isChecked()
        # Too early: the worker has none of the user's moments yet.
        dialog.int8_button.click()
        await asyncio.wait_for(controller._int8_task, 60)
        assert "let it review a few more events first" in dialog.int8_status.text()
        for i in range(int8.MIN_MOMENTS + 2):
            await post(i)
        await until(lambda: controller.last.events_total >= int8.MIN_MOMENTS + 2, 180, "the events to be reviewed")
        started = asyncio.Event()
        controller.worker_started.connect(started.set)
        dialog.int8_button.click()
        await until(lambda: not tray.int8_action.isEnabled(), what="the trial to start")
        trial = await asyncio.wait_for(controller._int8_task, 600)
        assert trial is not None and trial.moments == int8.MIN_MOMENTS + 2 and trial.median_iou >= 0.95
        assert trial.use and trial.source_model == str(fp32)
        await asyncio.wait_for(started.wait(), 120)  # the worker was rebuilt on the INT8 copy
        assert controller.settings.model == trial.int8 == f"{fp32.stem}-int8"
        assert load_settings().model == trial.int8  # saved for the next start
        assert controller.worker.detector.model_name == trial.int8
        assert tray.int8_action.isChecked() and tray.int8_action.isEnabled()
        assert dialog.int8_status.text() == trial.message == int8.load_trial(model_dir, fp32.stem).message
        # Unchecking it goes back to the model it came from (here a path, not a name).
        started.clear()
        tray.int8_action.trigger()
        await asyncio.wait_for(controller._int8_task, 120)
        await asyncio.wait_for(started.wait(), 120)
        assert controller.settings.model == str(fp32) and not tray.int8_action.isChecked()
        assert dialog.int8_status.text() == trial.message  # Settings still says what the trial found
        controller.request_quit()
        await asyncio.wait_for(controller.finished(), 60)

    run_qt(qapp, scenario())


def test_enrolling_a_dedicated_worker_saves_its_tenant(
    qtbot, qapp, relay, tenant, shipped_fall_onnx: Path, app_env: Path
) -> None:
    """The tenant a dedicated code names is saved with the token, so the worker honours that tenant's
    private-host allow-list (its own cameras on the LAN) and keeps its pictures."""
    settings = load_settings(
        relay_url=relay.url, model=str(shipped_fall_onnx), worker_threads=1, worker_lease_wait_s=1.0
    )
    controller = Controller(settings, use_tray=False)
    qtbot.addWidget(controller.dashboard)
    code = httpx.post(
        f"{relay.url}/admin/enroll-codes", json={"tenant": tenant.id}, headers=admin_headers(), timeout=30
    ).json()["code"]

    async def scenario() -> None:
        controller.show()
        controller.open_settings()
        started = asyncio.Event()
        controller.worker_started.connect(started.set)
        assert await controller.enroll(relay.url, code)
        await asyncio.wait_for(started.wait(), 120)
        assert str(controller.settings.worker_dedicated_tenant) == tenant.id
        assert str(controller.worker._pictures.policy.dedicated_tenant) == tenant.id
        controller.request_quit()
        await asyncio.wait_for(controller.finished(), 60)

    run_qt(qapp, scenario())
    assert str(load_settings().worker_dedicated_tenant) == tenant.id  # in the config file the tray wrote
