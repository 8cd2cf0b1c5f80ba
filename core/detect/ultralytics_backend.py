"""The ``ultralytics`` backend: a ``.pt`` file run by torch through Ultralytics' model loader.

For users who bring a ``.pt`` and have the export extra installed. It shares this package's
pre- and post-processing, so its answers are comparable with the ``onnx`` backend's box for box.
torch and ultralytics are imported when a detector is built, never at import time.
"""

from __future__ import annotations

import ast
import logging
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from core.detect.base import BackendConfig, Detector, DetectorError, ModelNotFound, Prepared, backend
from core.detect.decode import get_decoder
from core.detect.postprocess import Thresholds, postprocess
from core.detect.preprocess import choose_letterbox, group_by_shape, prepare_image, to_input
from core.protocol import Detection

log = logging.getLogger(__name__)

_DEVICES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "mps": "CoreMLExecutionProvider"}


class UltralyticsConfig(BackendConfig):
    type: Literal["ultralytics"] = "ultralytics"
    device: str = Field("cpu", description="a torch device: cpu, cuda, cuda:0, mps")
    threads: int | None = Field(None, ge=1, le=256, description="torch CPU threads (None: torch's default)")
    half: bool = Field(False, description="fp16 on a GPU device")


@backend
class UltralyticsDetector(Detector):
    config_class = UltralyticsConfig

    def __init__(self, config: UltralyticsConfig) -> None:
        try:
            import torch
            from ultralytics.nn.tasks import load_checkpoint
        except ImportError as exc:
            raise DetectorError(
                f"the ultralytics backend needs the export extra (pip install 'insane-ai-security[export]'): {exc}"
            ) from exc
        self._torch = torch
        self.config = config
        path = Path(config.path)
        if not path.is_file():
            raise ModelNotFound(f"model file not found: {path}")
        if config.threads:
            torch.set_num_threads(config.threads)
        self._device = torch.device(config.device)
        model, _ = load_checkpoint(str(path), device=self._device, fuse=True)
        self._model = model.eval()
        self._half = config.half and self._device.type != "cpu"
        if self._half:
            self._model.half()
        names = model.names if isinstance(model.names, dict) else dict(enumerate(model.names))
        self.labels = [str(names[i]) for i in sorted(names)]
        self.model_name = config.name or path.stem
        stride = int(max(model.stride)) if hasattr(model, "stride") else 32
        own = ast.literal_eval(str(model.args.get("imgsz", 640))) if isinstance(model.args, dict) else 640
        own = (own, own) if isinstance(own, int | float) else tuple(own)
        self._letterbox = choose_letterbox(
            fixed=None,
            own=(int(own[0]), int(own[1])),
            imgsz=config.imgsz,
            rect=config.rect,
            rect_aspect=config.rect_aspect,
            stride=stride,
            name=path.name,
        )
        self.input_size = self._letterbox.shape
        self.max_batch = None
        self._decoder = get_decoder(config.decoder)
        try:
            self._thresholds = Thresholds(self.labels, config.conf, config.classes, config.class_conf)
        except ValueError as exc:
            raise DetectorError(str(exc)) from exc
        self._lock = threading.Lock()
        log.info(
            "loaded %s on torch %s: %d classes, input %r",
            self.model_name,
            self._device,
            len(self.labels),
            self._letterbox,
        )

    @property
    def provider(self) -> str:
        return f"torch:{self._device}"

    def available_providers(self) -> list[str]:
        return [self.provider]

    def set_provider(self, name: str) -> None:
        if name != self.provider:
            raise DetectorError(f"the ultralytics backend runs on {self.provider} only (set its device instead)")

    def prepare(self, data: bytes) -> Prepared:
        return prepare_image(data, self._letterbox, self.config.max_pixels, self.config.reduced_decode, self._decoder)

    def detect(self, batch: list[Prepared]) -> list[list[Detection]]:
        results: list[list[Detection]] = [[] for _ in batch]
        for idx in group_by_shape(batch):
            part = [batch[i] for i in idx]
            for i, dets in zip(idx, self._detect_one_shape(part), strict=True):
                results[i] = dets
        return results

    def _detect_one_shape(self, batch: list[Prepared]) -> list[list[Detection]]:
        torch = self._torch
        tensor = torch.from_numpy(to_input([p.tensor for p in batch], np.float32)).to(self._device)
        if self._half:
            tensor = tensor.half()
        with torch.inference_mode():
            out = self._model(tensor)
        if isinstance(out, list | tuple):
            out = out[0]
        output = out.float().cpu().numpy()
        return postprocess(output, batch, self.labels, self._thresholds, self.config.iou, self.config.max_det)

    def close(self) -> None:
        self._model = None
