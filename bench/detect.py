"""Detector throughput, in one process on the same 1080p JPEG files:

  (a) raw          session.run on ready tensors, best thread layout (the ceiling)
  (b) pipeline     our whole path: JPEG bytes → scaled decode → letterbox → batch → ONNX → NMS → boxes
  (c) ult-onnx     Ultralytics predict on the same ONNX model
  (d) ult-pt       Ultralytics predict on the .pt

    .venv/bin/python bench/detect.py [--seconds 5] [--batch 4] [--json]
    .venv/bin/python bench/detect.py --provider OpenVINOCPU --provider-python .venv-openvino/bin/python

``--provider NAME`` also measures (a) and (b) on that execution provider (core/detect/providers.py), in a
child process under ``--provider-python`` when its onnxruntime build lives in another venv (onnxruntime-
openvino replaces onnxruntime: ./dev.sh openvino makes .venv-openvino).

Default model: YOLOv8n built from yolov8n.yaml (random weights, see insane/devkit/models.py) exported to ONNX with
a dynamic shape and run at 384×640. Both thread layouts are measured for (a) and (b): one session with all
threads, and one single-thread session per core with the batch split between them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from core.detect import load_detector  # noqa: E402
from core.detect.speed import measure_pipeline, measure_raw  # noqa: E402


def _images(n: int) -> list[bytes]:
    from insane.devkit.models import sample_images

    frame = cv2.imdecode(np.frombuffer(sample_images()["frame1080.jpg"], np.uint8), cv2.IMREAD_COLOR)
    out = []
    for i in range(n):
        img = np.roll(frame, i * 97, axis=1)
        if i % 2:
            img = cv2.flip(img, 1)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def _ultralytics(model: Path, files: list[Path], shape: tuple[int, int], batch: int, seconds: float) -> float:
    from ultralytics import YOLO

    yolo = YOLO(str(model), task="detect")
    kw = {"imgsz": list(shape), "batch": batch, "verbose": False, "device": "cpu", "rect": False}
    yolo.predict([str(f) for f in files[:batch]], **kw)  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < 3 * len(files) or time.perf_counter() - t0 < seconds:
        yolo.predict([str(f) for f in files], **kw)
        done += len(files)
    return done / (time.perf_counter() - t0)


def _on_provider(args: argparse.Namespace, jpegs: list[bytes]) -> dict[str, object]:
    cfg = {"type": "onnx", "path": str(args.onnx), "imgsz": list(args.imgsz), "threads": args.threads}
    with load_detector({**cfg, "providers": [args.provider]}) as det:
        if det.provider != args.provider:
            raise SystemExit(f"bench/detect.py: {args.provider} did not load (running on {det.provider})")
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
        cmd = [str(args.provider_python), __file__, "--onnx", str(args.onnx), "--imgsz", *map(str, args.imgsz)]
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
    ap.add_argument("--imgsz", type=int, nargs=2, default=[384, 640], metavar=("H", "W"))
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-ultralytics", action="store_true")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--provider", help="also measure (a) and (b) on this provider, e.g. OpenVINOCPU")
    ap.add_argument("--provider-python", type=Path, help="the interpreter whose onnxruntime has --provider")
    ap.add_argument("--jpeg-dir", type=Path, help=argparse.SUPPRESS)  # the child's input
    args = ap.parse_args()
    if args.jpeg_dir is not None:  # the child: one provider, the parent's files, one JSON object
        jpegs = [p.read_bytes() for p in sorted(args.jpeg_dir.glob("*.jpg"))]
        print(json.dumps(_on_provider(args, jpegs)))
        return 0

    if args.onnx is None or (args.pt is None and not args.skip_ultralytics):
        from insane.devkit import models

        cache = models.test_cache()
        os.environ.setdefault("YOLO_CONFIG_DIR", str(cache / "ultralytics-config"))
        args.pt = args.pt or models.yolov8n_pt(cache)
        args.onnx = args.onnx or models.export_onnx(args.pt, cache, 640)
    os.environ["YOLO_OFFLINE"] = "1"
    shape = tuple(args.imgsz)
    jpegs = _images(args.images)
    res: dict[str, object] = {
        "model": args.onnx.name,
        "input_shape": list(shape),
        "images": len(jpegs),
        "image_size": "1920x1080",
        "batch": args.batch,
        "threads": args.threads,
    }
    layouts = {f"1 session × {args.threads} threads": 1, f"{args.threads} sessions × 1 thread": args.threads}
    raw, pipe = {}, {}
    for label, sessions in layouts.items():
        cfg = {
            "type": "onnx",
            "path": str(args.onnx),
            "imgsz": list(shape),
            "threads": args.threads,
            "sessions": sessions,
        }
        with load_detector(cfg) as det:
            tensors = [det.prepare(j).tensor for j in jpegs]
            raw[label] = measure_raw(det, tensors, args.batch, args.seconds)
            pipe[label] = measure_pipeline(det, jpegs, args.batch, args.seconds)
        with load_detector({**cfg, "reduced_decode": False}) as det:
            pipe[label + ", full decode"] = measure_pipeline(det, jpegs, args.batch, args.seconds)
    best = max(layouts, key=lambda k: raw[k])
    res.update(
        raw_img_s=raw[best],
        raw_layout=best,
        pipeline_img_s=pipe[best],
        pipeline_full_decode_img_s=pipe[best + ", full decode"],
        layouts={k: {"raw_img_s": raw[k], "pipeline_img_s": pipe[k]} for k in layouts},
    )
    if args.provider:
        res["provider"] = _provider_run(args, jpegs)
        res["provider"]["vs_default_raw"] = res["provider"]["raw_img_s"] / res["raw_img_s"]
    if not args.skip_ultralytics:
        # Ultralytics prints its own lines to stdout; --json promises one object there.
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
            files = []
            for i, j in enumerate(jpegs):
                files.append(Path(tmp) / f"{i}.jpg")
                files[-1].write_bytes(j)
            res["ultralytics_onnx_img_s"] = _ultralytics(args.onnx, files, shape, args.batch, args.seconds)
            res["ultralytics_pt_img_s"] = _ultralytics(args.pt, files, shape, args.batch, args.seconds)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['model']} at {shape[0]}x{shape[1]}, {len(jpegs)} JPEGs of 1920x1080, batch {args.batch}")
    rows = [(f"(a) raw, {k}", raw[k]) for k in layouts] + [(f"(b) pipeline, {k}", v) for k, v in pipe.items()]
    if "ultralytics_onnx_img_s" in res:
        rows += [
            ("(c) Ultralytics predict, ONNX", res["ultralytics_onnx_img_s"]),
            ("(d) Ultralytics predict, .pt", res["ultralytics_pt_img_s"]),
        ]
    if "provider" in res:
        on = res["provider"]
        rows += [(f"(a) raw, {on['name']}", on["raw_img_s"]), (f"(b) pipeline, {on['name']}", on["pipeline_img_s"])]
    for name, v in rows:
        print(f"  {name:<48} {v:7.1f} img/s {1000 / v:7.1f} ms/img")
    p = res["pipeline_img_s"]
    print(f"  best layout: {best}")
    print(f"  (b)/(a) = {p / res['raw_img_s']:.2f}", end="")
    if "ultralytics_onnx_img_s" in res:
        print(f"   (b)/(c) = {p / res['ultralytics_onnx_img_s']:.2f}   (b)/(d) = {p / res['ultralytics_pt_img_s']:.2f}")
    else:
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
