"""The dev kit stays developer tooling: the installed relay and worker run without ever loading it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from insane.devkit import ROOT

CHILD = """
import sys
from insane.cli import build_parser
build_parser()  # registers every subcommand, as `insane relay` and `insane worker` do before running
import relay.app, relay.cli, core.worker.build  # the relay's app and the worker that `insane worker` builds
loaded = sorted(m for m in sys.modules if m == "insane.devkit" or m.startswith("insane.devkit."))
assert not loaded, f"loaded by the relay or the worker: {loaded}"
"""


def test_the_relay_and_the_worker_never_import_the_devkit() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_code_and_the_benchmarks_never_import_tests() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    found = subprocess.run(
        ["git", "grep", "-n", "-E", r"^\s*(from|import) tests\b", "--", "core", "relay", "desktop", "insane", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 1 and not found.stdout, found.stdout  # git grep: 1 = no match
