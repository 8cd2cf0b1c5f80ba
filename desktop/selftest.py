"""``insane tray --self-test``: the installers' smoke test.

It starts Qt (offscreen where no display exists), draws the icons, loads the configured model, runs one
inference on the bundled sample picture, prints what it found and exits 0; any failure prints one line
and exits 1.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from core.settings import Settings

SAMPLE_NAME = "sample.jpg"
CANDIDATE_FLOOR = 0.05


def _describe(det) -> str:
    return f"{det.label} {det.confidence:.2f} [{', '.join(f'{v:.0f}' for v in det.box)}]"


def sample_path() -> Path:
    """The bundled sample: next to the package in a source tree, under ``_MEIPASS`` in a PyInstaller bundle."""
    roots = [Path(getattr(sys, "_MEIPASS", "")), Path(__file__).resolve().parent.parent]
    for root in roots:
        path = root / "assets" / SAMPLE_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"the bundled sample picture assets/{SAMPLE_NAME} is missing")


def self_test(settings: Settings) -> int:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.perf_counter()
    try:
        from PySide6.QtWidgets import QApplication

        from desktop.icons import KINDS, icon_for

        app = QApplication.instance() or QApplication([sys.argv[0]])
        if not isinstance(app, QApplication):
            raise TypeError("a QCoreApplication already exists; the self-test needs a QApplication")
        if any(icon_for(kind).isNull() for kind in KINDS):
            print("self-test: FAILED: the icons could not be drawn", file=sys.stderr)
            return 1
        print(f"qt: {app.platformName()} platform, icons drawn")

        from core.detect import DetectorError, detector_config_from_settings, load_detector
        from core.detect.decode import available, get_decoder
        from core.imageinfo import ImageError

        data = sample_path().read_bytes()
        from core.detect import providers

        try:
            config = detector_config_from_settings(settings)
            threshold = config.conf
            # A GPU build (onnxruntime-gpu, -directml, -openvino) tries its GPU, and says where it fell back.
            gpu = config.type == "onnx" and any(not providers.is_cpu(p) for p in providers.available())
            # One run at a low floor shows the candidates below the threshold too: the sample is a drawing,
            # and seeing the model place its best guess on the figure says more than an empty list.
            detector = load_detector(
                detector_config_from_settings(
                    settings, conf=min(threshold, CANDIDATE_FLOOR), use_gpu=True if gpu else None
                )
            )
        except DetectorError as exc:
            print(f"self-test: FAILED: {exc}", file=sys.stderr)
            return 1
        try:
            t1 = time.perf_counter()
            candidates = detector.detect([detector.prepare(data)])[0]
            infer_ms = (time.perf_counter() - t1) * 1000
        except (DetectorError, ImageError) as exc:
            print(f"self-test: FAILED: inference: {exc}", file=sys.stderr)
            return 1
        finally:
            detector.close()
    except (ImportError, OSError) as exc:
        print(f"self-test: FAILED: {exc}", file=sys.stderr)
        return 1
    detections = [d for d in candidates if d.confidence >= config.class_conf.get(d.label, threshold)]
    print(f"model: {detector.model_name} ({len(detector.labels)} classes), provider {detector.provider}")
    if detector.provider_note:
        print(detector.provider_note)
    print(f"image decoder: {get_decoder().name} (of {', '.join(available())})")
    print(
        f"sample: {SAMPLE_NAME}, {len(detections)} detection(s) at confidence {threshold:g}, "
        f"inference {infer_ms:.0f} ms"
    )
    for det in detections:
        print(f"  {_describe(det)}")
    below = [d for d in candidates if d not in detections]
    if below:
        print(f"  best candidate below the threshold: {_describe(max(below, key=lambda d: d.confidence))}")
    print(f"self-test: OK in {time.perf_counter() - t0:.1f} s")
    return 0
