"""onnxruntime execution providers by name, the order we prefer them in, and how each is opened.

    plan = candidates(None, use_gpu=True)                 # ["TensorrtExecutionProvider", ..., "CPUExecutionProvider"]
    providers = session_providers(name, ProviderContext(...))   # the InferenceSession's ``providers=``
    used = loaded(session, name)                          # False: onnxruntime fell back to the CPU
    log.info("%s", explain(chosen, refused, use_gpu))    # one line: which provider, and why

``PROVIDERS`` maps the name a user or the tray app sees to the onnxruntime provider and its fixed options;
tests (or a packager) may add an entry, e.g. a second CPU-backed name to exercise switching. Options that
depend on the model and the machine (TensorRT's fp16/INT8 and engine cache, OpenVINO's cache) are added by
:func:`session_providers`.

Which providers exist comes from ``onnxruntime.get_available_providers()``, the one seam tests replace
(:func:`offered`). onnxruntime-gpu lists TensorRT and CUDA even where their libraries or the GPU are
missing; a session asked for them then runs on the CPU. So a provider counts as used only when the session
reports it first (:func:`loaded`), and the detector tries the next one otherwise.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROVIDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "TensorrtExecutionProvider": ("TensorrtExecutionProvider", {}),
    "CUDAExecutionProvider": ("CUDAExecutionProvider", {}),
    # An Intel GPU (integrated or Arc) through onnxruntime-openvino, which replaces the onnxruntime package.
    "OpenVINOExecutionProvider": ("OpenVINOExecutionProvider", {"device_type": "GPU"}),
    "DmlExecutionProvider": ("DmlExecutionProvider", {}),
    "CoreMLExecutionProvider": ("CoreMLExecutionProvider", {}),
    # OpenVINO on the processor: often faster than the default CPU provider on Intel CPUs; never chosen alone.
    "OpenVINOCPU": ("OpenVINOExecutionProvider", {"device_type": "CPU"}),
    "CPUExecutionProvider": ("CPUExecutionProvider", {}),
}

GPU_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)
CPU = "CPUExecutionProvider"
# Names that run on the processor: the tray's "Use GPU" never switches to them.
CPU_NAMES = frozenset({CPU, "OpenVINOCPU"})
# Providers whose options depend on the model (shapes, precision, caches): see ProviderContext.
CONTEXT_PROVIDERS = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider"})
# Providers whose session needs the tensors bound to device memory to avoid a second copy.
DEVICE_PROVIDERS = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider"})


def offered() -> list[str]:
    """What this onnxruntime build offers (the seam tests replace to play another build)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


# Providers that onnxruntime loads from a library of their own, which needs NVIDIA's libraries on the PC.
# onnxruntime lists them as available whether or not those load, and a session asked for one that cannot
# load quietly runs on the CPU; :func:`load_problem` finds out first, and says why.
PROVIDER_LIBRARIES = {
    "CUDAExecutionProvider": "onnxruntime_providers_cuda",
    "TensorrtExecutionProvider": "onnxruntime_providers_tensorrt",
}


def load_problems() -> dict[str, str]:
    """``{provider: why it cannot load}`` for the providers onnxruntime offers but cannot load on this PC."""
    have = set(offered())
    found = {name: load_problem(name) for name in PROVIDER_LIBRARIES if name in have}
    return {name: why for name, why in found.items() if why is not None}


@functools.cache
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
        # Elsewhere winmode is ignored.
        ctypes.CDLL(str(path), winmode=0x8 if sys.platform == "win32" else None)
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


def openvino_devices() -> list[str]:
    """OpenVINO's device ids (``CPU``, ``GPU``, ``GPU.0``, ``NPU``…) where onnxruntime-openvino is installed."""
    try:
        from onnxruntime.capi import _pybind_state as capi
    except ImportError:
        return []
    lister = getattr(capi, "get_available_openvino_device_ids", None)
    if lister is None:
        return []
    try:
        return list(lister())
    except RuntimeError as exc:  # OpenVINO could not enumerate (a broken GPU driver): only the CPU is certain
        log.warning("OpenVINO cannot list its devices: %s", exc)
        return []


def is_cpu(name: str) -> bool:
    return name in CPU_NAMES or name.strip().lower() == "cpu"


def _device_present(name: str, devices: list[str] | None) -> bool:
    ort_name, options = PROVIDERS[name]
    if ort_name != "OpenVINOExecutionProvider":
        return True
    wanted = str(options.get("device_type", "CPU"))
    found = openvino_devices() if devices is None else devices
    return any(d == wanted or d.startswith(wanted + ".") for d in found)


def available(offers: Iterable[str] | None = None, devices: list[str] | None = None) -> list[str]:
    """Names from :data:`PROVIDERS` this installation offers, in map order (OpenVINO: its device too)."""
    have = set(offered() if offers is None else offers)
    return [name for name, (ort_name, _) in PROVIDERS.items() if ort_name in have and _device_present(name, devices)]


def candidates(
    preference: list[str] | None, use_gpu: bool, offers: Iterable[str] | None = None, devices: list[str] | None = None
) -> tuple[list[str], list[tuple[str, str]]]:
    """(names to try in order, ending with the CPU; [(name, why it is not tried)]).

    Default order: TensorRT → CUDA → OpenVINO GPU → DirectML → CoreML → CPU when ``use_gpu``, else the CPU.
    """
    if preference is None:
        preference = [*GPU_PREFERENCE, CPU] if use_gpu else [CPU]
    offers = list(offered() if offers is None else offers)
    have = available(offers, devices)
    tried: list[str] = []
    skipped: list[tuple[str, str]] = []
    for name in preference:
        if name in have:
            tried.append(name)
        elif name not in PROVIDERS:
            skipped.append((name, "unknown provider name"))
        elif PROVIDERS[name][0] not in offers:
            skipped.append((name, "not in this onnxruntime build"))
        else:
            skipped.append((name, f"no {PROVIDERS[name][1].get('device_type', '')} device here".replace("  ", " ")))
    if CPU not in tried:
        tried.append(CPU)
    return tried, skipped


def choose(preference: list[str] | None, use_gpu: bool, offers: Iterable[str] | None = None) -> str:
    """The first available provider of ``preference`` (default: GPUs first when ``use_gpu``, then CPU)."""
    return candidates(preference, use_gpu, offers)[0][0]


@dataclass(frozen=True)
class ProviderContext:
    """What the per-model options are made from.

    ``cache_dir``: TensorRT engines and OpenVINO compiled blobs (a volume in the container, so a restart
    does not rebuild them). ``precision``: ``auto`` is fp16 on a GPU, plus INT8 on TensorRT where the model
    carries its quantisation (a ``NAME-int8`` model) or a calibration table lies beside it.
    """

    model: Path
    input_name: str = "images"
    input_hw: tuple[int, int] | None = None  # None: a fixed-shape model (no TensorRT profile needed)
    max_batch: int = 64
    cache_dir: Path | None = None
    precision: str = "auto"  # auto | fp32 | fp16 | int8
    quantized: bool = False  # the model holds QuantizeLinear/DequantizeLinear nodes (quantize.py's output)
    float32: bool = True  # the model's input is float32 (an fp16 export is already half)

    def calibration_table(self) -> Path | None:
        """TensorRT's INT8 calibration table for this model: ``NAME.calib`` beside it or in the cache."""
        for folder in (self.model.parent, self.cache_dir):
            if folder is not None and (table := Path(folder) / f"{self.model.stem}.calib").is_file():
                return table
        return None


def _tensorrt_options(ctx: ProviderContext) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    opts: dict[str, Any] = {}
    fp16 = ctx.precision in ("auto", "fp16", "int8")
    opts["trt_fp16_enable"] = fp16
    notes.append("fp16" if fp16 else "fp32")
    table = ctx.calibration_table()
    if ctx.precision in ("auto", "int8") and (ctx.quantized or table is not None):
        opts["trt_int8_enable"] = True
        if table is not None and not ctx.quantized:
            opts["trt_int8_calibration_table_name"] = table.name
            opts["trt_int8_use_native_calibration_table"] = False
            notes.append(f"INT8 (calibration table {table.name})")
        else:
            notes.append("INT8 (the model's own quantisation)")
    elif ctx.precision == "int8":
        notes.append("no INT8: no calibration data (insane model quantize, or NAME.calib beside the model)")
    if ctx.cache_dir is not None:
        # Engines are keyed by model, shapes and GPU: a restart with the same model and GPU loads them.
        opts.update(
            trt_engine_cache_enable=True,
            trt_engine_cache_path=str(ctx.cache_dir),
            trt_timing_cache_enable=True,
            trt_timing_cache_path=str(ctx.cache_dir),
        )
        notes.append(f"engine cache {ctx.cache_dir}")
    if ctx.input_hw is not None:
        h, w = ctx.input_hw
        shape = f"{ctx.input_name}:{{}}x3x{h}x{w}"
        opts["trt_profile_min_shapes"] = shape.format(1)
        opts["trt_profile_opt_shapes"] = shape.format(max(1, ctx.max_batch // 2))
        opts["trt_profile_max_shapes"] = shape.format(ctx.max_batch)
    return opts, notes


def wants_fp16_copy(name: str, ctx: ProviderContext) -> bool:
    """CUDA runs what it is given: fp16 there means a float16 copy of a float32, unquantised model."""
    return (
        PROVIDERS[name][0] == "CUDAExecutionProvider"
        and ctx.precision in ("auto", "fp16")
        and ctx.float32
        and not ctx.quantized
    )


def session_providers(name: str, ctx: ProviderContext | None = None) -> list[Any]:
    """The ``providers=`` argument for an InferenceSession on ``name``, with the CPU as fallback."""
    return provider_plan(name, ctx)[0]


def provider_plan(name: str, ctx: ProviderContext | None = None) -> tuple[list[Any], list[str]]:
    """(the ``providers=`` argument, notes for the log line: precision, caches)."""
    ort_name, fixed = PROVIDERS[name]
    options = dict(fixed)
    notes: list[str] = []
    if ctx is not None and ort_name == "TensorrtExecutionProvider":
        extra, notes = _tensorrt_options(ctx)
        options.update(extra)
    elif ctx is not None and ort_name == "OpenVINOExecutionProvider":
        if options.get("device_type") == "GPU" and ctx.precision in ("auto", "fp16"):
            options["precision"] = "FP16"
            notes.append("fp16")
        if ctx.cache_dir is not None:
            options["cache_dir"] = str(ctx.cache_dir)
    chosen: list[Any] = [(ort_name, options)]
    if ort_name == "TensorrtExecutionProvider":
        chosen.append("CUDAExecutionProvider")  # the nodes TensorRT cannot take run on CUDA, not the CPU
    if ort_name != CPU:
        chosen.append(CPU)
    return chosen, notes


def loaded(session: Any, name: str) -> bool:
    """Whether ``session`` really runs on ``name``'s provider (onnxruntime silently falls back to the CPU)."""
    used = session.get_providers()
    return bool(used) and used[0] == PROVIDERS[name][0]


def explain(chosen: str, refused: list[tuple[str, str]], use_gpu: bool, notes: list[str] | None = None) -> str:
    """One log line: the provider in use, its precision and caches, and why each one before it was not used
    (in the order of preference; names refused for the same reason share it)."""
    label = device_label(chosen)
    head = f"execution provider: {chosen}" + (f" ({label})" if label else "")
    if notes:
        head += f", {', '.join(notes)}"
    order = {name: i for i, name in enumerate(PROVIDERS)}
    reasons: dict[str, list[str]] = {}
    for name, why in sorted(refused, key=lambda r: order.get(r[0], len(order))):
        reasons.setdefault(why, []).append(name)
    if reasons:
        head += "; not used: " + "; ".join(f"{', '.join(names)}: {why}" for why, names in reasons.items())
    elif is_cpu(chosen):
        head += "; " + ("no GPU provider was asked for" if not use_gpu else "the CPU was asked for")
    return head


# ----------------------------------------------------------------------------------------- device names

_PCI_IDS = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"))
_VENDORS = {"0x8086": "Intel", "0x1002": "AMD", "0x10de": "NVIDIA"}


def _tidy(name: str) -> str:
    name = re.sub(r"\((R|TM|C)\)|®|™", "", name, flags=re.I)
    name = re.sub(r"\b(Corporation|Graphics|Controller)\b", "", name)
    return re.sub(r"\s+", " ", name).strip(" ,")


def pci_name(vendor: str, device: str, ids: Iterable[Path] = _PCI_IDS) -> str | None:
    """The marketing name from pci.ids (``[Iris Xe Graphics]`` in 'TigerLake-LP GT2 [Iris Xe Graphics]')."""
    v, d = vendor.lower().removeprefix("0x"), device.lower().removeprefix("0x")
    for path in ids:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        in_vendor = False
        for line in lines:
            if not line or line.startswith("#"):
                continue
            if not line.startswith("\t"):
                in_vendor = line.lower().startswith(v + " ")
            elif in_vendor and not line.startswith("\t\t") and line[1:].lower().startswith(d + " "):
                full = line[1:].split(" ", 1)[1].strip()
                inner = re.search(r"\[([^\]]+)\]", full)
                return inner.group(1) if inner else full
    return None


def linux_gpus(sysfs: Path = Path("/sys/class/drm"), ids: Iterable[Path] = _PCI_IDS) -> list[tuple[str, str]]:
    """(vendor, tidy name) of each display device the kernel drives (``cardN``), e.g. ("Intel", "Intel Iris Xe")."""
    found: list[tuple[str, str]] = []
    for card in sorted(sysfs.glob("card[0-9]*")):
        if "-" in card.name:  # card0-HDMI-A-1: a connector, not a device
            continue
        try:
            vendor = (card / "device" / "vendor").read_text().strip()
            device = (card / "device" / "device").read_text().strip()
        except OSError:
            continue
        brand = _VENDORS.get(vendor.lower(), vendor)
        model = pci_name(vendor, device, ids)
        name = _tidy(f"{brand} {model}" if model and not model.startswith(brand) else model or f"{brand} {device}")
        found.append((brand, name))
    return found


def nvidia_gpus(proc: Path = Path("/proc/driver/nvidia/gpus")) -> list[str]:
    """GPU model names the NVIDIA driver reports (Linux), e.g. 'NVIDIA GeForce RTX 3060'."""
    names = []
    for info in sorted(proc.glob("*/information")):
        try:
            text = info.read_text()
        except OSError:
            continue
        if m := re.search(r"^Model:\s*(.+)$", text, re.M):
            names.append(m.group(1).strip())
    return names


@functools.lru_cache(maxsize=32)
def device_label(name: str) -> str | None:
    """A short name of the device ``name`` runs on, for the tray's menu (None: nothing better than the name)."""
    if is_cpu(name) or name not in PROVIDERS:
        return None
    ort_name, _ = PROVIDERS[name]
    if ort_name in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        gpus = nvidia_gpus() if sys.platform.startswith("linux") else []
        return _tidy(gpus[0]) if gpus else "NVIDIA"
    if ort_name == "OpenVINOExecutionProvider":
        intel = [n for brand, n in linux_gpus() if brand == "Intel"] if sys.platform.startswith("linux") else []
        return intel[0] if intel else "Intel GPU"
    if ort_name == "DmlExecutionProvider":
        return "DirectML"
    if ort_name == "CoreMLExecutionProvider":
        return "Apple CoreML"
    return None


def engine_cache_dir(configured: str | os.PathLike[str] | None) -> Path | None:
    """The TensorRT/OpenVINO cache folder, created; None when not configured."""
    if not configured:
        return None
    path = Path(configured)
    path.mkdir(parents=True, exist_ok=True)
    return path
