"""onnxruntime execution providers by name, and the order we prefer them in.

``PROVIDERS`` maps the name a user or the tray app sees to the onnxruntime provider and its options;
tests (or a packager) may add an entry, e.g. a second CPU-backed name to exercise switching.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache
from pathlib import Path
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


# Providers that onnxruntime loads from a library of their own, which needs NVIDIA's libraries on the PC.
# onnxruntime lists them as available whether or not those load, and a session asked for one that cannot
# load quietly runs on the CPU; :func:`load_problem` finds out first, and says why.
PROVIDER_LIBRARIES = {
    "CUDAExecutionProvider": "onnxruntime_providers_cuda",
    "TensorrtExecutionProvider": "onnxruntime_providers_tensorrt",
}


def available() -> list[str]:
    """Names from :data:`PROVIDERS` that this installation offers and can load, in map order."""
    import onnxruntime as ort

    offered = set(ort.get_available_providers())
    return [
        name
        for name, (ort_name, _) in PROVIDERS.items()
        if ort_name in offered and (ort_name == CPU or load_problem(ort_name) is None)
    ]


def load_problems() -> dict[str, str]:
    """``{provider: why it cannot load}`` for the providers onnxruntime offers but cannot load on this PC."""
    import onnxruntime as ort

    offered = set(ort.get_available_providers())
    found = {name: load_problem(name) for name in PROVIDER_LIBRARIES if name in offered}
    return {name: why for name, why in found.items() if why is not None}


@cache
def load_problem(ort_name: str, capi: Path | None = None) -> str | None:
    """Why the provider's own library does not load here (e.g. ``libcublasLt.so.12: cannot open shared object
    file``), or None: it loads, or the provider has no library of its own."""
    stem = PROVIDER_LIBRARIES.get(ort_name)
    if stem is None:
        return None
    if capi is None:
        import onnxruntime as ort

        capi = Path(ort.__file__).parent / "capi"
    path = capi / (f"{stem}.dll" if sys.platform == "win32" else f"lib{stem}.so")
    if not path.is_file():
        return f"{ort_name} is not in this onnxruntime ({path.name} is missing)"
    try:
        # Windows: LOAD_WITH_ALTERED_SEARCH_PATH, the search onnxruntime itself uses (its folder, then PATH).
        ctypes.CDLL(str(path), **({"winmode": 0x8} if sys.platform == "win32" else {}))
    except OSError as exc:
        return f"{ort_name.removesuffix('ExecutionProvider')} cannot load: {exc}{_needs(capi)}"
    return None


def _needs(capi: Path) -> str:
    """What the installed onnxruntime was built against, from its build_and_package_info.py (GPU builds)."""
    try:
        text = (capi / "build_and_package_info.py").read_text(encoding="utf-8")
    except OSError:
        return ""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key.strip()] = value.strip().strip("'\"")
    cuda = info.get("cuda_version", "")
    if not cuda:
        return ""
    major = cuda.split(".")[0]
    return (
        f" ({info.get('package_name', 'onnxruntime')} {info.get('__version__', '')} needs the CUDA {major} runtime "
        f"and cuDNN 9 for CUDA {major}; running on the CPU)"
    )


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
