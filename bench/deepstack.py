"""DeepStack-API latency, on the worker's LAN port and through the relay, against the worker's own
single-image detect time measured in the same run.

    python bench/deepstack.py                  # a table
    python bench/deepstack.py --json           # one JSON object
    python bench/deepstack.py --requests 40 --model path/to/model.onnx

Everything local and idle, with production settings (the worker's config and detector as `insane worker`
builds them from the defaults: rect input, batch wait, threads). One 1080p JPEG, requests one at a time,
each a fresh HTTP connection as the DeepStack clients make them. Each round measures, one after the other:

1. detect: ``prepare`` + ``detect`` of the JPEG on a detector built like the worker's, in-process: the
   baseline.
2. lan: POST /v1/vision/detection to the worker's LAN API. Goal: p95 <= 1.2 x detect + 20 ms.
3. relay: the same to the relay (a 1-moment Pro event, reviewed by the same worker over the worker API).
   Goal: p95 <= 1.5 x detect + 150 ms.

Rounds interleave the three so a noisy machine slows them alike. "detect" in the goals is read two ways,
both printed: the baseline's median (the strict reading), and the baseline's own p95 (p95 against p95, the
same percentile). The server's own split (its round trip; inference with the batch wait) is printed beside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from core.detect import detector_config_from_settings, load_detector  # noqa: E402
from core.lan.server import LanConfig, LanServer  # noqa: E402
from core.settings import load_settings  # noqa: E402
from core.worker import Worker  # noqa: E402
from core.worker.build import preloader_factory, worker_config  # noqa: E402
from core.worker.http_source import HttpLeaseSource  # noqa: E402
from insane.devkit import models  # noqa: E402
from insane.devkit.client import enroll_worker, make_tenant  # noqa: E402
from insane.devkit.relay import RelayServer, fresh_database, relay_settings  # noqa: E402
from insane.devkit.services import EmbeddedServices  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def detect_once(det, jpeg: bytes) -> float:
    t0 = time.perf_counter()
    det.detect([det.prepare(jpeg)])
    return (time.perf_counter() - t0) * 1000.0


def post_once(url: str, jpeg: bytes, data: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = requests.post(url, files={"image": jpeg}, data=data, timeout=60)
    elapsed = (time.perf_counter() - t0) * 1000.0
    r.raise_for_status()
    body = r.json()
    assert body["success"] is True
    return elapsed, body


class Phase:
    def __init__(self) -> None:
        self.client_ms: list[float] = []
        self.server_ms: list[float] = []
        self.infer_ms: list[float] = []

    def add(self, elapsed: float, body: dict) -> None:
        self.client_ms.append(elapsed)
        self.server_ms.append(body["analysisRoundTripMs"])
        self.infer_ms.append(body["inferenceMs"])


class Background:
    """The worker and its LAN server on an event loop in a thread, as `insane worker` runs them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def run(args: argparse.Namespace) -> dict:
    cache = models.test_cache()
    model = Path(args.model) if args.model else models.export_onnx(models.fall_model_pt(cache), cache, 640)
    jpeg = models.sample_images()["frame1080.jpg"]
    with EmbeddedServices(durable=True) as services:  # fsync and synchronous commit on, as deployed
        db = fresh_database(services)
        with RelayServer(relay_settings(services, db)) as relay:
            tenant = make_tenant(relay.url, tier="pro")
            token = enroll_worker(relay.url).secret
            settings = load_settings(relay_url=relay.url, model=str(model), worker_token=token)
            reference = load_detector(detector_config_from_settings(settings))
            source = HttpLeaseSource(relay.url, token)
            det = load_detector(detector_config_from_settings(settings))
            worker = Worker(worker_config(settings), source, det, preloader_factory(settings))
            lan = LanServer(worker, LanConfig(host="127.0.0.1", port=0))
            bg = Background()
            running = asyncio.run_coroutine_threadsafe(worker.run(), bg.loop)
            detect_ms, lan_phase, relay_phase = [], Phase(), Phase()
            try:
                bg.call(lan.start())
                deadline = time.monotonic() + 30  # the first heartbeat marks the worker online
                while not requests.post(f"{relay.url}/v1/vision/custom/list", headers=tenant.headers).json()["models"]:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the worker never came online at the relay")
                    time.sleep(0.2)
                lan_url, relay_url = f"{lan.url}/v1/vision/detection", f"{relay.url}/v1/vision/detection"
                key = {"api_key": tenant.secret}
                detect_once(reference, jpeg), post_once(lan_url, jpeg, {}), post_once(relay_url, jpeg, key)  # warm-up
                for _ in range(args.requests):
                    detect_ms.append(detect_once(reference, jpeg))
                    lan_phase.add(*post_once(lan_url, jpeg, {}))
                    relay_phase.add(*post_once(relay_url, jpeg, key))
            finally:
                reference.close()
                bg.call(lan.stop())
                bg.call(worker.stop(drain=False))
                running.result(60)
                bg.close()
    detect, detect95 = statistics.median(detect_ms), pct(detect_ms, 95)
    lan_goal, relay_goal = 1.2 * detect + 20.0, 1.5 * detect + 150.0
    lan_ms, relay_ms = lan_phase.client_ms, relay_phase.client_ms
    return {
        "model": model.name,
        "threads": settings.worker_threads,
        "requests": args.requests,
        "detect_p50_ms": round(detect, 1),
        "detect_p95_ms": round(pct(detect_ms, 95), 1),
        "lan_p50_ms": round(pct(lan_ms, 50), 1),
        "lan_p95_ms": round(pct(lan_ms, 95), 1),
        "lan_goal_ms": round(lan_goal, 1),
        "lan_met": pct(lan_ms, 95) <= lan_goal,
        "relay_p50_ms": round(pct(relay_ms, 50), 1),
        "relay_p95_ms": round(pct(relay_ms, 95), 1),
        "relay_goal_ms": round(relay_goal, 1),
        "relay_met": pct(relay_ms, 95) <= relay_goal,
        "lan_goal_vs_detect_p95_ms": round(1.2 * detect95 + 20.0, 1),
        "lan_met_vs_detect_p95": pct(lan_ms, 95) <= 1.2 * detect95 + 20.0,
        "relay_goal_vs_detect_p95_ms": round(1.5 * detect95 + 150.0, 1),
        "relay_met_vs_detect_p95": pct(relay_ms, 95) <= 1.5 * detect95 + 150.0,
        "lan_server_p50_ms": round(pct(lan_phase.server_ms, 50), 1),
        "lan_infer_p50_ms": round(pct(lan_phase.infer_ms, 50), 1),
        "relay_server_p50_ms": round(pct(relay_phase.server_ms, 50), 1),
        "relay_infer_p50_ms": round(pct(relay_phase.infer_ms, 50), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="timed requests per phase (default 30)")
    parser.add_argument("--model", help="an ONNX model (default: the real YOLOv8s the tests build)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"model {out['model']}, {out['threads']} threads, 1080p JPEG, {out['requests']} requests a phase")
    head = f"{'':8} {'p50 ms':>8} {'p95 ms':>8} {'goal (detect p50)':>17}        {'goal (detect p95)':>17}"
    print(head + f"        {'server p50':>10} {'infer p50':>9}")
    print(f"{'detect':8} {out['detect_p50_ms']:8.1f} {out['detect_p95_ms']:8.1f}")
    for name in ("lan", "relay"):
        met = "met   " if out[f"{name}_met"] else "MISSED"
        met95 = "met   " if out[f"{name}_met_vs_detect_p95"] else "MISSED"
        print(
            f"{name:8} {out[f'{name}_p50_ms']:8.1f} {out[f'{name}_p95_ms']:8.1f} {out[f'{name}_goal_ms']:17.1f}  {met}"
            f" {out[f'{name}_goal_vs_detect_p95_ms']:17.1f}  {met95}"
            f" {out[f'{name}_server_p50_ms']:10.1f} {out[f'{name}_infer_p50_ms']:9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
