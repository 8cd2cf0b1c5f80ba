"""The tray and window icons, drawn with QPainter: a camera lens whose colour and mark show the state.

icon_for("paused")                 # QIcon with 16..256 px renditions
draw_icon("running", 64)           # QImage, also written to assets/icons/ by assets/make_icons.py
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

from desktop.status import KINDS, Look, look_for

SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def draw_icon(kind: str, size: int) -> QImage:
    """One rendition: a rounded square in the state's colour, a lens ring, and the state's mark."""
    look: Look = look_for(kind)
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    try:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        s = float(size)
        body = QRectF(s * 0.04, s * 0.04, s * 0.92, s * 0.92)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(look.colour))
        p.drawRoundedRect(body, s * 0.22, s * 0.22)
        # The lens: a white ring, readable at 16 px.
        ring = max(1.5, s * 0.09)
        p.setPen(QPen(QColor("white"), ring))
        p.setBrush(Qt.BrushStyle.NoBrush)
        lens = QRectF(s * 0.2, s * 0.2, s * 0.6, s * 0.6)
        p.drawEllipse(lens)
        _draw_mark(p, look.kind, lens.center(), s)
    finally:
        p.end()
    return image


def _draw_mark(p: QPainter, kind: str, c: QPointF, s: float) -> None:
    white = QBrush(QColor("white"))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(white)
    r = s * 0.15
    if kind == "running":  # a play triangle
        p.drawPolygon(
            QPolygonF(
                [QPointF(c.x() - r * 0.7, c.y() - r), QPointF(c.x() - r * 0.7, c.y() + r), QPointF(c.x() + r, c.y())]
            )
        )
    elif kind == "paused":  # two bars
        w = r * 0.6
        p.drawRect(QRectF(c.x() - r * 0.9, c.y() - r, w, 2 * r))
        p.drawRect(QRectF(c.x() + r * 0.3, c.y() - r, w, 2 * r))
    elif kind == "error":  # an exclamation mark
        p.drawRect(QRectF(c.x() - r * 0.22, c.y() - r * 1.1, r * 0.44, r * 1.35))
        p.drawEllipse(QPointF(c.x(), c.y() + r * 0.85), r * 0.25, r * 0.25)
    elif kind == "idle":  # the pupil: watching, nothing to do
        p.drawEllipse(c, r * 0.7, r * 0.7)
    else:  # starting / stopped: a hollow dot
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor("white"), max(1.0, s * 0.05)))
        path = QPainterPath()
        path.addEllipse(c, r * 0.6, r * 0.6)
        p.drawPath(path)


@cache
def icon_for(kind: str) -> QIcon:
    """The state's icon at every tray size (cached: drawn once per state and process)."""
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(QPixmap.fromImage(draw_icon(kind, size)))
    return icon


def app_icon() -> QIcon:
    return icon_for("idle")


__all__ = ["KINDS", "SIZES", "app_icon", "draw_icon", "icon_for"]
