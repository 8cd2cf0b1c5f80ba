"""Detector throughput against the raw model, per frame shape and per image decoder, in one process.

  (a) raw          session.run on ready tensors (the ceiling), at the frames' own input shape
  (b) pipeline     our whole path: JPEG bytes → scaled decode → letterbox → batch → ONNX → NMS → boxes,
                   once with each decoder: opencv (development) and simplejpeg (the desktop bundle)
  (c) ult-onnx     Ultralytics predict on the same ONNX model (16:9 frames)
  (d) ult-pt       Ultralytics predict on the .pt (16:9 frames)

    .venv/bin/python bench/detect.py [--seconds 3] [--rounds 3] [--batch 4] [--json]
    .venv/bin/python bench/detect.py --provider OpenVINOCPU --provider-python .venv-openvino/bin/python

``--provider NAME`` also measures (a) and (b) on that execution provider (core/detect/providers.py) on the
16:9 frames, in a child process under ``--provider-python`` when its onnxruntime build lives in another venv
(onnxruntime-openvino replaces onnxruntime: ./dev.sh openvino makes .venv-openvino).

Frames: sixteen 1920×1080 (16:9 → 384×640 input) and sixteen 1440×1080 (4:3 → 480×640) JPEGs. (a) and (b)
are measured in alternating rounds, so the machine's drift falls on both; each ratio is the median of the
per-round ratios. Also printed: each decoder's cost per frame (one core, median) and what it adds to the
desktop bundle. Default model: YOLOv8n from yolov8n.yaml (random weights, see insane/devkit/models.py), exported to
ONNX with a dynamic shape, run with the worker's default layout (one single-thread session per core).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from core.detect import load_detector  # noqa: E402
from core.detect.base import RawModel  # noqa: E402
from core.detect.decode import available  # noqa: E402
from core.detect.speed import alternate, measure_pipeline, measure_raw  # noqa: E402

SHAPES = {"16:9": (1920, 1080), "4:3": (1440, 1080)}
# What each decoder brings into an install: the distributions it needs beyond numpy.
DECODER_DISTS = {"opencv": ["opencv-python-headless"], "simplejpeg": ["simplejpeg", "pillow"], "pillow": ["pillow"]}


def frames(size: tuple[int, int], n: int) -> list[bytes]:
    from insane.devkit.models import sample_images

    base = cv2.imdecode(np.frombuffer(sample_images()["frame1080.jpg"], np.uint8), cv2.IMREAD_COLOR)
    assert base is not None  # the sample frame decodes
    w, h = size
    x = (base.shape[1] - w) // 2
    base = base[:h, x : x + w] if w <= base.shape[1] else cv2.resize(base, size)
    out = []
    for i in range(n):
        img = np.roll(base, i * 97, axis=1)
        if i % 2:
            img = cv2.flip(img, 1)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def prepare_cost_ms(det, jpegs: list[bytes], rounds: int = 5) -> float:
    """CPU milliseconds of this thread per prepared frame, median over frames and rounds."""
    det.prepare(jpegs[0])
    costs = []
    for _ in range(rounds):
        for j in jpegs:
            t0 = time.thread_time()
            det.prepare(j)
            costs.append(time.thread_time() - t0)
    return statistics.median(costs) * 1000


def dist_mb(names: list[str]) -> float:
    total = 0
    for name in names:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files)
    return total / 1e6


def _ultralytics(model: Path, files: list[Path], batch: int, seconds: float) -> float:
    from ultralytics import YOLO

    yolo = YOLO(str(model), task="detect")
    kw = {"imgsz": 640, "batch": batch, "verbose": False, "device": "cpu"}
    yolo.predict([str(f) for f in files[:batch]], **kw)  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < 3 * len(files) or time.perf_counter() - t0 < seconds:
        yolo.predict([str(f) for f in files], **kw)
        done += len(files)
    return done / (time.perf_counter() - t0)


def measure_shape(args, label: str, jpegs: list[bytes], decoders: list[str]) -> dict:
    base = {"type": "onnx", "path": str(args.onnx), "threads": args.threads}
    if args.sessions:
        base["sessions"] = args.sessions
    dets = {d: load_detector({**base, "decoder": d}) for d in decoders}
    try:
        first = dets[decoders[0]]
        assert isinstance(first, RawModel)  # an onnx config: the ONNX backend runs bare tensors
        tensors = [first.prepare(j).tensor for j in jpegs]
        measures: dict[Hashable, Callable[[], float]] = {
            "raw": functools.partial(measure_raw, first, tensors, args.batch, args.seconds)
        }
        for name, det in dets.items():
            measures[name] = functools.partial(measure_pipeline, det, jpegs, args.batch, args.seconds)
        runs = alternate(measures, args.rounds)
        costs = {name: prepare_cost_ms(det, jpegs) for name, det in dets.items()}
    finally:
        for det in dets.values():
            det.close()
    out: dict[str, Any] = {
        "input_shape": list(tensors[0].shape[1:]),
        "raw_img_s": statistics.median(runs["raw"]),
        "decoders": {},
    }
    for name in decoders:
        ratios = [p / r for p, r in zip(runs[name], runs["raw"], strict=True)]
        out["decoders"][name] = {
            "pipeline_img_s": statistics.median(runs[name]),
            "ratio": statistics.median(ratios),
            "prepare_ms": costs[name],
        }
    return out


def _on_provider(args: argparse.Namespace, jpegs: list[bytes]) -> dict[str, object]:
    cfg = {"type": "onnx", "path": str(args.onnx), "threads": args.threads}
    with load_detector({**cfg, "providers": [args.provider]}) as det:
        if det.provider != args.provider:
            raise SystemExit(f"bench/detect.py: {args.provider} did not load (running on {det.provider})")
        assert isinstance(det, RawModel)  # an onnx config: the ONNX backend runs bare tensors
        tensors = [det.prepare(j).tensor for j in jpegs]
        raw = measure_raw(det, tensors, args.batch, args.seconds)
        pipe = measure_pipeline(det, jpegs, args.batch, args.seconds)
        import onnxruntime

        return {"name": args.provider, "raw_img_s": raw, "pipeline_img_s": pipe, "onnxruntime": onnxruntime.__version__}


def _provider_run(args: argparse.Namespace, jpegs: list[bytes]) -> dict[str, object]:
    """(a) and (b) on ``--provider``: here, or in a child under ``--provider-python`` on the same files."""
    if args.provider_python is None:
        return _on_provider(args, jpegs)
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        for i, j in enumerate(jpegs):
            (Path(tmp) / f"{i:04d}.jpg").write_bytes(j)
        cmd = [str(args.provider_python), __file__, "--onnx", str(args.onnx)]
        cmd += ["--batch", str(args.batch), "--seconds", str(args.seconds), "--threads", str(args.threads)]
        cmd += ["--provider", args.provider, "--jpeg-dir", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"bench/detect.py: the {args.provider} run failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, help="ONNX model with a dynamic shape (default: YOLOv8n, built)")
    ap.add_argument("--pt", type=Path, help="the same model as .pt, for (d)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sessions", type=int, help="onnx sessions (default: the worker's, one per thread)")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--skip-ultralytics", action="store_true")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--provider", help="also measure (a) and (b) on this provider, e.g. OpenVINOCPU")
    ap.add_argument("--provider-python", type=Path, help="the interpreter whose onnxruntime has --provider")
    ap.add_argument("--jpeg-dir", type=Path, help=argparse.SUPPRESS)  # the child's input
    args = ap.parse_args()
    if args.jpeg_dir is not None:  # the child: one provider, the parent's files, one JSON object
        given = [p.read_bytes() for p in sorted(args.jpeg_dir.glob("*.jpg"))]
        print(json.dumps(_on_provider(args, given)))
        return 0

    if args.onnx is None or (args.pt is None and not args.skip_ultralytics):
        from insane.devkit import models

        cache = models.test_cache()
        os.environ.setdefault("YOLO_CONFIG_DIR", str(cache / "ultralytics-config"))
        args.pt = args.pt or models.yolov8n_pt(cache)
        args.onnx = args.onnx or models.export_onnx(args.pt, cache, 640)
    os.environ["YOLO_OFFLINE"] = "1"
    decoders: list[str] = [d for d in ("opencv", "simplejpeg", "pillow") if d in available()]
    res: dict[str, Any] = {
        "model": args.onnx.name,
        "images": args.images,
        "batch": args.batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "shapes": {},
        "decoder_install_mb": {d: round(dist_mb(DECODER_DISTS[d]), 1) for d in decoders},
    }
    jpegs: dict[str, list[bytes]] = {}
    for label in args.shapes:
        jpegs[label] = frames(SHAPES[label], args.images)
        res["shapes"][label] = measure_shape(args, label, jpegs[label], decoders)
    if args.provider:
        jpegs.setdefault("16:9", frames(SHAPES["16:9"], args.images))
        on = res["provider"] = _provider_run(args, jpegs["16:9"])
        if "16:9" in res["shapes"]:
            on["vs_default_raw"] = on["raw_img_s"] / res["shapes"]["16:9"]["raw_img_s"]
    if not args.skip_ultralytics and "16:9" in jpegs:
        # Ultralytics prints its own lines to stdout; --json promises one object there.
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
            files = []
            for i, j in enumerate(jpegs["16:9"]):
                files.append(Path(tmp) / f"{i}.jpg")
                files[-1].write_bytes(j)
            res["ultralytics_onnx_img_s"] = _ultralytics(args.onnx, files, args.batch, args.seconds)
            res["ultralytics_pt_img_s"] = _ultralytics(args.pt, files, args.batch, args.seconds)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['model']}, {args.images} JPEGs per shape, batch {args.batch}, {args.threads} threads")
    for label, r in res["shapes"].items():
        w, h = SHAPES[label]
        print(f"{label} ({w}x{h} → input {r['input_shape'][0]}x{r['input_shape'][1]})")
        print(f"  (a) raw session.run                {r['raw_img_s']:7.1f} img/s")
        for name, d in r["decoders"].items():
            print(
                f"  (b) pipeline, {name:<12}        {d['pipeline_img_s']:7.1f} img/s   (b)/(a) = {d['ratio']:.2f}"
                f"   prepare {d['prepare_ms']:5.1f} ms/frame"
            )
    if "ultralytics_onnx_img_s" in res:
        print(f"  (c) Ultralytics predict, ONNX      {res['ultralytics_onnx_img_s']:7.1f} img/s")
        print(f"  (d) Ultralytics predict, .pt       {res['ultralytics_pt_img_s']:7.1f} img/s")
    if "provider" in res:
        on = res["provider"]
        print(f"  (a) raw, {on['name']:<24} {on['raw_img_s']:7.1f} img/s")
        print(f"  (b) pipeline, {on['name']:<19} {on['pipeline_img_s']:7.1f} img/s")
    print("decoder install size: " + ", ".join(f"{k} {v} MB" for k, v in res["decoder_install_mb"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
