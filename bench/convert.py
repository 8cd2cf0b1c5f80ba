"""How long the torch-free .pt → ONNX conversion takes, against Ultralytics' own export of the same file.

    .venv/bin/python bench/convert.py [MODEL.pt ...] [--rounds 5] [--json]

Default models: YOLOv8n with random weights saved by Ultralytics from ``yolov8n.yaml`` (the same layers,
parameter count and fp16 storage as the published yolov8n.pt, which this machine cannot download) and the
real trained fall-detection YOLOv8s. Each conversion is the whole of ``insane model import``: read the zip,
unpickle, fold, build, check, save, and the onnxruntime smoke run. The baseline, Ultralytics' ONNX export
(torch, in a child process as ``insane model export`` runs it), is measured once per model in the same run,
import time included; it needs the export extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.detect.onnxbuild import convert  # noqa: E402
from insane.devkit import models  # noqa: E402

EXPORT = """
import sys, time
t = time.perf_counter()
from ultralytics import YOLO
YOLO(sys.argv[1]).export(format="onnx", imgsz=640, dynamic=True, simplify=False, device="cpu", verbose=False)
print(time.perf_counter() - t)
"""


def ours(pt: Path, rounds: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            start = time.perf_counter()
            convert(pt, Path(tmp) / f"{i}.onnx")
            times.append(time.perf_counter() - start)
    return times


def ultralytics(pt: Path) -> float | None:
    if find_spec("ultralytics") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / pt.name
        copy.write_bytes(pt.read_bytes())
        done = subprocess.run(
            [sys.executable, "-c", EXPORT, str(copy)], capture_output=True, text=True, check=True, cwd=tmp
        )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cache = models.test_cache()
    pts = args.models or [models.yolov8n_pt(cache), models.fall_model_pt(cache)]
    rows = []
    for pt in pts:
        times = ours(pt, args.rounds)
        baseline = ultralytics(pt)
        rows.append(
            {
                "model": pt.name,
                "mb": round(pt.stat().st_size / 1e6, 1),
                "ours_median_s": round(statistics.median(times), 3),
                "ours_max_s": round(max(times), 3),
                "ultralytics_export_s": round(baseline, 2) if baseline is not None else None,
            }
        )
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'model':<28} {'MB':>5} {'ours median':>12} {'ours max':>9} {'Ultralytics export':>19}")
    for r in rows:
        ul = f"{r['ultralytics_export_s']:.2f} s" if r["ultralytics_export_s"] is not None else "-"
        print(f"{r['model']:<28} {r['mb']:>5} {r['ours_median_s']:>10.2f} s {r['ours_max_s']:>7.2f} s {ul:>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
