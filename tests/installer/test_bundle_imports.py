"""What the desktop bundle leaves out, the tray app must run without: OpenCV, sympy, numpy's random and FFT.

A child interpreter blocks those imports and runs the self-test and the worker's pieces; the frozen
build (installer/linux/build.sh) then only has to find what this already proved unused.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests import models
from tests.conftest import ROOT

CHILD = """
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cv2", "sympy") or name.startswith(("numpy.random", "numpy.fft")):
            raise ImportError(f"{name} is not in the desktop bundle")
        return None

sys.meta_path.insert(0, Blocked())
from core.detect import decode
assert decode.cv2 is None, "OpenCV was imported"
import desktop.app, desktop.controller, core.worker.build  # the tray app and the worker it builds
import core.detect.int8, onnxruntime.quantization  # Faster (INT8) quantises on the user's machine
from core.settings import load_settings
from desktop.selftest import self_test
sys.exit(self_test(load_settings(model=sys.argv[1])))
"""


def test_the_tray_app_runs_without_what_the_bundle_leaves_out() -> None:
    model = models.shipped_fall_onnx(models.test_cache())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(model)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert "self-test: OK" in done.stdout and "best candidate below the threshold: Normal" in done.stdout
    assert "image decoder: simplejpeg" in done.stdout
