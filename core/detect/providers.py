"""onnxruntime execution providers by name, and the order we prefer them in.

``PROVIDERS`` maps the name a user or the tray app sees to the onnxruntime provider and its options;
tests (or a packager) may add an entry, e.g. a second CPU-backed name to exercise switching.
"""

from __future__ import annotations

from typing import Any

PROVIDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "TensorrtExecutionProvider": ("TensorrtExecutionProvider", {}),
    "CUDAExecutionProvider": ("CUDAExecutionProvider", {}),
    "DmlExecutionProvider": ("DmlExecutionProvider", {}),
    "CoreMLExecutionProvider": ("CoreMLExecutionProvider", {}),
    "CPUExecutionProvider": ("CPUExecutionProvider", {}),
}

GPU_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)
CPU = "CPUExecutionProvider"


def available() -> list[str]:
    """Names from :data:`PROVIDERS` whose onnxruntime provider this installation offers, in map order."""
    import onnxruntime as ort

    offered = set(ort.get_available_providers())
    return [name for name, (ort_name, _) in PROVIDERS.items() if ort_name in offered]


def choose(preference: list[str] | None, use_gpu: bool) -> str:
    """The first available provider of ``preference`` (default: GPUs first when ``use_gpu``, then CPU)."""
    if preference is None:
        preference = [*GPU_PREFERENCE, CPU] if use_gpu else [CPU]
    offered = available()
    for name in preference:
        if name in offered:
            return name
    return CPU


def session_providers(name: str) -> list[Any]:
    """The ``providers=`` argument for an InferenceSession on ``name``, with the CPU as fallback."""
    ort_name, options = PROVIDERS[name]
    chosen: list[Any] = [(ort_name, dict(options))]
    if ort_name != CPU:
        chosen.append(CPU)
    return chosen
