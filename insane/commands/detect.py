"""``insane detect IMAGE...``: run the detector on files and print what it found."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.detect import DetectorError, detector_config_from_settings, load_detector
from core.imageinfo import ImageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="run the detector on image files and print the detections",
        description="Detect objects in JPEG/PNG files. Boxes are x1,y1,x2,y2 in the original image's pixels.",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--model", help="a model name from `insane model list`, or a .onnx/.pt path (default: setting)")
    p.add_argument("--classes", help="comma-separated class names to keep, e.g. person,car,dog")
    p.add_argument("--conf", type=float, help="minimum confidence, 0 to 1 (default 0.25)")
    p.add_argument("--imgsz", type=int, help="the long side of each frame's input (default: the model's)")
    p.add_argument(
        "--rect",
        action=argparse.BooleanOptionalAction,
        help="--rect: every frame into one 16:9 input (640 → 384×640); --no-rect: into a square; "
        "default: each frame its own shape, as Ultralytics' predict (or INSANE_DETECT_RECT)",
    )
    p.add_argument("--batch", type=int, default=8, help="images per model call, grouped by input shape (default 8)")
    p.add_argument(
        "--full-decode",
        action="store_true",
        help="decode large JPEGs at full size (slower; the exact pixels Ultralytics' predict sees)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image, one per line")
    p.add_argument("--save", type=Path, metavar="DIR", help="write annotated copies into DIR")
    p.set_defaults(func=detect_command)


def detect_command(args: argparse.Namespace, settings) -> int:
    try:
        cfg = detector_config_from_settings(
            settings,
            model=args.model,
            conf=args.conf,
            imgsz=args.imgsz,
            rect=args.rect,
            reduced_decode=False if args.full_decode else None,
            classes=[c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None,
        )
        det = load_detector(cfg)
    except (DetectorError, ValueError) as exc:
        print(f"insane detect: {exc}", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("insane detect: --batch must be at least 1", file=sys.stderr)
        return 2
    failed = 0
    with det:
        for start in range(0, len(args.images), args.batch):
            failed += _detect_chunk(det, args.images[start : start + args.batch], args)
    return 1 if failed else 0


def _detect_chunk(det, paths: list[Path], args: argparse.Namespace) -> int:
    """Prepare a few files, run them as one batch (one model call per input shape), print in order."""
    prepared, errors, blobs = {}, {}, {}
    for i, path in enumerate(paths):
        try:
            blobs[i] = path.read_bytes()
            prepared[i] = det.prepare(blobs[i])
        except (OSError, ImageError) as exc:
            errors[i] = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    found = dict(zip(prepared, det.detect(list(prepared.values())), strict=True)) if prepared else {}
    for i, path in enumerate(paths):
        if i in errors:
            if args.json:
                print(json.dumps({"image": str(path), "error": errors[i]}))
            else:
                print(f"{path}: error: {errors[i]}", file=sys.stderr)
            continue
        _report(path, found[i], det, args)
        if args.save:
            _save(blobs[i], found[i], args.save / f"{path.stem}.annotated.jpg")
    return len(errors)


def _report(path: Path, found, det, args: argparse.Namespace) -> None:
    if args.json:
        body = {"image": str(path), "model": det.model_name, "detections": [d.model_dump(mode="json") for d in found]}
        print(json.dumps(body))
        return
    print(f"{path}: {len(found)} detection(s)")
    for d in found:
        box = ", ".join(f"{v:.0f}" for v in d.box)
        print(f"  {d.label:<12} {d.confidence:.2f}  [{box}]")


def _save(data: bytes, found, target: Path) -> None:
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:  # decoded for detection, but not by OpenCV: nothing to draw the boxes on
        print(f"{target.name}: OpenCV cannot read this image; not saved", file=sys.stderr)
        return
    for d in found:
        x1, y1, x2, y2 = (round(v) for v in d.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 200, 255), 2)
        cv2.putText(
            img,
            f"{d.label} {d.confidence:.2f}",
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 200, 255),
            1,
            cv2.LINE_AA,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), img)
