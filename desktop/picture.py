"""A moment's picture with its detections drawn on it, scaled to fit the widget.

    image = decode_picture(picture.image)     # any thread: a QImage is data, not a widget
    view = MomentView()
    view.set_picture(image, (picture.width, picture.height), picture.detections)   # the GUI thread only
    view.set_moment(jpeg_bytes, detections)   # both at once, on the GUI thread (small pictures, tests)

Boxes are core.protocol.Detection boxes, in the pixels of the image the detector saw (EXIF orientation
applied), whatever size the picture is decoded at.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from core.protocol import Detection
from core.worker import PicturePolicy

MAX_SIDE = 1920  # a picture is decoded no larger than this: a 4K frame shown in a pane needs no more

_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


def colour_for(class_id: int) -> QColor:
    return QColor(_PALETTE[class_id % len(_PALETTE)])


def decode_picture(data: bytes, max_side: int = MAX_SIDE) -> QImage:
    """The image in ``data``, oriented as its EXIF says, at most ``max_side`` pixels on its long side (a
    large JPEG is scaled while it is decoded). A null QImage when it cannot be decoded. Thread-safe."""
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer)
    reader.setAutoTransform(True)  # as the detector did: its boxes are in the oriented image's pixels
    size = reader.size()  # as stored, before the orientation: the scaled size is given in the same terms
    if size.isValid() and max(size.width(), size.height()) > max_side:
        scale = max_side / max(size.width(), size.height())
        reader.setScaledSize(QSize(max(1, round(size.width() * scale)), max(1, round(size.height() * scale))))
    image = reader.read()
    buffer.close()
    return image


def no_picture_text(tenant_id: UUID | None, policy: PicturePolicy | None) -> str:
    """Why the pane shows no picture for an event: no worker, the privacy setting, or none kept."""
    if policy is None:
        return "the worker is not running: no pictures are kept"
    if tenant_id is not None and not policy.allows(tenant_id):
        whose = "this worker is shared" if policy.dedicated_tenant is None else "this is another tenant's event"
        return f"{whose}: other tenants' pictures are kept only when Settings allow it"
    return "no picture kept for this event: only recent events' are kept, and only moments that were reviewed"


class MomentView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._source = QSize()  # the size the boxes' pixels refer to
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

    @property
    def message(self) -> str:
        """What the pane says when it shows no picture."""
        return self._message

    def set_moment(self, data: bytes, detections: Sequence[Detection]) -> bool:
        """Decode a JPEG (here, on the GUI thread) and show it with its boxes; False (and a message instead)
        when it cannot be decoded."""
        image = decode_picture(data)
        return self.set_picture(image, (image.width(), image.height()), detections)

    def set_picture(self, image: QImage, source_size: tuple[int, int], detections: Sequence[Detection]) -> bool:
        """Show a decoded picture with its boxes, given in ``source_size`` pixels (the image the detector
        saw; ``image`` may be a scaled copy). False (and a message instead) for a null image."""
        self._image = image
        self._source = QSize(*source_size) if min(source_size) > 0 else image.size()
        self._detections = tuple(detections) if not image.isNull() else ()
        self._message = "" if not image.isNull() else "this picture could not be decoded"
        self.update()
        return not image.isNull()

    def clear(self, message: str) -> None:
        self._image = QImage()
        self._source = QSize()
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
                flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
                p.drawText(self.rect().adjusted(12, 12, -12, -12), int(flags), self._message)
                return
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            target = self.image_rect()
            p.drawImage(target, self._image)
            sx = target.width() / self._source.width()
            sy = target.height() / self._source.height()
            metrics = p.fontMetrics()
            for det in self._detections:
                x1, y1, x2, y2 = det.box
                box = QRectF(target.left() + x1 * sx, target.top() + y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy)
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
