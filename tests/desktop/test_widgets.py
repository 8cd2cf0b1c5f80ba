"""The widgets, offscreen: what they show for a snapshot, and screenshots for review."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QSystemTrayIcon

from core.protocol import ClassVerdict, Detection
from core.worker import EventSummary, WorkerState
from desktop.dashboard import Dashboard
from desktop.icons import KINDS, draw_icon
from desktop.picture import MomentView, colour_for
from desktop.selftest import sample_path
from desktop.settings_dialog import SettingsDialog
from desktop.status import gpu_choice
from desktop.tray import Tray
from tests.desktop.test_status import snap

CPU_ONLY = gpu_choice(["CPUExecutionProvider"])


def recent_events(n: int = 3) -> tuple[EventSummary, ...]:
    now = time.time()
    return tuple(
        EventSummary(
            event_id=uuid.uuid4(),
            camera=f"cam{i}",
            lane="pro" if i % 2 else "standard",
            k=4 + i,
            verdict=(ClassVerdict(label="Fall", moments=i + 1, best=0.9, median=0.8),) if i else (),
            done_at=now - 10 * i,
            latency_s=0.5 + i,
        )
        for i in range(n)
    )


def test_icons_differ_per_state(qapp) -> None:
    images = {kind: draw_icon(kind, 32) for kind in KINDS}
    centre_colours = {kind: QColor(img.pixel(3, 16)).name() for kind, img in images.items()}
    assert len({centre_colours[k] for k in ("running", "idle", "paused", "error")}) == 4


def test_dashboard_follows_a_snapshot(qtbot, artifacts: Path) -> None:
    dash = Dashboard()
    qtbot.addWidget(dash)
    t0 = time.time()
    for i in range(60):
        dash.show_snapshot(
            snap(
                WorkerState.RUNNING,
                at=t0 + i,
                images_per_s=10 + i % 7,
                queue_depth={"pro": i % 5, "standard": 20 - i % 9},
                latency_ms={"event": {"p50": 100 + i, "p95": 250 + 2 * i, "p99": 400}},
                recent=recent_events(),
            ),
            CPU_ONLY,
        )
    assert dash.figures["provider"].text() == "CPU"
    assert dash.figures["batch size"].text() == "8"
    assert dash.figures["K"].text() == "pro 64 · standard 16"
    assert dash.pause_button.text() == "Pause"
    assert not dash.gpu_box.isEnabled()
    assert "no GPU execution provider" in dash.gpu_box.toolTip()
    assert dash.latency_chart.latest() == {"latency_p50:event": 159.0, "latency_p95:event": 368.0}
    assert dash.queue_chart.latest()["queue:standard"] == 20 - 59 % 9
    rows = dash.recent_rows()
    assert [r[1] for r in rows] == ["cam0", "cam1", "cam2"]  # newest first
    assert rows[1][4] == "Fall ×2 (0.90)" and rows[0][4] == "nothing seen"

    dash.show()
    qtbot.waitExposed(dash)
    assert dash.grab().save(str(artifacts / "dashboard-offscreen.png"))

    dash.show_snapshot(snap(WorkerState.PAUSED, at=t0 + 61), CPU_ONLY)
    assert dash.pause_button.text() == "Resume"
    assert dash.state_label.text().startswith("paused")


def test_selecting_an_event_emits_it(qtbot) -> None:
    dash = Dashboard()
    qtbot.addWidget(dash)
    events = recent_events()
    dash.show_snapshot(snap(WorkerState.IDLE, recent=events), CPU_ONLY)
    with qtbot.waitSignal(dash.event_selected) as blocker:
        dash.events_table.selectRow(2)
    assert blocker.args[0] == events[2]
    # A new snapshot with the same events keeps the selection.
    dash.show_snapshot(snap(WorkerState.IDLE, recent=events), CPU_ONLY)
    assert dash.selected_event() == events[2]


def test_moment_view_draws_boxes(qtbot, artifacts: Path) -> None:
    view = MomentView()
    qtbot.addWidget(view)
    view.resize(640, 360)  # the sample's own size: scale 1
    det = Detection(label="Fall", class_id=1, confidence=0.87, box=(180.0, 240.0, 400.0, 295.0))
    assert view.set_moment(sample_path().read_bytes(), [det])
    image: QImage = view.grab().toImage()
    assert QColor(image.pixel(290, 294)) == colour_for(1)  # on the box's bottom edge
    assert image.save(str(artifacts / "moment-boxes.png"))
    assert not view.set_moment(b"not a jpeg", [det])
    assert view.detections == () and not view.has_image()


def test_tray_menu_follows_state(qtbot) -> None:
    tray = Tray()
    igpu = gpu_choice(["OpenVINOExecutionProvider", "CPUExecutionProvider"], label=lambda name: "Intel Iris Xe")
    tray.show_snapshot(snap(WorkerState.PAUSED), igpu)
    assert tray.pause_action.text() == "Resume"
    assert tray.gpu_action.isEnabled() and not tray.gpu_action.isChecked()
    assert tray.gpu_action.text() == "Use GPU (Intel Iris Xe)"
    assert tray.icon.toolTip().startswith("Insane AI Security: paused")
    tray.show_snapshot(snap(WorkerState.ERROR, "relay unreachable"), CPU_ONLY)
    assert tray.kind == "error"
    assert tray.gpu_action.text() == "Use GPU (no GPU found)" and not tray.gpu_action.isEnabled()
    assert [a.text() for a in tray.menu.actions() if a.text()][-3:] == ["Open dashboard", "Settings…", "Quit"]
    with qtbot.waitSignal(tray.quit_triggered):
        tray.quit_action.trigger()
    assert isinstance(tray.icon, QSystemTrayIcon)


def test_settings_dialog_reports_values(qtbot, artifacts: Path, monkeypatch) -> None:
    monkeypatch.setattr("desktop.settings_dialog.os.cpu_count", lambda: 4)
    dialog = SettingsDialog(
        {"relay_url": "https://r.example", "model": "fall-yolov8s", "worker_threads": 2, "start_at_login": False},
        models=["yolov8n", "fall-yolov8s"],
    )
    qtbot.addWidget(dialog)
    assert dialog.threads.maximum() == 4 and dialog.threads.value() == 2
    assert dialog.threads.suffix() == " of 4 CPU threads"
    assert dialog.threads_hint.text() == "default: 4, every thread this PC has"
    dialog.threads.setValue(9)  # more than the machine has: the box stops at what it has
    assert dialog.threads.value() == 4
    dialog.threads.setValue(3)
    dialog.start_at_login.setChecked(True)
    with qtbot.waitSignal(dialog.save_requested) as blocker:
        dialog.buttons.accepted.emit()
    assert blocker.args[0] == {
        "relay_url": "https://r.example",
        "model": "fall-yolov8s",
        "worker_threads": 3,
        "start_at_login": True,
        "serve_deepstack": None,  # the DeepStack API is off unless the user turns it on
        "deepstack_api_key": None,
        "worker_pictures_other_tenants": False,  # off unless the operator turns it on
    }
    assert not dialog.lan_address.isEnabled() and dialog.lan_address.text() == "127.0.0.1:32168"
    dialog.serve_deepstack.setChecked(True)
    dialog.lan_address.setText(" 0.0.0.0:32168 ")
    dialog.lan_key.setText("k")
    with qtbot.waitSignal(dialog.save_requested) as blocker:
        dialog.buttons.accepted.emit()
    assert (blocker.args[0]["serve_deepstack"], blocker.args[0]["deepstack_api_key"]) == ("0.0.0.0:32168", "k")
    with qtbot.assertNotEmitted(dialog.enroll_requested):
        dialog.enroll_button.click()
    assert "paste the one-time code" in dialog.message.text()
    dialog.code.setText("CODE-1234")
    with qtbot.waitSignal(dialog.enroll_requested) as blocker:
        dialog.enroll_button.click()
    assert blocker.args == ["https://r.example", "CODE-1234"]
    dialog.show()
    dialog.set_int8_status("using INT8: 1.80× the speed of fp32 on this PC, boxes agree at a median IoU of 0.97")
    qtbot.waitExposed(dialog)
    assert dialog.grab().save(str(artifacts / "settings-offscreen.png"))


def test_settings_dialog_bounds_a_saved_thread_count_and_offers_int8(qtbot, monkeypatch) -> None:
    monkeypatch.setattr("desktop.settings_dialog.os.cpu_count", lambda: 2)
    dialog = SettingsDialog({"relay_url": "https://r.example", "model": "m", "worker_threads": 6})
    qtbot.addWidget(dialog)
    assert dialog.threads.value() == 2 and dialog.values()["worker_threads"] == 2
    assert dialog.threads_hint.text() == "default: 2, every thread this PC has (the saved 6 is more than it has)"
    assert dialog.int8_status.text() == "not tried yet"
    with qtbot.waitSignal(dialog.int8_requested):
        dialog.int8_button.click()
    dialog.set_int8_status("measuring", busy=True)
    assert not dialog.int8_button.isEnabled() and dialog.int8_status.text() == "measuring"
    dialog.set_int8_status("not using INT8, it is not faster here: 0.93×")
    assert dialog.int8_button.isEnabled()


def test_tray_int8_item(qtbot) -> None:
    tray = Tray()
    texts = [a.text() for a in tray.menu.actions() if a.text()]
    assert texts.index("Faster (INT8)") == texts.index("Use GPU") + 1
    tray.set_int8(False, busy=True, said="measuring")
    assert not tray.int8_action.isEnabled() and tray.int8_action.text() == "Faster (INT8): measuring…"
    tray.set_int8(True, busy=False, said="using INT8: 1.80×")
    assert tray.int8_action.isChecked() and tray.int8_action.isEnabled()
    assert tray.int8_action.toolTip() == "using INT8: 1.80×"
    with qtbot.waitSignal(tray.int8_toggled) as blocker:
        tray.int8_action.trigger()  # unchecks it: back to fp32
    assert blocker.args == [False]


@pytest.mark.parametrize(
    ("platform", "reason", "opens"),
    [
        ("win32", QSystemTrayIcon.ActivationReason.Trigger, True),
        ("linux", QSystemTrayIcon.ActivationReason.Trigger, True),
        ("win32", QSystemTrayIcon.ActivationReason.Context, False),
        # macOS reports the click that opens the menu as Trigger: it must not also open the dashboard.
        ("darwin", QSystemTrayIcon.ActivationReason.Trigger, False),
        ("darwin", QSystemTrayIcon.ActivationReason.DoubleClick, True),
    ],
)
def test_tray_click_opens_the_dashboard_except_the_menu_click_on_macos(
    qtbot, platform: str, reason: QSystemTrayIcon.ActivationReason, opens: bool
) -> None:
    tray = Tray(platform=platform)
    seen: list[bool] = []
    tray.dashboard_triggered.connect(lambda: seen.append(True))
    tray.icon.activated.emit(reason)
    assert seen == ([True] if opens else [])
