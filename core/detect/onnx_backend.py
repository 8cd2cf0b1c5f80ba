"""The ``onnx`` backend: YOLOv8 ONNX models on onnxruntime (CPU, CUDA, TensorRT, DirectML, CoreML).

Two thread layouts: one session using ``threads`` intra-op threads, or ``sessions`` sessions with
``threads // sessions`` threads each, a batch split between them and run side by side (onnxruntime
releases the GIL while it runs). ``bench/detect.py`` measures both; see ``sessions``'s default.
"""

from __future__ import annotations

import ast
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from core.detect import providers as prov
from core.detect.base import BackendConfig, Detector, DetectorError, ModelNotFound, Prepared, backend
from core.detect.decode import get_decoder
from core.detect.postprocess import Thresholds, postprocess
from core.detect.precision import fp16_copy
from core.detect.preprocess import Letterbox, choose_letterbox, group_by_shape, prepare_image, to_input
from core.protocol import Detection

log = logging.getLogger(__name__)

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxConfig(BackendConfig):
    type: Literal["onnx"] = "onnx"
    providers: tuple[str, ...] | None = Field(None, description="provider names in order of preference")
    use_gpu: bool = Field(False, description="prefer a GPU provider when no explicit list is given")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    sessions: int | None = Field(
        None,
        ge=1,
        le=64,
        description="1: one session with all threads; N: N sessions with threads/N each, a batch split among "
        "them; None: one single-thread session per thread on the CPU (measured faster, bench/detect.py), "
        "one session on a GPU",
    )
    precision: Literal["auto", "fp32", "fp16", "int8"] = Field(
        "auto",
        description="auto: fp16 on a GPU, INT8 on TensorRT where the model is quantised or has a calibration "
        "table (NAME.calib); fp32/fp16/int8 force it where the provider allows",
    )
    cache_dir: str | None = Field(
        None, description="a folder for TensorRT engines, fp16 model copies and OpenVINO compiled models"
    )
    io_binding: bool | None = Field(
        None, description="bind input and output buffers (None: on CUDA, TensorRT and DirectML, not on the CPU)"
    )
    profile_batch: int = Field(64, ge=1, le=1024, description="the largest batch TensorRT builds its engine for")


def read_metadata(session: Any) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map or {})


def labels_from_metadata(meta: dict[str, str], nc: int | None) -> list[str]:
    names = meta.get("names")
    if names:
        try:
            parsed = ast.literal_eval(names)
        except (ValueError, SyntaxError) as exc:
            raise DetectorError(f"model metadata 'names' is not readable: {names[:80]!r}") from exc
        if isinstance(parsed, dict):
            return [str(parsed[i]) for i in sorted(parsed)]
        return [str(n) for n in parsed]
    if nc is None:
        raise DetectorError("the model has no class names in its metadata and a dynamic output shape")
    return [f"class{i}" for i in range(nc)]


def run_bound(session: Any, input_name: str, output_name: str, tensor: np.ndarray) -> np.ndarray:
    """``session.run`` through I/O binding: the batch goes to the device once, straight from our buffer, and
    the output comes back once into memory onnxruntime allocates on the host (no staging copy either way)."""
    binding = session.io_binding()
    binding.bind_cpu_input(input_name, np.ascontiguousarray(tensor))
    binding.bind_output(output_name, "cpu")
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]


@backend
class OnnxDetector(Detector):
    config_class = OnnxConfig

    def __init__(self, config: OnnxConfig) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.config = config
        self.path = Path(config.path)
        if not self.path.is_file():
            raise ModelNotFound(f"model file not found: {self.path}")
        self.model_name = config.name or self.path.stem
        self._lock = threading.Lock()
        self._pending: str | None = None
        self._context_cache: prov.ProviderContext | None = None
        self.provider_note = ""  # the log line saying which provider runs and why
        self._provider, self._sessions = self._open_best()
        first = self._sessions[0]
        inp = first.get_inputs()[0]
        out = first.get_outputs()[0]
        self._input_name, self._output_name = inp.name, out.name
        if inp.type not in _DTYPES:
            raise DetectorError(f"{self.path.name}: input type {inp.type} is not supported (float or float16)")
        self.dtype = np.dtype(_DTYPES[inp.type])
        meta = read_metadata(first)
        nc = out.shape[1] - 4 if isinstance(out.shape[1], int) else None
        self.labels = labels_from_metadata(meta, nc)
        self._letterbox = self._choose_letterbox(inp.shape, meta)
        self.input_size = self._letterbox.shape
        b = inp.shape[0]
        self.max_batch = b if isinstance(b, int) else None
        self._decoder = get_decoder(config.decoder)
        try:
            self._thresholds = Thresholds(self.labels, config.conf, config.classes, config.class_conf)
        except ValueError as exc:
            raise DetectorError(str(exc)) from exc
        self._buffer = np.empty(0, self.dtype)  # one batch's input, reused: shapes vary, so it is flat
        self._bind = self._wants_binding(self._provider)
        self._pool = self._make_pool()
        log.info(
            "loaded %s: %d classes, input %r %s, batch %s, %s × %d session(s)",
            self.model_name,
            len(self.labels),
            self._letterbox,
            self.dtype,
            self.max_batch or "dynamic",
            self._provider,
            len(self._sessions),
        )

    def _choose_letterbox(self, shape: list[Any], meta: dict[str, str]) -> Letterbox:
        cfg = self.config
        fixed = (shape[2], shape[3]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
        try:
            own: tuple[int, int] | None = None
            if "imgsz" in meta:
                h, w = (int(v) for v in ast.literal_eval(meta["imgsz"]))  # a pair, or ValueError
                own = (h, w)
            stride = int(meta.get("stride", 32))
        except (ValueError, SyntaxError, TypeError) as exc:
            raise DetectorError(f"{self.path.name}: unreadable imgsz/stride in its metadata ({exc})") from exc
        return choose_letterbox(
            fixed=fixed,
            own=own,
            imgsz=cfg.imgsz,
            rect=cfg.rect,
            rect_aspect=cfg.rect_aspect,
            stride=stride,
            name=self.path.name,
        )

    # ----- choosing and opening the execution provider ------------------------------------------

    def _open_best(self) -> tuple[str, list[Any]]:
        """Sessions on the first provider that really loads, in the configured or default order; one log line."""
        cfg = self.config
        order, refused = prov.candidates(list(cfg.providers) if cfg.providers else None, cfg.use_gpu)
        last: DetectorError | None = None
        for name in order:
            try:
                sessions, notes = self._open(name)
            except DetectorError as exc:
                if name == prov.CPU:
                    raise
                refused.append((name, str(exc)))
                last = exc
                continue
            self.provider_note = prov.explain(name, refused, cfg.use_gpu, notes)
            log.info("%s: %s", self.path.name, self.provider_note)
            return name, sessions
        raise last or DetectorError(f"{self.path.name}: no execution provider could load it")

    def _context(self, provider: str) -> prov.ProviderContext | None:
        """The per-model options' inputs (TensorRT's profile shapes, caches, precision), read once from a CPU
        session: TensorRT needs the input shape before it builds its engine. Other providers need none."""
        if prov.PROVIDERS[provider][0] not in prov.CONTEXT_PROVIDERS:
            return None
        if self._context_cache is None:
            cfg = self.config
            probe = self._ort.InferenceSession(str(self.path), providers=[prov.CPU])
            inp = probe.get_inputs()[0]
            meta = read_metadata(probe)
            dynamic = not all(isinstance(d, int) for d in inp.shape)
            self._context_cache = prov.ProviderContext(
                model=self.path,
                input_name=inp.name,
                input_hw=self._choose_letterbox(inp.shape, meta).shape if dynamic else None,
                max_batch=cfg.profile_batch,
                cache_dir=prov.engine_cache_dir(cfg.cache_dir),
                precision=cfg.precision,
                quantized="quantization" in meta,
                float32=inp.type == "tensor(float)",
            )
        return self._context_cache

    def _model_for(self, provider: str, ctx: prov.ProviderContext | None, notes: list[str]) -> Path:
        """The file a provider loads: on CUDA with fp16 wanted, a float16 copy of a float32 model."""
        if ctx is None or not prov.wants_fp16_copy(provider, ctx):
            return self.path
        try:
            path = fp16_copy(self.path, ctx.cache_dir or self.path.parent)
        except DetectorError as exc:
            notes.append(f"fp32 ({exc})")
            return self.path
        notes.append("fp16 (a float16 copy of the model)")
        return path

    def _open(self, provider: str) -> tuple[list[Any], list[str]]:
        ort = self._ort
        n = self.config.sessions
        if n is None:
            n = min(self.config.threads, 8) if prov.PROVIDERS[provider][0] == prov.CPU else 1
        threads = max(1, self.config.threads // n)
        ctx = self._context(provider)
        providers, notes = prov.provider_plan(provider, ctx)
        path = self._model_for(provider, ctx, notes)
        sessions = []
        for _ in range(n):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Memory patterns are planned and kept per input shape; frames of several aspects would keep
            # one plan each (about 50 MB for YOLOv8n at 640). The arena still reuses its blocks. (DirectML
            # refuses them anyway.)
            opts.enable_mem_pattern = False
            try:
                # onnxruntime warns (not raises) when a provider is missing from its build, and runs on the CPU.
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    session = ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as exc:  # onnxruntime's pybind errors share no base but Exception
                raise DetectorError(f"cannot load {self.path.name}: {exc}") from exc
            if not prov.loaded(session, provider):
                said = f" ({caught[0].message})" if caught else " (its libraries or the device are missing)"
                raise DetectorError(f"onnxruntime fell back to the CPU{said}")
            sessions.append(session)
        return sessions, notes

    @staticmethod
    def _wants_binding(provider: str) -> bool:
        return prov.PROVIDERS[provider][0] in prov.DEVICE_PROVIDERS

    def _make_pool(self) -> ThreadPoolExecutor | None:
        return ThreadPoolExecutor(len(self._sessions), "onnx") if len(self._sessions) > 1 else None

    @property
    def provider(self) -> str:
        return self._provider

    def available_providers(self) -> list[str]:
        return prov.available()

    def set_provider(self, name: str) -> None:
        if name not in self.available_providers():
            raise DetectorError(f"execution provider {name!r} is not available here ({self.available_providers()})")
        with self._lock:
            self._pending = name

    def prepare(self, data: bytes) -> Prepared:
        return prepare_image(data, self._letterbox, self.config.max_pixels, self.config.reduced_decode, self._decoder)

    def _switch_if_asked(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None or pending == self._provider:
            return
        sessions, notes = self._open(pending)  # a failure leaves the current provider in place
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._sessions, self._provider = sessions, pending
        self._bind = self._wants_binding(pending)
        self._pool = self._make_pool()
        log.info("%s now runs on %s", self.model_name, prov.explain(pending, [], True, notes))

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Raw model output for a ready batch tensor, split among the sessions."""
        n = len(tensor)
        if self._pool is None or n < 2:
            return self._run_one(self._sessions[0], tensor)
        parts = np.array_split(np.arange(n), min(n, len(self._sessions)))
        futures = [
            self._pool.submit(self._run_one, s, tensor[idx[0] : idx[-1] + 1])
            for s, idx in zip(self._sessions, parts, strict=False)
        ]
        return np.concatenate([f.result() for f in futures])

    def _run_one(self, session: Any, tensor: np.ndarray) -> np.ndarray:
        if (fixed := self.max_batch) is not None and len(tensor) != fixed:
            chunks = []
            for i in range(0, len(tensor), fixed):
                part = tensor[i : i + fixed]
                k = len(part)
                if k < fixed:
                    part = np.concatenate([part, np.zeros((fixed - k, *part.shape[1:]), part.dtype)])
                chunks.append(self._session_run(session, part)[:k])
            out = np.concatenate(chunks)
        elif prov.PROVIDERS[self._provider][0] == prov.CPU and len(tensor) > 1:
            # On the CPU a batch gains nothing (measured: the same CPU per image), while every image in one
            # call holds its activations in the session's arena at once: one image a call keeps the worker
            # 40-80 MB lighter with YOLOv8n.
            out = np.concatenate([session.run([self._output_name], {self._input_name: t[None]})[0] for t in tensor])
        else:
            out = self._session_run(session, tensor)
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def _session_run(self, session: Any, tensor: np.ndarray) -> np.ndarray:
        if self.config.io_binding if self.config.io_binding is not None else self._bind:
            return run_bound(session, self._input_name, self._output_name, tensor)
        return session.run([self._output_name], {self._input_name: tensor})[0]

    def detect(self, batch: list[Prepared]) -> list[list[Detection]]:
        """Detections per image; a batch of mixed input shapes runs as one model call per shape."""
        if not batch:
            return []
        self._switch_if_asked()
        results: list[list[Detection]] = [[] for _ in batch]
        for idx in group_by_shape(batch):
            part = [batch[i] for i in idx]
            output = self.run(self._input(part))
            found = postprocess(output, part, self.labels, self._thresholds, self.config.iou, self.config.max_det)
            for i, dets in zip(idx, found, strict=True):
                results[i] = dets
        return results

    def _input(self, part: list[Prepared]) -> np.ndarray:
        shape = (len(part), *part[0].tensor.shape)
        size = int(np.prod(shape))
        if self._buffer.size < size:
            self._buffer = np.empty(size, self.dtype)
        return to_input([p.tensor for p in part], self.dtype, self._buffer[:size].reshape(shape))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._sessions = []
