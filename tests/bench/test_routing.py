"""bench/routing.py at its smallest: both relays run, the figures are there, and a failed phase fails the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from insane.devkit import ROOT

FIGURES = ("queue_p50_ms", "queue_p99_ms", "lease_rtt_p50_ms", "lease_rtt_p99_ms", "relay_cpu_ms_per_event")


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "routing.py"), "--quick", "--json", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
def test_routing_bench_reports_both_relays_side_by_side() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("the baseline relay is checked out with git")
    done = run_bench()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["runs"]) == {"now", result["baseline"]} and result["baseline"] != "now"
    for run in result["runs"].values():
        assert run["ok"] and run["events_lost"] == 0 and run["events_done"] == run["events_posted"] > 0
        assert all(run[name] > 0 for name in FIGURES), run
        assert run["fairness"]["guardian_tenants"] > 0 and run["fairness"]["tenant_median_max_ms"] > 0
    assert all(result["ratios"][name] > 0 for name in FIGURES)
    assert result["durable"] is True


@pytest.mark.slow
def test_routing_bench_fails_when_a_phase_fails() -> None:
    done = run_bench("--baseline", "0000000000000000000000000000000000000000")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["runs"]["now"]["ok"]
    failed = result["runs"][result["baseline"]]
    assert failed["ok"] is False and "cannot check out" in failed["failure"]
    assert "phase failed" in done.stderr
