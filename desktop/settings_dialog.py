"""The Settings window: relay URL, enrollment, model, CPU threads, start at login.

It edits values and asks for actions; it writes nothing itself. :mod:`desktop.controller` validates and
saves (config file, keyring, autostart entry) and answers with :meth:`SettingsDialog.show_result`.

    dialog = SettingsDialog(values, models=["yolov8n", "fall-yolov8s"], enrolled=True)
    dialog.save_requested.connect(lambda changes: ...)      # {"relay_url": ..., "worker_threads": ...}
    dialog.enroll_requested.connect(lambda url, code: ...)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.status import APP_TITLE

EDITABLE = ("relay_url", "model", "worker_threads", "start_at_login")


class SettingsDialog(QDialog):
    save_requested = Signal(dict)
    enroll_requested = Signal(str, str)  # relay URL, one-time code
    import_requested = Signal(str)  # a model file's path

    def __init__(
        self,
        values: Mapping[str, Any],
        models: Sequence[str] = (),
        enrolled: bool = False,
        parent: QWidget | None = None,
        log_file: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{APP_TITLE} — settings")
        form = QFormLayout()

        self.relay_url = QLineEdit(str(values.get("relay_url", "")))
        self.relay_url.setPlaceholderText("https://relay.example.com")
        form.addRow("Relay URL", self.relay_url)

        self.code = QLineEdit()
        self.code.setPlaceholderText("one-time code from the relay's web page")
        self.enroll_button = QPushButton("Enroll")
        self.enroll_status = QLabel()
        row = QHBoxLayout()
        row.addWidget(self.code, 1)
        row.addWidget(self.enroll_button)
        form.addRow("Enrollment", row)
        form.addRow("", self.enroll_status)
        self.set_enrolled(enrolled)

        self.model = QComboBox()
        self.model.setEditable(True)
        self.set_models(models, str(values.get("model", "")))
        self.import_button = QPushButton("Import…")
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        row.addWidget(self.import_button)
        form.addRow("Model", row)

        self.threads = QSpinBox()
        self.threads.setRange(1, max(256, os.cpu_count() or 1))
        self.threads.setValue(int(values.get("worker_threads", os.cpu_count() or 1)))
        self.threads.setSuffix(f" of {os.cpu_count() or 1} CPU threads")
        form.addRow("Inference", self.threads)

        self.start_at_login = QCheckBox("Start when I log in")
        self.start_at_login.setChecked(bool(values.get("start_at_login", False)))
        form.addRow("", self.start_at_login)

        # Where the app's log is: the file it writes when it has no console (desktop/logfile.py).
        self.log_location = QLabel(str(log_file) if log_file else "the terminal it was started from")
        self.log_location.setWordWrap(True)
        self.log_location.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Log", self.log_location)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

        self.enroll_button.clicked.connect(self._enroll)
        self.import_button.clicked.connect(self._import)
        self.buttons.accepted.connect(self._save)
        self.buttons.rejected.connect(self.reject)

    def values(self) -> dict[str, Any]:
        return {
            "relay_url": self.relay_url.text().strip(),
            "model": self.model.currentText().strip(),
            "worker_threads": self.threads.value(),
            "start_at_login": self.start_at_login.isChecked(),
        }

    def set_models(self, models: Sequence[str], current: str) -> None:
        self.model.clear()
        names = list(dict.fromkeys([*models, current] if current else models))
        self.model.addItems(names)
        self.model.setCurrentText(current)

    def set_enrolled(self, enrolled: bool) -> None:
        self.enroll_status.setText(
            "this PC is enrolled; a new code replaces its token" if enrolled else "not enrolled yet"
        )

    def show_result(self, ok: bool, message: str) -> None:
        """The answer to a save, an enrollment or an import, as one sentence under the form."""
        colour = "#2e7d32" if ok else "#c62828"
        self.message.setStyleSheet(f"color: {colour}")
        self.message.setText(message)

    def _enroll(self) -> None:
        code = self.code.text().strip()
        if not code:
            self.show_result(False, "paste the one-time code first")
            return
        self.enroll_requested.emit(self.relay_url.text().strip(), code)

    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model", "", "ONNX models (*.onnx);;All files (*)")
        if path:
            self.import_requested.emit(path)

    def _save(self) -> None:
        self.save_requested.emit(self.values())
