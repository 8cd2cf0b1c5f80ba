"""``insane bench --jobs N`` (insane/loadtest.py), small: real services, relay, a worker process, two surges."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from insane.devkit import INSANE


@pytest.mark.slow
def test_jobs_bench_reports_lanes_k_and_memory(tmp_path: Path, yolov8n_onnx: Path) -> None:
    env = dict(os.environ, INSANE_MODEL_DIR=str(tmp_path / "models"))
    args = ["--jobs", "4", "--moments", "3", "--rate", "4", "--surge", "1", "2", "--threads", "1", "--json"]
    done = subprocess.run(
        [*INSANE, "bench", *args, "--model", str(yolov8n_onnx)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])["runs"]
    assert [r["surge"] for r in runs] == [1, 2]
    assert runs[1]["arrival_events_per_s"] == 2 * runs[0]["arrival_events_per_s"] == 8
    for run in runs:
        assert run["jobs"] == 4 and run["moments_per_job"] == 3
        assert run["images_reviewed"] == 12 and run["images_per_s"] > 0 and run["wall_s"] > 0
        for lane in ("pro", "standard"):
            figures = run["lanes"][lane]
            assert figures["events"] == 2 and figures["failed"] == 0 and figures["k_min"] == 3
            assert 0 < figures["p50_s"] <= figures["p95_s"]
        assert run["k_timeline"] and all(set(row["k"]) == {"pro", "standard"} for row in run["k_timeline"])
        assert 50 < run["worker_rss_mb"] < 2000  # the child worker's own peak, not this process's


def test_jobs_bench_refuses_bad_numbers() -> None:
    done = subprocess.run([*INSANE, "bench", "--jobs", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--jobs takes 1 to 1000" in done.stderr
