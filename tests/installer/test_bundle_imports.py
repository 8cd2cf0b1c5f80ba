"""What the desktop bundle leaves out, the tray app must run without: OpenCV, sympy, numpy's random and FFT, torch.

A child interpreter blocks those imports, converts a real checkpoint as the first run does, and runs the
self-test on the result and the worker's pieces; the frozen build (installer/linux/build.sh) then only has
to find what this already proved unused.
"""

from __future__ import annotations

import os
import subprocess
import sys

from insane.devkit import ROOT, models

CHILD = """
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ("cv2", "sympy", "torch", "ultralytics") or name.startswith(("numpy.random", "numpy.fft")):
            raise ImportError(f"{name} is not in the desktop bundle")
        return None

sys.meta_path.insert(0, Blocked())
from core.detect import decode
assert decode.cv2 is None, "OpenCV was imported"
import desktop.app, desktop.controller, core.worker.build  # the tray app and the worker it builds
import core.lan.server  # the DeepStack API the tray may serve: Starlette and uvicorn, never the relay's stack
assert not {m.split(".")[0] for m in sys.modules} & {"asyncpg", "relay"}, "the relay's stack was imported"
from core.detect.registry import ModelRegistry
import core.detect.int8, onnxruntime.quantization  # Faster (INT8) quantises on the user's machine
from core.settings import load_settings
from desktop.selftest import self_test
from pathlib import Path
ModelRegistry(Path(sys.argv[2])).import_file(Path(sys.argv[1]), "fall")
sys.exit(self_test(load_settings(model="fall", model_dir=sys.argv[2])))
"""


def test_the_tray_app_converts_and_runs_without_what_the_bundle_leaves_out(tmp_path) -> None:
    pt = models.fall_model_pt(models.test_cache())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(pt), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert "self-test: OK" in done.stdout and "best candidate below the threshold: Normal" in done.stdout
    assert "image decoder: simplejpeg" in done.stdout
