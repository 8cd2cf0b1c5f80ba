"""A small line chart drawn with QPainter (PySide6-Essentials has no QtCharts).

chart = LineChart("Latency", "ms", [Series("latency_p50:event", "p50", "#3b7dd8"), ...])
chart.set_history(history)         # a desktop.history.MetricsHistory; repaints
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop.history import MetricsHistory, nice_ceiling


@dataclass(frozen=True)
class Series:
    key: str  # a MetricsHistory series name
    label: str
    colour: str


def format_value(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


class LineChart(QWidget):
    def __init__(self, title: str, unit: str, series: list[Series], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self.series = series
        self._history: MetricsHistory | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 120)

    def sizeHint(self) -> QSize:
        return QSize(360, 160)

    def set_history(self, history: MetricsHistory) -> None:
        self._history = history
        self.update()

    def latest(self) -> dict[str, float]:
        """The newest value of each series (what the legend shows), by key."""
        out: dict[str, float] = {}
        if self._history is not None:
            for s in self.series:
                points = self._history.series(s.key)
                if points:
                    out[s.key] = points[-1][1]
        return out

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        try:
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        pal = self.palette()
        text = pal.windowText().color()
        grid = QColor(text)
        grid.setAlpha(40)
        p.fillRect(self.rect(), pal.base())
        font = QFont(self.font())
        metrics = p.fontMetrics()
        line_h = metrics.height()

        # Title and legend with the latest values on the first line.
        font.setBold(True)
        p.setFont(font)
        p.setPen(text)
        p.drawText(QPointF(6, line_h), f"{self.title} ({self.unit})")
        x = 12 + p.fontMetrics().horizontalAdvance(f"{self.title} ({self.unit})")
        font.setBold(False)
        p.setFont(font)
        latest = self.latest()
        for s in self.series:
            label = f"{s.label} {format_value(latest[s.key])}" if s.key in latest else s.label
            p.fillRect(QRectF(x, line_h * 0.45, 10, 4), QColor(s.colour))
            p.drawText(QPointF(x + 14, line_h), label)
            x += 24 + metrics.horizontalAdvance(label)

        plot = QRectF(44, line_h + 10, max(10, self.width() - 52), max(10, self.height() - line_h - 18))
        points = {s.key: self._history.series(s.key) if self._history else [] for s in self.series}
        top = nice_ceiling(max((v for pts in points.values() for _, v in pts), default=0.0))

        # Grid: four horizontal lines with their values on the left.
        p.setPen(QPen(grid, 1))
        for i in range(5):
            y = plot.bottom() - plot.height() * i / 4
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(text)
            p.drawText(
                QRectF(0, y - line_h / 2, plot.left() - 4, line_h),
                int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                format_value(top * i / 4),
            )
            p.setPen(QPen(grid, 1))

        if self._history is None or not len(self._history):
            p.setPen(text)
            p.drawText(plot, int(Qt.AlignmentFlag.AlignCenter), "waiting for metrics…")
            return
        newest = self._history.latest()[0]  # type: ignore[index]
        span = self._history.span_s
        for s in self.series:
            pts = points[s.key]
            if not pts:
                continue
            path = QPainterPath()
            for i, (t, v) in enumerate(pts):
                px = plot.right() - plot.width() * min(1.0, (newest - t) / span)
                py = plot.bottom() - plot.height() * min(1.0, v / top)
                if i == 0:
                    path.moveTo(px, py)
                else:
                    path.lineTo(px, py)
            p.setPen(QPen(QColor(s.colour), 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawPath(path)
