"""The Settings window: relay URL, enrollment, model (and its INT8 trial), CPU threads, start at login, the
DeepStack API, others' pictures.

It edits values and asks for actions; it writes nothing itself. :mod:`desktop.controller` validates and
saves (config file, keyring, autostart entry) and answers with :meth:`SettingsDialog.show_result`.

    dialog = SettingsDialog(values, models=["yolov8n", "fall-yolov8s"], enrolled=True)
    dialog.save_requested.connect(lambda changes: ...)      # {"relay_url": ..., "worker_threads": ...}
    dialog.enroll_requested.connect(lambda url, code: ...)
    dialog.int8_requested.connect(lambda: ...)                # "Faster (INT8)": try an INT8 copy here
    dialog.set_int8_status("not tried yet")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr
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

EDITABLE = (
    "relay_url",
    "model",
    "worker_threads",
    "start_at_login",
    "serve_deepstack",
    "deepstack_api_key",
    "worker_pictures_other_tenants",
)
DEFAULT_LAN_ADDRESS = "127.0.0.1:32168"  # CodeProject.AI's port, on this PC only until the user names a host


def _secret(value: Any) -> str:
    if value is None:
        return ""
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


class SettingsDialog(QDialog):
    save_requested = Signal(dict)
    enroll_requested = Signal(str, str)  # relay URL, one-time code
    import_requested = Signal(str)  # a model file's path
    int8_requested = Signal()

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

        self.int8_button = QPushButton("Faster (INT8)")
        self.int8_button.setToolTip(
            "Make an INT8 copy of this model calibrated on your recent moments, measure it against the "
            "model on this PC, and use it only if it is faster and finds the same boxes"
        )
        self.int8_status = QLabel("not tried yet")
        self.int8_status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.int8_status, 1)
        row.addWidget(self.int8_button)
        form.addRow("INT8", row)

        # Bounded by what this PC has: more threads than cores only makes inference slower.
        cores = os.cpu_count() or 1
        saved = int(values.get("worker_threads", cores))
        self.threads = QSpinBox()
        self.threads.setRange(1, cores)
        self.threads.setValue(min(max(saved, 1), cores))
        self.threads.setSuffix(f" of {cores} CPU threads")
        hint = f"default: {cores}, every thread this PC has"
        if saved > cores:
            hint += f" (the saved {saved} is more than it has)"
        self.threads_hint = QLabel(hint)
        form.addRow("Inference", self.threads)
        form.addRow("", self.threads_hint)

        self.start_at_login = QCheckBox("Start when I log in")
        self.start_at_login.setChecked(bool(values.get("start_at_login", False)))
        form.addRow("", self.start_at_login)

        # The DeepStack / CodeProject.AI API for NVRs (Blue Iris, Agent DVR, Home Assistant, Frigate).
        address = values.get("serve_deepstack")
        self.serve_deepstack = QCheckBox("Serve the DeepStack / CodeProject.AI API to NVRs")
        self.serve_deepstack.setChecked(bool(address))
        self.lan_address = QLineEdit(str(address or DEFAULT_LAN_ADDRESS))
        self.lan_address.setPlaceholderText(f"{DEFAULT_LAN_ADDRESS} (this PC), or 0.0.0.0:32168 (the LAN)")
        key = values.get("deepstack_api_key")
        self.lan_key = QLineEdit(_secret(key))
        self.lan_key.setPlaceholderText("optional: a key the NVR must send")
        self.lan_key.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        form.addRow("DeepStack API", self.serve_deepstack)
        form.addRow("Address", self.lan_address)
        form.addRow("Key", self.lan_key)
        self.serve_deepstack.toggled.connect(self._lan_toggled)
        self._lan_toggled(self.serve_deepstack.isChecked())
        self.other_pictures = QCheckBox("Show other tenants' pictures in the dashboard")
        self.other_pictures.setChecked(bool(values.get("worker_pictures_other_tenants", False)))
        self.other_pictures.setToolTip(
            "A shared worker reviews every tenant's events; their pictures stay out of this dashboard unless "
            "this is on. A worker dedicated to a tenant always shows that tenant's."
        )
        form.addRow("Privacy", self.other_pictures)
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
        self.int8_button.clicked.connect(self.int8_requested)
        self.buttons.accepted.connect(self._save)
        self.buttons.rejected.connect(self.reject)

    def values(self) -> dict[str, Any]:
        return {
            "relay_url": self.relay_url.text().strip(),
            "model": self.model.currentText().strip(),
            "worker_threads": self.threads.value(),
            "start_at_login": self.start_at_login.isChecked(),
            "serve_deepstack": self.lan_address.text().strip() if self.serve_deepstack.isChecked() else None,
            "deepstack_api_key": self.lan_key.text() or None,
            "worker_pictures_other_tenants": self.other_pictures.isChecked(),
        }

    def _lan_toggled(self, on: bool) -> None:
        self.lan_address.setEnabled(on)
        self.lan_key.setEnabled(on)

    def set_models(self, models: Sequence[str], current: str) -> None:
        self.model.clear()
        names = list(dict.fromkeys([*models, current] if current else models))
        self.model.addItems(names)
        self.model.setCurrentText(current)

    def set_enrolled(self, enrolled: bool) -> None:
        self.enroll_status.setText(
            "this PC is enrolled; a new code replaces its token" if enrolled else "not enrolled yet"
        )

    def set_int8_status(self, text: str, busy: bool = False) -> None:
        """What the last INT8 trial of this model found (or that one is running)."""
        self.int8_status.setText(text)
        self.int8_button.setEnabled(not busy)

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
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Import a model",
            "",
            "Models (*.onnx *.pt);;ONNX models (*.onnx);;Ultralytics checkpoints (*.pt);;All files (*)",
        )
        if path:
            self.import_requested.emit(path)

    def _save(self) -> None:
        self.save_requested.emit(self.values())
