"""The 50-job benchmark: 50 deep reviews × 20 moments, Pro and Guardian, through a real relay to one worker.

    python bench/jobs50.py                     # two runs: 0.75 events/s, then 3× that; a summary of each
    python bench/jobs50.py --json              # one JSON object: {"runs": [...]}
    python bench/jobs50.py --jobs 6 --moments 4 --rate 2      # a quick check

The same code as ``insane bench --jobs 50`` (insane/loadtest.py): throwaway Redis and PostgreSQL with fsync
on, the relay in this process, ``insane worker --json`` in a child process. Reports wall time (first event
accepted → last result stored), images/s, event latency p50/p95 per lane, K per lane over time and the
worker's peak RSS. Goal: the 1,000 images in ≤ 100 s with YOLOv8n. The default model is YOLOv8n built from
yolov8n.yaml (random weights: speed only, see insane/devkit/models.py) exported with a dynamic shape.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from core.settings import load_settings  # noqa: E402
from insane.devkit.loadtest import jobs_bench, summary_lines  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="a .onnx file (default: YOLOv8n, built by insane/devkit/models.py)")
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--moments", type=int, default=20)
    p.add_argument("--rate", type=float, default=0.75, help="events per second in the first run")
    p.add_argument("--surge", type=float, nargs="+", default=[1.0, 3.0])
    p.add_argument("--drain-target", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.model is None:
        from insane.devkit import models

        cache = models.test_cache()
        args.model = models.export_onnx(models.yolov8n_pt(cache), cache, 640)
    runs = jobs_bench(
        load_settings(),
        args.model,
        jobs=args.jobs,
        moments=args.moments,
        rate=args.rate,
        surges=tuple(args.surge),
        threads=args.threads,
        drain_target_s=args.drain_target,
    )
    if args.json:
        print(json.dumps({"runs": runs}))
    else:
        for run in runs:
            print("\n".join(summary_lines(run)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
