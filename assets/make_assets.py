"""Regenerate the app's own assets: state icons (PNG) and the self-test's sample picture (JPEG).

    python assets/make_assets.py

Everything here is drawn by this script (no third-party images): the icons by desktop.icons, the
sample by OpenCV (a yard at dusk with a figure on the ground, 640×360).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def make_icons() -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    from desktop.icons import KINDS, draw_icon

    _app = QGuiApplication.instance() or QGuiApplication([])
    written = []
    for kind in KINDS:
        for size in (32, 256):
            path = HERE / "icons" / f"{kind}-{size}.png"
            path.parent.mkdir(exist_ok=True)
            if not draw_icon(kind, size).save(str(path)):
                raise OSError(f"could not write {path}")
            written.append(path)
    return written


def make_sample() -> Path:
    import cv2
    import numpy as np

    h, w = 360, 640
    img = np.zeros((h, w, 3), np.uint8)
    for y in range(h):  # sky to lawn
        t = y / h
        img[y] = (120 + 80 * t, 110 + 40 * t, 90 - 30 * t) if y < 200 else (40, 110 - 20 * t, 50)
    cv2.rectangle(img, (420, 90), (600, 200), (70, 80, 120), -1)  # a shed
    cv2.rectangle(img, (480, 140), (520, 200), (40, 40, 60), -1)
    # A figure lying on the lawn: head, body, legs.
    cv2.circle(img, (200, 262), 16, (140, 170, 220), -1)
    cv2.ellipse(img, (270, 268), (60, 18), 5, 0, 360, (160, 60, 40), -1)
    cv2.line(img, (325, 275), (390, 285), (60, 50, 40), 10)
    cv2.line(img, (325, 270), (392, 266), (60, 50, 40), 10)
    cv2.putText(img, "CAM 1  sample", (12, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    path = HERE / "sample.jpg"
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise OSError("JPEG encoding failed")
    path.write_bytes(data.tobytes())
    return path


if __name__ == "__main__":
    for p in [*make_icons(), make_sample()]:
        print(p.relative_to(HERE.parent), p.stat().st_size, "bytes")
