"""The system tray icon and its menu: Pause/Resume, Use GPU, Faster (INT8), Open dashboard, Settings, Quit.

tray = Tray()
tray.show_snapshot(snapshot, gpu_choice(worker.available_providers()))
tray.pause_triggered.connect(...)
"""

from __future__ import annotations

import sys
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from desktop.icons import icon_for
from desktop.status import APP_TITLE, GpuChoice, is_on_gpu, look_for, pause_text, status_text, tooltip


class Tray(QObject):
    pause_triggered = Signal()
    gpu_toggled = Signal(bool)
    int8_toggled = Signal(bool)
    dashboard_triggered = Signal()
    settings_triggered = Signal()
    quit_triggered = Signal()

    def __init__(self, parent: QObject | None = None, platform: str | None = None) -> None:
        super().__init__(parent)
        self.platform = platform or sys.platform
        self.icon = QSystemTrayIcon(icon_for("starting"), self)
        self.icon.setToolTip(f"{APP_TITLE}: starting")
        self.kind = "starting"
        menu = QMenu()
        self.menu = menu
        self.status_action = QAction("starting", menu)
        self.status_action.setEnabled(False)
        self.lan_action = QAction("", menu)  # the DeepStack API's address and rate, while it serves
        self.lan_action.setEnabled(False)
        self.lan_action.setVisible(False)
        self.lan_text = ""
        self.pause_action = QAction("Pause", menu)
        self.gpu_action = QAction("Use GPU", menu)
        self.gpu_action.setCheckable(True)
        self.int8_action = QAction("Faster (INT8)", menu)
        self.int8_action.setCheckable(True)
        self.int8_action.setToolTip(
            "Make an INT8 copy of the model calibrated on your recent moments; it is used only if it is "
            "faster on this PC and finds the same boxes"
        )
        self.dashboard_action = QAction("Open dashboard", menu)
        self.settings_action = QAction("Settings…", menu)
        self.quit_action = QAction("Quit", menu)
        menu.addAction(self.status_action)
        menu.addAction(self.lan_action)
        menu.addSeparator()
        for action in (self.pause_action, self.gpu_action, self.int8_action):
            menu.addAction(action)
        menu.addSeparator()
        for action in (self.dashboard_action, self.settings_action):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        menu.setToolTipsVisible(True)  # the GPU item's reason lives in its tooltip
        self.icon.setContextMenu(menu)

        self.pause_action.triggered.connect(self.pause_triggered)
        self.gpu_action.triggered.connect(self.gpu_toggled)
        self.int8_action.triggered.connect(self.int8_toggled)
        self.dashboard_action.triggered.connect(self.dashboard_triggered)
        self.settings_action.triggered.connect(self.settings_triggered)
        self.quit_action.triggered.connect(self.quit_triggered)
        self.icon.activated.connect(self._activated)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if opens_dashboard(reason, self.platform):
            self.dashboard_triggered.emit()

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def show_snapshot(self, snapshot: Any, gpu: GpuChoice) -> None:
        look = look_for(snapshot.state)
        if look.kind != self.kind:
            self.kind = look.kind
            self.icon.setIcon(icon_for(look.kind))
        self.icon.setToolTip(tooltip(snapshot) + (f"\n{self.lan_text}" if self.lan_text else ""))
        self.status_action.setText(status_text(snapshot))
        self.pause_action.setText(pause_text(snapshot.state))
        self.pause_action.setEnabled(look.kind != "stopped")
        self.set_gpu(gpu, is_on_gpu(snapshot.provider) and gpu.enabled)

    def show_lan(self, text: str) -> None:
        """The LAN API's line ('' hides it): shown in the menu under the status and in the tooltip."""
        self.lan_text = text
        self.lan_action.setText(text)
        self.lan_action.setVisible(bool(text))

    def set_gpu(self, gpu: GpuChoice, checked: bool) -> None:
        self.gpu_action.setEnabled(gpu.enabled)
        self.gpu_action.setText(gpu.text)
        self.gpu_action.setToolTip(gpu.reason)
        self.gpu_action.setChecked(checked)

    def set_int8(self, using: bool, busy: bool, said: str | None) -> None:
        """Checked while the INT8 copy is the model; disabled with a note while a trial runs."""
        self.int8_action.setChecked(using)
        self.int8_action.setEnabled(not busy)
        self.int8_action.setText("Faster (INT8): measuring…" if busy else "Faster (INT8)")
        if said:
            self.int8_action.setToolTip(said)

    def notify(self, title: str, message: str, error: bool = True) -> None:
        kind = QSystemTrayIcon.MessageIcon.Warning if error else QSystemTrayIcon.MessageIcon.Information
        self.icon.showMessage(title, message, kind, 15000)


def opens_dashboard(reason: QSystemTrayIcon.ActivationReason, platform: str) -> bool:
    """Whether a click on the icon opens the dashboard.

    Windows and Linux: a left click (Trigger) or double click does; the right click shows the menu by
    itself. macOS: any click opens the menu, and Qt's Cocoa tray reports that click as Trigger too, so
    the dashboard opened each time the menu did; there "Open dashboard" is in the menu.
    """
    reasons = (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick)
    if platform == "darwin":
        return reason == QSystemTrayIcon.ActivationReason.DoubleClick
    return reason in reasons
