"""What the demo, the benchmarks and the tests share: throwaway servers, a relay, a camera, models, faults.

    from insane.devkit.services import EmbeddedServices   # throwaway Redis and PostgreSQL
    from insane.devkit.relay import RelayServer           # the relay in a thread (or serve_relay on this loop)
    from insane.devkit.client import make_tenant          # tenants, workers, events over the relay's HTTP API
    from insane.devkit.camera import ImageServer          # a camera's snapshot server on loopback
    from insane.devkit.models import export_onnx          # real test models, built or fetched once
    from insane.devkit.chaos import Chaos, Plan           # the fault harness behind bench/chaos.py

Developer tooling: the relay and the worker never import it, and the desktop bundle leaves it out
(installer/bundle_check.py). Importing this package itself costs nothing; each module imports what it needs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The source checkout this kit runs from (core/, relay/, insane/, tests/ and bench/ side by side).
ROOT = Path(__file__).resolve().parents[2]
# The `insane` command as this interpreter runs it, for child processes.
INSANE = [sys.executable, "-m", "insane"]
