"""``.pt`` → ONNX through Ultralytics (the export extra), offline and without the simplifier download.

path = export_onnx(Path("yolov8n.pt"), Path(model_dir), imgsz=640, rect=True, dynamic=True)
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from core.detect.base import DetectorError
from core.detect.preprocess import rect_shape

log = logging.getLogger(__name__)


def export_onnx(
    pt: Path,
    out_dir: Path,
    imgsz: int = 640,
    rect: bool = False,
    dynamic: bool = True,
    half: bool = False,
    name: str | None = None,
) -> Path:
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise DetectorError(
            f"exporting needs the export extra: pip install 'insane-ai-security[export]' ({exc})"
        ) from exc
    pt = Path(pt)
    if not pt.is_file():
        raise DetectorError(f"no such file: {pt}")
    shape = list(rect_shape(imgsz, 16 / 9)) if rect else [imgsz, imgsz]
    target = Path(out_dir) / f"{name or pt.stem}.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="insane-export-") as tmp:
        # Ultralytics writes the .onnx beside the .pt: work on a copy so the user's folder stays as it was.
        src = Path(tmp) / pt.name
        shutil.copyfile(pt, src)
        kwargs = {"half": True} if half else {}
        out = YOLO(str(src)).export(
            format="onnx", imgsz=shape, dynamic=dynamic, simplify=False, device="cpu", verbose=False, **kwargs
        )
        part = target.with_name(target.name + ".part")
        shutil.move(out, part)
        os.replace(part, target)
    log.info("exported %s to %s (%dx%d, dynamic=%s)", pt, target, *shape, dynamic)
    return target
