"""The chaos run's pictures: small real photos, and a poison one that kills the worker decoding it.

images = sample_jpegs(320, 240)    # 4 JPEGs, the Ultralytics samples resized, each a little different
bad = poison_jpeg(images[1])       # still a valid JPEG; faultworker dies on its POISON_MARK
"""

from __future__ import annotations

import cv2
import numpy as np

from insane.devkit import models

POISON_MARK = b"INSANE-CHAOS-POISON-2f1c9a"


def sample_jpegs(width: int, height: int, n: int = 4) -> list[bytes]:
    """Small real photos (the Ultralytics samples, resized), a few variants so blobs differ."""
    photos = models.sample_images()
    out = []
    for i, name in enumerate(["bus.jpg", "zidane.jpg"] * ((n + 1) // 2)):
        decoded = cv2.imdecode(np.frombuffer(photos[name], np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None  # the Ultralytics samples decode
        img = cv2.resize(decoded, (width, height), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70 + i])
        assert ok
        out.append(buf.tobytes())
    return out[:n]


def poison_jpeg(good: bytes) -> bytes:
    """A valid JPEG (the relay accepts it) carrying the marker in a comment segment."""
    comment = b"\xff\xfe" + (len(POISON_MARK) + 2).to_bytes(2, "big") + POISON_MARK
    return good[:2] + comment + good[2:]
