"""What the tray shows for a worker state: the icon's look, the tooltip line, the menu's texts.

Plain functions over the worker's state and metrics, so they are tested without Qt:

    look = look_for(snapshot.state)      # Look(kind="running", colour="#2e9d4f", label="Running")
    tooltip(snapshot)                    # "Insane AI Security: running · 3.2 img/s · queue 5"
    gpu_choice(["CUDAExecutionProvider", "CPUExecutionProvider"])   # GpuChoice(enabled=True, ...)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.detect.providers import CPU, GPU_PREFERENCE

APP_TITLE = "Insane AI Security"


@dataclass(frozen=True)
class Look:
    kind: str  # running | idle | paused | error | starting | stopped: also the icon's name
    colour: str  # the icon's fill, #rrggbb
    label: str  # one word for the status line


_LOOKS = {
    "running": Look("running", "#2e9d4f", "Running"),
    "idle": Look("idle", "#3b7dd8", "Idle"),
    "paused": Look("paused", "#d99a1e", "Paused"),
    "error": Look("error", "#d0342c", "Error"),
    "starting": Look("starting", "#7a8591", "Starting"),
    "stopped": Look("stopped", "#7a8591", "Stopped"),
}
KINDS: tuple[str, ...] = tuple(_LOOKS)


def state_name(state: Any) -> str:
    """``WorkerState.RUNNING``, ``"running"`` and ``"RUNNING"`` all give ``"running"``."""
    name = getattr(state, "name", None) or getattr(state, "value", None) or str(state)
    return str(name).rsplit(".", 1)[-1].lower()


def look_for(state: Any) -> Look:
    """The look for a worker state; an unknown state shows as an error rather than as healthy."""
    return _LOOKS.get(state_name(state), _LOOKS["error"])


def total_queue(queue_depth: Mapping[str, int]) -> int:
    return sum(int(n) for n in queue_depth.values())


def status_line(snapshot: Any) -> str:
    """One line: state, throughput, queue depth; the state's detail replaces the figures on error."""
    look = look_for(snapshot.state)
    detail = (getattr(snapshot, "state_detail", "") or "").strip()
    if look.kind in ("error", "starting", "stopped") and detail:
        return f"{look.label.lower()}: {detail}"
    parts = [look.label.lower()]
    if look.kind in ("running", "idle", "paused"):
        parts.append(f"{snapshot.images_per_s:.1f} img/s")
        parts.append(f"queue {total_queue(snapshot.queue_depth)}")
    return " · ".join(parts)


def tooltip(snapshot: Any) -> str:
    # Some trays cut tooltips short; the app's name goes first so it is never the part lost.
    return f"{APP_TITLE}: {status_line(snapshot)}"


def pause_text(state: Any) -> str:
    return "Resume" if look_for(state).kind == "paused" else "Pause"


# ---------------------------------------------------------------------------------------------- GPU

_CPU_NAMES = {"cpu", CPU.lower()}


def is_gpu_provider(name: str) -> bool:
    return name.strip().lower() not in _CPU_NAMES


def _short(name: str) -> str:
    return name.removesuffix("ExecutionProvider")


@dataclass(frozen=True)
class GpuChoice:
    enabled: bool
    gpu: str | None  # the provider "Use GPU" switches to
    cpu: str  # the provider it switches back to
    text: str  # the menu item's text
    reason: str  # the tooltip: why it is disabled, or what it switches to


def gpu_choice(available: Iterable[str], problems: Mapping[str, str] | None = None) -> GpuChoice:
    """How the "Use GPU" item looks, given the worker's available execution providers and, for those this
    onnxruntime offers but cannot load, why (``core.detect.providers.load_problems()``)."""
    names = list(available)
    gpus = [n for n in names if is_gpu_provider(n)]
    cpu = next((n for n in names if not is_gpu_provider(n)), CPU)
    if not gpus:
        if problems:
            return GpuChoice(False, None, cpu, "Use GPU (cannot load)", "; ".join(problems.values()))
        reason = "no GPU execution provider is available on this PC (install a GPU build of onnxruntime)"
        return GpuChoice(False, None, cpu, "Use GPU (no GPU found)", reason)

    def rank(name: str) -> int:
        return GPU_PREFERENCE.index(name) if name in GPU_PREFERENCE else len(GPU_PREFERENCE)

    gpu = min(gpus, key=rank)  # the engine's preference; among others (min is stable) the worker's order
    return GpuChoice(True, gpu, cpu, "Use GPU", f"run inference on {_short(gpu)}; off: {_short(cpu)}")


def is_on_gpu(provider: str) -> bool:
    return bool(provider) and is_gpu_provider(provider)


# ----------------------------------------------------------------------------------------- verdicts


def verdict_text(verdict: Iterable[Any]) -> str:
    """``core.protocol.ClassVerdict`` values as one short line, most-seen class first."""
    items = sorted(verdict, key=lambda v: (-v.moments, -v.best))
    if not items:
        return "nothing seen"
    return ", ".join(f"{v.label} ×{v.moments} ({v.best:.2f})" for v in items)


def k_text(k: Mapping[str, int]) -> str:
    return " · ".join(f"{lane} {value}" for lane, value in sorted(k.items())) or "—"
