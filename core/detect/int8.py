"""Faster (INT8): quantise the model on the user's own moments, and keep the copy only where it pays off.

    trial = try_int8(Path("yolov8n.onnx"), model_dir, moments, threads=4)   # moments: recent JPEG bytes
    trial.use          # True: faster on this machine and its boxes agree with fp32's
    trial.message      # one sentence for Settings, either way
    load_trial(model_dir, "yolov8n")                                     # the last trial of that model

The copy is static INT8 (core/detect/quantize.py) calibrated on the moments. Then an A/B on the same
machine, on the same moments: the full path (JPEG bytes to boxes) of each model in alternating rounds, so
the machine's drift falls on both; the speed-up is the median of the per-round ratios. Boxes agree when the
median IoU between each model's detections and the other's best match of the same class (0 for a box with
no match) is at least ``MIN_IOU``. The copy is used only when both hold; the trial is kept as JSON next to
the copy, so Settings can say what happened.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from core.detect.base import DetectorError
from core.detect.quantize import quantize_model
from core.detect.speed import alternate, measure_pipeline
from core.protocol import Detection

log = logging.getLogger(__name__)

MIN_MOMENTS = 8
MIN_IOU = 0.95
MIN_SPEEDUP = 1.05  # below this the difference is the machine's noise, not INT8


@dataclass(frozen=True)
class Int8Trial:
    source: str  # the fp32 model's name
    source_model: str  # the model setting it was tried for (a name or a path): what "back to fp32" restores
    int8: str  # the INT8 copy's name, in the model folder
    use: bool
    speedup: float  # INT8 images/s over fp32's, full path, median of alternating rounds
    median_iou: float | None  # None: neither model found anything to compare
    moments: int
    at: float  # time.time()
    message: str


def trial_path(model_dir: Path, source: str) -> Path:
    return Path(model_dir) / f"{source}-int8.trial.json"


def load_trial(model_dir: Path, source: str) -> Int8Trial | None:
    """The last trial of ``source`` on this machine, or None (never tried, or the file is unreadable)."""
    try:
        return Int8Trial(**json.loads(trial_path(model_dir, source).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def source_name(model: str) -> str:
    """The fp32 model a name refers to: ``yolov8n-int8`` → ``yolov8n``."""
    return model[: -len("-int8")] if model.endswith("-int8") else model


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_agreement(a: list[list[Detection]], b: list[list[Detection]]) -> float | None:
    """Median over every box of both answers of its best IoU with a same-class box of the other (0: none)."""
    ious = []
    for mine, theirs in ((a, b), (b, a)):
        for dets, others in zip(mine, theirs, strict=True):
            for d in dets:
                same = [_iou(d.box, o.box) for o in others if o.class_id == d.class_id]
                ious.append(max(same, default=0.0))
    return statistics.median(ious) if ious else None


def try_int8(
    model: Path,
    model_dir: Path,
    moments: Sequence[bytes],
    *,
    name: str | None = None,
    source_model: str | None = None,
    threads: int | None = None,
    rounds: int = 3,
    seconds: float = 2.0,
) -> Int8Trial:
    """Quantise ``model`` on ``moments``, A/B it against fp32 here, and record the verdict (see the module)."""
    from core.detect import load_detector

    if len(moments) < MIN_MOMENTS:
        raise DetectorError(
            f"INT8 needs at least {MIN_MOMENTS} of your own moments to calibrate on; the worker has "
            f"{len(moments)} so far: let it review a few more events first"
        )
    source = name or Path(model).stem
    result = quantize_model(Path(model), Path(model_dir), list(moments), source)
    base = {"type": "onnx", "threads": threads or os.cpu_count() or 1}
    with (
        load_detector({**base, "path": str(model)}) as fp32,
        load_detector({**base, "path": str(result.path)}) as int8,
    ):
        ours = [fp32.detect([fp32.prepare(m)])[0] for m in moments]
        theirs = [int8.detect([int8.prepare(m)])[0] for m in moments]
        runs = alternate(
            {
                "fp32": lambda: measure_pipeline(fp32, moments, 4, seconds),
                "int8": lambda: measure_pipeline(int8, moments, 4, seconds),
            },
            rounds,
        )
    speedup = statistics.median(b / a for a, b in zip(runs["fp32"], runs["int8"], strict=True))
    iou = box_agreement(ours, theirs)
    use, message = verdict(speedup, iou, len(moments))
    trial = Int8Trial(
        source=source,
        source_model=source_model or source,
        int8=result.path.stem,
        use=use,
        speedup=round(speedup, 3),
        median_iou=None if iou is None else round(iou, 3),
        moments=len(moments),
        at=time.time(),
        message=message,
    )
    if not use:  # a copy that is not used would only sit in the model list looking like a choice
        result.path.unlink(missing_ok=True)
    path = trial_path(model_dir, source)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(asdict(trial)))
    os.replace(part, path)
    log.info("INT8 trial of %s: %s", source, trial.message)
    return trial


def verdict(speedup: float, iou: float | None, moments: int) -> tuple[bool, str]:
    """(use the INT8 copy?, the sentence Settings shows) for a measured speed-up and box agreement."""
    use = speedup >= MIN_SPEEDUP and iou is not None and iou >= MIN_IOU
    agree = "no boxes to compare" if iou is None else f"boxes agree at a median IoU of {iou:.2f}"
    measured = f"{speedup:.2f}× the speed of fp32 on this PC, {agree}, on {moments} of your moments"
    if use:
        return True, f"using INT8: {measured}"
    if speedup < MIN_SPEEDUP:
        why = "it is not faster here"
    elif iou is None:
        why = "nothing in your moments to check its boxes against"
    else:
        why = f"its boxes differ from fp32's (median IoU below {MIN_IOU})"
    return False, f"not using INT8, {why}: {measured}"
