"""The dashboard window: the same controls as the tray menu, live charts, figures, recent events.

It only draws what it is given and emits what the user asked for; :mod:`desktop.controller` connects
it to the worker.

    dash = Dashboard()
    dash.show_snapshot(snapshot, gpu_choice(worker.available_providers()))
    dash.pause_clicked.connect(...)
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QImage
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.charts import LineChart, Series
from desktop.history import MetricsHistory
from desktop.icons import icon_for
from desktop.picture import MomentView
from desktop.status import APP_TITLE, GpuChoice, is_on_gpu, k_text, look_for, pause_text, status_text, verdict_text

LANE_COLOURS = {"pro": "#d0342c", "standard": "#3b7dd8"}
END_TO_END = "event"  # the worker's latency stage from lease to stored result
EVENT_COLUMNS = ("Done", "Camera", "Lane", "K", "Verdict", "Latency")


class Dashboard(QMainWindow):
    pause_clicked = Signal()
    gpu_toggled = Signal(bool)
    settings_clicked = Signal()
    quit_clicked = Signal()
    event_selected = Signal(object)  # an EventSummary
    closed = Signal()

    def __init__(self, history: MetricsHistory | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{APP_TITLE} — dashboard")
        self.setWindowIcon(icon_for("idle"))
        self.history = history or MetricsHistory()
        self.quit_on_close = False  # set where the window is the only UI (no system tray)
        self._recent: tuple[Any, ...] = ()

        root = QWidget()
        outer = QVBoxLayout(root)

        # Controls: the tray menu's items, so the window alone is enough where no tray exists.
        controls = QHBoxLayout()
        self.state_label = QLabel("starting")
        self.state_label.setObjectName("state")
        self.pause_button = QPushButton("Pause")
        self.gpu_box = QCheckBox("Use GPU")
        self.settings_button = QPushButton("Settings…")
        self.quit_button = QPushButton("Quit")
        controls.addWidget(self.state_label, 1)
        self.lan_label = QLabel("")  # the DeepStack API's address and rate, while it serves
        self.lan_label.setObjectName("lan")
        self.lan_label.setVisible(False)
        controls.addWidget(self.lan_label)
        for w in (self.pause_button, self.gpu_box, self.settings_button, self.quit_button):
            controls.addWidget(w)
        outer.addLayout(controls)
        self.pause_button.clicked.connect(self.pause_clicked)
        self.gpu_box.clicked.connect(self.gpu_toggled)
        self.settings_button.clicked.connect(self.settings_clicked)
        self.quit_button.clicked.connect(self.quit_clicked)

        # Figures.
        figures = QGridLayout()
        self.figures: dict[str, QLabel] = {}
        names = ("provider", "model", "threads", "batch size", "K", "images", "events", "errors")
        for i, name in enumerate(names):
            label = QLabel("—")
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.figures[name] = label
            figures.addWidget(QLabel(f"{name}:"), i // 4, (i % 4) * 2)
            figures.addWidget(label, i // 4, (i % 4) * 2 + 1)
        outer.addLayout(figures)

        # Charts.
        charts = QHBoxLayout()
        self.throughput_chart = LineChart(
            "Throughput",
            "per s",
            [Series("images_per_s", "images", "#2e9d4f"), Series("events_per_s", "events", "#911eb4")],
        )
        self.latency_chart = LineChart(
            "Latency",
            "ms",
            [
                Series(f"latency_p50:{END_TO_END}", "p50", "#3b7dd8"),
                Series(f"latency_p95:{END_TO_END}", "p95", "#d99a1e"),
            ],
        )
        self.queue_chart = LineChart(
            "Queue depth", "events", [Series(f"queue:{lane}", lane, colour) for lane, colour in LANE_COLOURS.items()]
        )
        for chart in self.charts():
            chart.set_history(self.history)
            charts.addWidget(chart)
        outer.addLayout(charts, 2)

        # Recent events and the selected one's picture.
        split = QSplitter(Qt.Orientation.Horizontal)
        self.events_table = QTableWidget(0, len(EVENT_COLUMNS))
        self.events_table.setHorizontalHeaderLabels(EVENT_COLUMNS)
        self.events_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.events_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.events_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.events_table.verticalHeader().setVisible(False)
        self.events_table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.events_table.itemSelectionChanged.connect(self._selection_changed)
        self.picture = MomentView()
        split.addWidget(self.events_table)
        split.addWidget(self.picture)
        split.setSizes([600, 400])
        outer.addWidget(split, 3)

        self.setCentralWidget(root)
        self.resize(1100, 720)

    def charts(self) -> tuple[LineChart, LineChart, LineChart]:
        return (self.throughput_chart, self.latency_chart, self.queue_chart)

    def show_snapshot(self, snapshot: Any, gpu: GpuChoice) -> None:
        self.history.add(snapshot)
        look = look_for(snapshot.state)
        self.setWindowIcon(icon_for(look.kind))
        self.state_label.setText(status_text(snapshot))
        self.pause_button.setText(pause_text(snapshot.state))
        self.pause_button.setEnabled(look.kind not in ("stopped",))
        self.set_gpu(gpu, is_on_gpu(snapshot.provider) and gpu.enabled)
        f = self.figures
        f["provider"].setText(snapshot.provider.removesuffix("ExecutionProvider") or "—")
        f["model"].setText(snapshot.model or "—")
        f["threads"].setText(str(snapshot.threads))
        f["batch size"].setText(str(snapshot.batch_size))
        f["K"].setText(k_text(snapshot.k))
        f["images"].setText(str(snapshot.images_total))
        f["events"].setText(str(snapshot.events_total))
        f["errors"].setText(str(snapshot.errors_total))
        if snapshot.recent != self._recent:
            self._show_recent(snapshot.recent)
        for chart in self.charts():
            chart.update()

    def show_lan(self, text: str) -> None:
        self.lan_label.setText(text)
        self.lan_label.setVisible(bool(text))

    def set_gpu(self, gpu: GpuChoice, checked: bool) -> None:
        self.gpu_box.setEnabled(gpu.enabled)
        self.gpu_box.setText(gpu.text)
        self.gpu_box.setToolTip(gpu.reason)
        self.gpu_box.setChecked(checked)

    def _show_recent(self, recent: tuple[Any, ...]) -> None:
        selected = self.selected_event()
        self._recent = recent
        table = self.events_table
        table.blockSignals(True)
        try:
            newest_first = sorted(recent, key=lambda e: -e.done_at)
            table.setRowCount(len(newest_first))
            for row, ev in enumerate(newest_first):
                cells = (
                    time.strftime("%H:%M:%S", time.localtime(ev.done_at)),
                    ev.camera,
                    ev.lane + (" (back-fill)" if ev.backfill else ""),
                    str(ev.k),
                    verdict_text(ev.verdict),
                    f"{ev.latency_s:.2f} s",
                )
                for col, text in enumerate(cells):
                    item = QTableWidgetItem(text)
                    item.setData(Qt.ItemDataRole.UserRole, ev)
                    table.setItem(row, col, item)
                if selected is not None and ev.event_id == selected.event_id:
                    table.selectRow(row)
        finally:
            table.blockSignals(False)

    def show_picture(self, picture: Any, image: QImage) -> None:
        """A selected event's best moment (a core MomentPicture), already decoded into ``image``."""
        selected = self.selected_event()
        if selected is not None and picture.event_id == selected.event_id:
            self.picture.set_picture(image, (picture.width, picture.height), picture.detections)

    def recent_rows(self) -> list[list[str]]:
        """The table's text, row by row (for tests and for copying)."""
        t = self.events_table
        return [
            [item.text() if (item := t.item(r, c)) is not None else "" for c in range(t.columnCount())]
            for r in range(t.rowCount())
        ]

    def selected_event(self) -> Any | None:
        items = self.events_table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def _selection_changed(self) -> None:
        event = self.selected_event()
        if event is not None:
            self.event_selected.emit(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        # With a tray, closing the window only hides it; without one, closing it is Quit.
        if self.quit_on_close:
            event.ignore()
            self.quit_clicked.emit()
            return
        self.closed.emit()
        super().closeEvent(event)
