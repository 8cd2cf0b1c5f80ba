"""``insane model list|download|import|export|quantize|bench``: the models the worker can run."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Hashable
from pathlib import Path

from core.detect import DetectorError, detector_config_from_settings, load_detector
from core.detect.download import DownloadError
from core.detect.registry import ModelRegistry, describe, looks_like_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model",
        help="list, download, import, export, quantise or benchmark detection models",
        description="Models live in the model folder (INSANE_MODEL_DIR).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="known and installed models")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_command)
    dl = actions.add_parser(
        "download",
        help="fetch a known model (size and SHA-256 checked) and convert it to ONNX (no torch needed)",
    )
    dl.add_argument("name")
    dl.add_argument("--pt", action="store_true", help="only fetch the .pt weights, do not convert them")
    dl.set_defaults(func=download_command)
    imp = actions.add_parser(
        "import",
        help="an Ultralytics .pt (converted to ONNX, no torch needed) or a .onnx file, into the model folder",
    )
    imp.add_argument("path", type=Path)
    imp.add_argument("--name", help="name to use (default: the file's stem)")
    imp.set_defaults(func=import_command)
    ex = actions.add_parser(
        "export", help="turn an Ultralytics .pt into ONNX with Ultralytics itself (needs the export extra, torch)"
    )
    ex.add_argument("path", type=Path)
    ex.add_argument("--imgsz", type=int, default=640)
    ex.add_argument("--rect", action="store_true", help="384×640 for 16:9 frames (with --imgsz 640)")
    ex.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=True, help="dynamic batch and size")
    ex.add_argument("--half", action="store_true", help="fp16 weights (for GPUs)")
    ex.add_argument("--name", help="name in the model folder (default: the file's stem)")
    ex.set_defaults(func=export_command)
    q = actions.add_parser(
        "quantize",
        help="make an INT8 copy of an ONNX model (NAME-int8), calibrated on pictures",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Static INT8 quantisation with onnxruntime (needs the onnx package, in the export extra).\n"
        "Writes NAME-int8.onnx into the model folder with the same class names and input size, so\n"
        "`--model NAME-int8` works wherever a model is asked for. The Detect head's decode stays in\n"
        "float (quantised, every class probability would round to 0).\n\n"
        "Calibration sets the int8 ranges from real pictures: give frames from your own cameras\n"
        "(a few dozen, day and night) for the best accuracy. Without --calib it uses the bundled\n"
        "sample pictures, which are few and not your scenes.\n\n"
        "INT8 is not faster on every CPU. Compare before switching:\n"
        "  insane model bench --model NAME --against NAME-int8",
    )
    q.add_argument("model", metavar="MODEL", help="a float32 model: a name from `insane model list` or a .onnx path")
    q.add_argument(
        "--calib",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="folders of .jpg/.png pictures, or files (default: the bundled sample pictures)",
    )
    q.add_argument(
        "--max-images", type=int, default=200, metavar="N", help="use at most N calibration pictures (default 200)"
    )
    q.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one int8 scale per convolution output channel (default; usually more accurate)",
    )
    q.add_argument("--name", help="output name before -int8 (default: the model's name)")
    q.set_defaults(func=quantize_command)
    add_bench_arguments(actions.add_parser("bench", help="this machine's images/s for a model, or two models compared"))


def add_bench_arguments(b: argparse.ArgumentParser) -> None:
    """The options of ``insane model bench`` (also ``insane bench``)."""
    b.add_argument("--model", help="name or path (default: the model setting)")
    b.add_argument(
        "--against",
        metavar="MODEL",
        help="a second model (e.g. NAME-int8) measured in turn with the first; prints the median ratio",
    )
    b.add_argument("--rounds", type=int, default=5, help="alternating rounds with --against (default 5)")
    b.add_argument("images", nargs="*", type=Path, help="JPEG files (default: a synthetic 1080p frame)")
    b.add_argument("--batch", type=int, default=4)
    b.add_argument("--seconds", type=float, default=5.0)
    b.add_argument("--rect", action="store_true")
    b.add_argument("--sessions", type=int, help="onnx sessions (threads split among them)")
    b.set_defaults(func=bench_command)


def list_command(args: argparse.Namespace, settings) -> int:
    try:
        rows = ModelRegistry.from_settings(settings).entries()
    except DetectorError as exc:
        print(f"insane model list: {exc}", file=sys.stderr)
        return 1
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

    def converting() -> None:
        print(f"\n{args.name}: converting to ONNX…", end="", file=sys.stderr, flush=True)

    try:
        path = ModelRegistry.from_settings(settings).download(
            args.name, kind="pt" if args.pt else None, progress=progress, on_convert=converting
        )
    except (DownloadError, DetectorError) as exc:
        print(f"\ninsane model download: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    _print_model(path)
    return 0


def import_command(args: argparse.Namespace, settings) -> int:
    try:
        path = ModelRegistry.from_settings(settings).import_file(args.path, args.name)
    except DetectorError as exc:
        print(f"insane model import: {exc}", file=sys.stderr)
        return 1
    _print_model(path)
    return 0


def _print_model(path: Path) -> None:
    if path.suffix != ".onnx":
        print(path)
        return
    info = describe(path)
    labels = info["labels"]
    shown = ", ".join(labels[:5]) + ("…" if len(labels) > 5 else "")
    print(f"{path}: {len(labels)} classes ({shown}), input {info['input_shape']} {info['input_type']}")


def export_command(args: argparse.Namespace, settings) -> int:
    from core.detect.export import export_onnx

    try:
        path = export_onnx(args.path, settings.model_dir, args.imgsz, args.rect, args.dynamic, args.half, args.name)
    except DetectorError as exc:
        print(f"insane model export: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def quantize_command(args: argparse.Namespace, settings) -> int:
    from core.detect.quantize import calibration_images, quantize_model

    try:
        registry = ModelRegistry.from_settings(settings)
        src = registry.resolve(args.model)
        images = calibration_images(args.calib)
        name = args.name or (Path(args.model).stem if looks_like_path(args.model) else args.model)
        print(f"calibrating on {min(len(images), args.max_images)} picture(s)…", file=sys.stderr, flush=True)
        result = quantize_model(src, settings.model_dir, images, name, args.per_channel, args.max_images)
    except DetectorError as exc:
        print(f"insane model quantize: {exc}", file=sys.stderr)
        return 1
    print(
        f"{result.path}: int8 from {result.images} calibration picture(s), "
        f"{result.float_nodes} nodes kept float (the decode and the last convolutions)"
    )
    print(f"compare: insane model bench --model {args.model} --against {result.path.stem}")
    return 0


def bench_command(args: argparse.Namespace, settings) -> int:
    import statistics

    import cv2
    import numpy as np

    from core.detect.base import RawModel
    from core.detect.speed import alternate, measure_pipeline, measure_raw

    prog = "insane bench" if args.command == "bench" else "insane model bench"

    if args.rounds < 1 or args.seconds <= 0:
        print(f"{prog}: --rounds must be at least 1 and --seconds above 0", file=sys.stderr)
        return 2
    names = [args.model] if args.against is None else [args.model, args.against]
    dets = []
    try:
        for name in names:
            dets.append(
                load_detector(
                    detector_config_from_settings(settings, model=name, rect=args.rect or None, sessions=args.sessions)
                )
            )
    except (DetectorError, ValueError) as exc:
        for det in dets:
            det.close()
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.images:
        jpegs = [p.read_bytes() for p in args.images]
    else:
        rng = np.random.default_rng(0)
        frame = cv2.GaussianBlur(rng.integers(0, 255, (1080, 1920, 3), np.uint8), (9, 9), 0)
        jpegs = [cv2.imencode(".jpg", frame)[1].tobytes()] * 8
    # One model: one measurement of each figure. Two: both in turn, round after round, so that the
    # machine's drift (other work, clocks, heat) falls on both alike; their ratio is taken per round.
    rounds = 1 if len(dets) == 1 else args.rounds
    seconds = args.seconds / rounds
    measures: dict[Hashable, Callable[[], float]] = {}
    for i, det in enumerate(dets):
        tensors = [det.prepare(j).tensor for j in jpegs]
        if isinstance(det, RawModel):
            measures[i, "raw"] = functools.partial(measure_raw, det, tensors, args.batch, seconds)
        measures[i, "full"] = functools.partial(measure_pipeline, det, jpegs, args.batch, seconds)
    try:
        runs = alternate(measures, rounds)
    finally:
        for det in dets:
            det.close()
    nan = float("nan")
    for i, det in enumerate(dets):
        raw = statistics.median(runs.get((i, "raw"), [nan]))
        full = statistics.median(runs[i, "full"])
        h, w = det.input_size
        print(f"{det.model_name} {h}x{w} on {det.provider}, batch {args.batch}, {len(jpegs)} image(s)")
        print(f"  model alone : {raw:7.1f} img/s  {1000 / raw:6.1f} ms/img")
        print(f"  full path   : {full:7.1f} img/s  {1000 / full:6.1f} ms/img  ({full / raw:.2f} of the model alone)")
    if len(dets) == 2:
        ratio = {
            k: statistics.median(b / a for a, b in zip(runs.get((0, k), [nan]), runs.get((1, k), [nan]), strict=True))
            for k in ("raw", "full")
        }
        print(
            f"{dets[1].model_name} / {dets[0].model_name}, median of {rounds} alternating rounds: "
            f"model alone ×{ratio['raw']:.2f}, full path ×{ratio['full']:.2f}"
        )
    return 0
