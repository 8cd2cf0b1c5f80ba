"""A float16 copy of a float32 model, for GPUs that run fp16 kernels (CUDA) without TensorRT's own fp16.

    path = fp16_copy(Path("yolov8n.onnx"), cache_dir)    # cache_dir/yolov8n-<sha12>-fp16.onnx, made once

Weights and activations become float16; the input and output stay float32 (``keep_io_types``), so the
detector feeds and reads the same tensors. Made with onnxruntime's own converter, which needs the ``onnx``
package (the GPU worker image has it; the desktop bundle does not, and runs CUDA in fp32).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from core.detect.base import DetectorError
from core.detect.download import sha256_file

log = logging.getLogger(__name__)


class NoConverter(DetectorError):
    """The onnx package is missing; the model runs as it is."""


def fp16_copy(model: Path, cache_dir: Path) -> Path:
    """``cache_dir/STEM-SHA12-fp16.onnx`` (atomically, once per source file content)."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise NoConverter(f"no fp16 copy: the onnx package is not installed ({exc})") from exc
    target = Path(cache_dir) / f"{model.stem}-{sha256_file(model)[:12]}-fp16.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + f".{os.getpid()}.part")
    try:
        converted = convert_float_to_float16(onnx.load(str(model)), keep_io_types=True)
        onnx.save(converted, str(part))
        os.replace(part, target)
    except Exception as exc:  # onnx's checker and converter errors share no base but Exception
        raise DetectorError(f"cannot make an fp16 copy of {model.name}: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)
    log.info("made %s, a float16 copy of %s", target.name, model.name)
    return target
