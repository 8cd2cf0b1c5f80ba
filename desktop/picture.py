"""A moment's picture with its detections drawn on it, scaled to fit the widget.

view = MomentView()
view.set_moment(jpeg_bytes, detections)   # core.protocol.Detection boxes, in the image's pixels
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from core.protocol import Detection

_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


def colour_for(class_id: int) -> QColor:
    return QColor(_PALETTE[class_id % len(_PALETTE)])


class MomentView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._detections: tuple[Detection, ...] = ()
        self._message = "select an event to see a moment"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 150)

    def sizeHint(self) -> QSize:
        return QSize(400, 260)

    @property
    def detections(self) -> tuple[Detection, ...]:
        return self._detections

    def has_image(self) -> bool:
        return not self._image.isNull()

    def set_moment(self, data: bytes, detections: Sequence[Detection]) -> bool:
        """Show a JPEG with its boxes; False (and a message instead) when it cannot be decoded."""
        image = QImage.fromData(data)
        self._image = image
        self._detections = tuple(detections) if not image.isNull() else ()
        self._message = "" if not image.isNull() else "this picture could not be decoded"
        self.update()
        return not image.isNull()

    def clear(self, message: str) -> None:
        self._image = QImage()
        self._detections = ()
        self._message = message
        self.update()

    def image_rect(self) -> QRectF:
        """Where the picture lands in the widget (scaled to fit, centred)."""
        if self._image.isNull():
            return QRectF()
        scale = min(self.width() / self._image.width(), self.height() / self._image.height())
        w, h = self._image.width() * scale, self._image.height() * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        try:
            p.fillRect(self.rect(), QColor("#202020"))
            if self._image.isNull():
                p.setPen(QColor("#c0c0c0"))
                p.drawText(self.rect(), int(Qt.AlignmentFlag.AlignCenter), self._message)
                return
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            target = self.image_rect()
            p.drawImage(target, self._image)
            scale = target.width() / self._image.width()
            metrics = p.fontMetrics()
            for det in self._detections:
                x1, y1, x2, y2 = det.box
                box = QRectF(
                    target.left() + x1 * scale, target.top() + y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale
                )
                colour = colour_for(det.class_id)
                p.setPen(QPen(colour, 2))
                p.drawRect(box)
                label = f"{det.label} {det.confidence:.2f}"
                tag = QRectF(
                    box.left(),
                    max(target.top(), box.top() - metrics.height()),
                    metrics.horizontalAdvance(label) + 6,
                    metrics.height(),
                )
                p.fillRect(tag, colour)
                p.setPen(QColor("white"))
                p.drawText(tag, int(Qt.AlignmentFlag.AlignCenter), label)
        finally:
            p.end()
