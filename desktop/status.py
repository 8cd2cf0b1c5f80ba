"""What the tray shows for a worker state: the icon's look, the tooltip line, the menu's texts.

Plain functions over the worker's state and metrics, so they are tested without Qt:

    look = look_for(snapshot.state)      # Look(kind="running", colour="#2e9d4f", label="Running")
    tooltip(snapshot)                    # "Insane AI Security: running · 3.2 img/s · queue 5"
    gpu_choice(["CUDAExecutionProvider", "CPUExecutionProvider"])   # GpuChoice(enabled=True, ...)
    lan_line("http://127.0.0.1:32168", stats)   # "DeepStack API on 127.0.0.1:32168 · 0.3 req/s"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.detect.providers import CPU, GPU_PREFERENCE, PROVIDERS, device_label, is_cpu
from core.protocol import Lane

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


def total_queue(queue_depth: Mapping[Lane, int]) -> int:
    return sum(int(n) for n in queue_depth.values())


def status_text(snapshot: Any) -> str:
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
    return f"{APP_TITLE}: {status_text(snapshot)}"


def pause_text(state: Any) -> str:
    return "Resume" if look_for(state).kind == "paused" else "Pause"


def lan_line(url: str | None, stats: Any = None, problem: str | None = None) -> str:
    """The LAN API's line for the tray: where it serves and its rate of requests; '' when it is off."""
    if problem:
        return problem  # LanError's sentence, which names the API itself
    if not url:
        return ""
    where = url.removeprefix("http://")
    rate = getattr(stats, "requests_per_s", 0.0) if stats is not None else 0.0
    return f"DeepStack API on {where} · {rate:.1f} req/s"


# ---------------------------------------------------------------------------------------------- GPU


def is_gpu_provider(name: str) -> bool:
    return not is_cpu(name)


def _short(name: str) -> str:
    return name.removesuffix("ExecutionProvider")


@dataclass(frozen=True)
class GpuChoice:
    enabled: bool
    gpu: str | None  # the provider "Use GPU" switches to
    cpu: str  # the provider it switches back to
    text: str  # the menu item's text
    reason: str  # the tooltip: why it is disabled, or what it switches to


def gpu_choice(
    available: Iterable[str],
    problems: Mapping[str, str] | None = None,
    label: Callable[[str], str | None] = device_label,
) -> GpuChoice:
    """How the "Use GPU" item looks, given the worker's available execution providers; ``problems``: for those
    this onnxruntime offers but cannot load, why (``core.detect.providers.load_problems()``); ``label`` names
    the device a provider runs on ("Intel Iris Xe", "NVIDIA GeForce RTX 3060") for the item's text."""
    names = list(available)
    # A provider this onnxruntime offers but whose libraries do not load here is no choice: the item says why.
    gpus = [n for n in names if is_gpu_provider(n) and PROVIDERS.get(n, (n, {}))[0] not in (problems or {})]
    cpu = CPU if CPU in names else next((n for n in names if not is_gpu_provider(n)), CPU)
    if not gpus:
        if problems:
            return GpuChoice(False, None, cpu, "Use GPU (cannot load)", "; ".join(problems.values()))
        reason = "no GPU execution provider is available on this PC (install a GPU build of onnxruntime)"
        return GpuChoice(False, None, cpu, "Use GPU (no GPU found)", reason)

    def rank(name: str) -> int:
        return GPU_PREFERENCE.index(name) if name in GPU_PREFERENCE else len(GPU_PREFERENCE)

    gpu = min(gpus, key=rank)  # the engine's preference; among others (min is stable) the worker's order
    device = label(gpu)
    text = f"Use GPU ({device})" if device else "Use GPU"
    on = f"{device} through {_short(gpu)}" if device else _short(gpu)
    return GpuChoice(True, gpu, cpu, text, f"run inference on {on}; off: {_short(cpu)}")


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
