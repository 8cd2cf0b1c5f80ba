"""How fast the tray app shows its icon, and what it costs while there is no work.

    python bench/tray.py            # prints the figures
    python bench/tray.py --json     # one JSON object: start_to_tray_s, idle_cpu_pct, ...

It starts throwaway Redis and PostgreSQL, a relay on loopback and an enrolled worker token, then runs
``insane tray`` as a child (under Xvfb with trayer where those exist, else offscreen, where the window
stands in for the tray). start_to_tray_s: from spawning the process to its "tray ready" log line.
idle_cpu_pct: the child's CPU time over a quiet window after the worker connected, in % of one core.
Baseline in the same run: the time a bare ``python -c "import PySide6.QtWidgets"`` takes.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc; psutil elsewhere)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def start_display(tmp: Path) -> tuple[dict[str, str], list[subprocess.Popen]]:
    if not all(shutil.which(b) for b in ("Xvfb", "trayer")):
        return {"QT_QPA_PLATFORM": "offscreen"}, []
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        display = f":{fh.readline().strip()}"
    env = {"DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    trayer = subprocess.Popen(
        ["trayer", "--edge", "top", "--align", "right", "--height", "32"],
        env={**os.environ, **env},
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # trayer claims the tray selection; the app would otherwise start without a tray
    return env, [trayer, xvfb]


def baseline_qt_import_s() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import PySide6.QtWidgets"], check=True)
    return time.perf_counter() - t0


def measure(model: str, idle_s: float) -> dict[str, object]:
    from insane.devkit.client import enroll_worker
    from insane.devkit.relay import RelayServer, fresh_database, relay_settings
    from insane.devkit.services import EmbeddedServices

    with EmbeddedServices(durable=True) as services, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with RelayServer(relay_settings(services, fresh_database(services))) as relay:
            token = enroll_worker(relay.url).secret
            display_env, helpers = start_display(tmp)
            (tmp / "config.toml").write_text("")
            env = {
                **os.environ,
                **display_env,
                "INSANE_CONFIG": str(tmp / "config.toml"),
                "XDG_CONFIG_HOME": str(tmp / "cfg"),
                "XDG_RUNTIME_DIR": str(tmp / "run"),
                "INSANE_WORKER_TOKEN": token,
                "INSANE_LOG_LEVEL": "INFO",
                "ORT_DISABLE_TELEMETRY": "1",
            }
            (tmp / "run").mkdir(mode=0o700)
            lines: queue.Queue[tuple[float, str]] = queue.Queue()
            t0 = time.perf_counter()
            child = subprocess.Popen(
                [sys.executable, "-m", "insane", "tray", "--model", model, "--relay-url", relay.url],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )

            def read() -> None:
                assert child.stderr is not None  # PIPE
                for line in child.stderr:
                    lines.put((time.perf_counter(), line.rstrip()))

            threading.Thread(target=read, daemon=True).start()
            try:
                tray_at = worker_at = None
                deadline = time.monotonic() + 120
                while worker_at is None and time.monotonic() < deadline:
                    try:
                        at, line = lines.get(timeout=1)
                    except queue.Empty:
                        if child.poll() is not None:
                            raise RuntimeError("insane tray exited early") from None
                        continue
                    if "tray ready" in line and tray_at is None:
                        tray_at = at
                    if "worker started" in line or "not enrolled" in line or "FAILED" in line:
                        worker_at = at
                if tray_at is None or worker_at is None:
                    raise RuntimeError("insane tray did not report ready in 120 s")
                time.sleep(3.0)  # let the first lease long-poll and heartbeat settle
                c0, w0 = cpu_seconds(child.pid), time.perf_counter()
                time.sleep(idle_s)
                c1, w1 = cpu_seconds(child.pid), time.perf_counter()
            finally:
                child.terminate()
                try:
                    child.wait(60)
                except subprocess.TimeoutExpired:
                    child.kill()
                for proc in helpers:
                    proc.terminate()
                    proc.wait(10)
    return {
        "start_to_tray_s": round(tray_at - t0, 3),
        "start_to_worker_s": round(worker_at - t0, 3),
        "idle_cpu_pct": round(100 * (c1 - c0) / (w1 - w0), 2),
        "idle_window_s": round(w1 - w0, 1),
        "exit_code": child.returncode,
        "display": display_env.get("QT_QPA_PLATFORM"),
        "baseline_qt_import_s": round(baseline_qt_import_s(), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", help="a .onnx path (default: the test cache's fall model)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle CPU window")
    args = parser.parse_args()
    model = args.model
    if model is None:
        from insane.devkit import models

        model = str(models.shipped_fall_onnx(models.test_cache()))
    figures = measure(model, args.idle)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
