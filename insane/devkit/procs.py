"""Child processes of the benchmarks: start a server that prints where it listens, and stop one.

proc, host, port = start_listening([sys.executable, "-m", "insane", "relay", "--port", "0"], env)
...
stop(proc)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from insane.devkit import ROOT


def start_listening(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[subprocess.Popen, str, int]:
    """Run ``cmd`` and wait for its first line, ``... listening on http://HOST:PORT``."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=cwd)
    assert proc.stdout is not None  # a pipe
    line = proc.stdout.readline()
    if "listening on http://" not in line:
        proc.kill()
        raise SystemExit(f"{cmd[-1]} did not start: {line!r}")
    host, port = line.rsplit("//", 1)[1].strip().rsplit(":", 1)
    return proc, host, int(port)


def stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it has not ended within ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
