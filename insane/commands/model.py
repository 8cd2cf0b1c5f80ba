"""``insane model list|download|import|export|bench``: the models the worker can run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.detect import DetectorError, detector_config_from_settings, load_detector
from core.detect.download import DownloadError
from core.detect.registry import ModelRegistry, describe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="list, download, import, export or benchmark detection models",
                       description="Models live in the model folder (INSANE_MODEL_DIR).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="known and installed models")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_command)
    dl = actions.add_parser("download", help="fetch a known model's weights (size and SHA-256 checked)")
    dl.add_argument("name")
    dl.set_defaults(func=download_command)
    imp = actions.add_parser("import", help="check a .onnx (or .pt) file and copy it into the model folder")
    imp.add_argument("path", type=Path)
    imp.add_argument("--name", help="name to use (default: the file's stem)")
    imp.set_defaults(func=import_command)
    ex = actions.add_parser("export", help="turn an Ultralytics .pt into ONNX (needs the export extra)")
    ex.add_argument("path", type=Path)
    ex.add_argument("--imgsz", type=int, default=640)
    ex.add_argument("--rect", action="store_true", help="384×640 for 16:9 frames (with --imgsz 640)")
    ex.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=True, help="dynamic batch and size")
    ex.add_argument("--half", action="store_true", help="fp16 weights (for GPUs)")
    ex.add_argument("--name", help="name in the model folder (default: the file's stem)")
    ex.set_defaults(func=export_command)
    b = actions.add_parser("bench", help="this machine's images/s for a model")
    b.add_argument("--model", help="name or path (default: the model setting)")
    b.add_argument("images", nargs="*", type=Path, help="JPEG files (default: a synthetic 1080p frame)")
    b.add_argument("--batch", type=int, default=4)
    b.add_argument("--seconds", type=float, default=5.0)
    b.add_argument("--rect", action="store_true")
    b.add_argument("--sessions", type=int, help="onnx sessions (threads split among them)")
    b.set_defaults(func=bench_command)


def list_command(args: argparse.Namespace, settings) -> int:
    rows = ModelRegistry(settings.model_dir).entries()
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        print(f"{r['name']:<16} {r['state']:<14} {r['path'] or '-'}\n{'':<16} {r['description']}")
    return 0


def download_command(args: argparse.Namespace, settings) -> int:
    def progress(done: int, total: int | None) -> None:
        pct = f"{100 * done / total:5.1f}%" if total else ""
        print(f"\r{args.name}: {done / 1e6:7.1f} MB {pct}", end="", file=sys.stderr, flush=True)

    try:
        path = ModelRegistry(settings.model_dir).download(args.name, progress=progress)
    except (DownloadError, DetectorError) as exc:
        print(f"\ninsane model download: {exc}", file=sys.stderr)
        return 1
    print(f"\n{path}")
    return 0


def import_command(args: argparse.Namespace, settings) -> int:
    try:
        path = ModelRegistry(settings.model_dir).import_file(args.path, args.name)
    except DetectorError as exc:
        print(f"insane model import: {exc}", file=sys.stderr)
        return 1
    if path.suffix == ".onnx":
        info = describe(path)
        print(f"{path}: {len(info['labels'])} classes, input {info['input_shape']} {info['input_type']}")
    else:
        print(path)
    return 0


def export_command(args: argparse.Namespace, settings) -> int:
    from core.detect.export import export_onnx

    try:
        path = export_onnx(args.path, settings.model_dir, args.imgsz, args.rect, args.dynamic, args.half, args.name)
    except DetectorError as exc:
        print(f"insane model export: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def bench_command(args: argparse.Namespace, settings) -> int:
    import cv2
    import numpy as np

    from core.detect.speed import measure_pipeline, measure_raw

    try:
        det = load_detector(detector_config_from_settings(
            settings, model=args.model, rect=args.rect or None, sessions=args.sessions))
    except (DetectorError, ValueError) as exc:
        print(f"insane model bench: {exc}", file=sys.stderr)
        return 2
    if args.images:
        jpegs = [p.read_bytes() for p in args.images]
    else:
        rng = np.random.default_rng(0)
        frame = cv2.GaussianBlur(rng.integers(0, 255, (1080, 1920, 3), np.uint8), (9, 9), 0)
        jpegs = [cv2.imencode(".jpg", frame)[1].tobytes()] * 8
    with det:
        tensors = [det.prepare(j).tensor for j in jpegs]
        raw = measure_raw(det, tensors, args.batch, args.seconds) if hasattr(det, "run") else float("nan")
        full = measure_pipeline(det, jpegs, args.batch, args.seconds)
        h, w = det.input_size
        print(f"{det.model_name} {h}x{w} on {det.provider}, batch {args.batch}, {len(jpegs)} image(s)")
        print(f"  model alone : {raw:7.1f} img/s  {1000 / raw:6.1f} ms/img")
        print(f"  full path   : {full:7.1f} img/s  {1000 / full:6.1f} ms/img  ({full / raw:.2f} of the model alone)")
    return 0
