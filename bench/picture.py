"""The dashboard's picture pane: what decoding a kept picture costs on the GUI's executor, and its memory.

    python bench/picture.py             # medians of 15 runs per size, one table

A kept picture is the JPEG the worker fetched; the pane decodes it with ``desktop.picture.decode_picture``
(at most 1920 px on the long side, scaled in the JPEG decode). The baseline, measured in the same run,
is Qt's plain full-size decode (``QImage.fromData``). The frames are the dev kit's 1080p sample and the
same picture re-encoded at 4K (quality 90).
"""

from __future__ import annotations

import functools
import io
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image
from PySide6.QtGui import QImage

from desktop.picture import decode_picture
from insane.devkit import models


def median_ms(fn: Callable[[], object], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    frame = models.sample_images()["frame1080.jpg"]
    buffer = io.BytesIO()
    Image.open(io.BytesIO(frame)).resize((3840, 2160)).save(buffer, "JPEG", quality=90)
    print("| frame | JPEG MB | full decode ms | pane decode ms | ratio | pane size | decoded MB (full → pane) |")
    print("|---|---|---|---|---|---|---|")
    for name, data in (("1080p", frame), ("4K", buffer.getvalue())):
        full_ms = median_ms(functools.partial(QImage.fromData, data))
        pane_ms = median_ms(functools.partial(decode_picture, data))
        full, pane = QImage.fromData(data), decode_picture(data)
        print(
            f"| {name} | {len(data) / 1e6:.2f} | {full_ms:.1f} | {pane_ms:.1f} | {pane_ms / full_ms:.2f} "
            f"| {pane.width()}×{pane.height()} | {full.sizeInBytes() / 1e6:.1f} → {pane.sizeInBytes() / 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
