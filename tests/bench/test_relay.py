"""bench/relay.py's worker-API and uploads phases at their smallest, against the baseline relay in the same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from insane.devkit import ROOT

SMALL = ["--repeat", "1", "--workers", "2", "--worker-tenants", "3", "--worker-requests", "40"]
SMALL += ["--upload-requests", "10", "--upload-connections", "2", "--seconds", "5", "--json"]


@pytest.mark.slow
def test_relay_bench_compares_worker_api_and_uploads_with_the_baseline() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("the baseline relay is checked out with git")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay.py"), "--phases", "worker,uploads", *SMALL],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    base = result["baseline"]
    worker, uploads = result["worker"], result["uploads"]
    for name in ("now", base):
        assert worker[name]["ok"] == 40 and not worker[name]["errors"]
        assert worker[name]["per_s"] > 0 and 0 < worker[name]["p50_ms"] <= worker[name]["p99_ms"]
        assert worker[name]["lease_p50_ms"] > 0 and worker[name]["result_p50_ms"] > 0
        assert uploads[name]["ok"] == 10 and not uploads[name]["errors"] and uploads[name]["mb_per_s"] > 0
    assert worker["ratio"]["per_s"] > 0 and uploads["ratio"]["p99_ms"] > 0
    assert uploads["moments"] == 4 and uploads["jpeg_kb"] > 10
    assert result["durable"] is True
