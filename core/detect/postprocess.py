"""From the YOLOv8 output ``(batch, 4 + nc, anchors)`` to detections in the original image's pixels.

Same answers as Ultralytics' ``non_max_suppression`` (best class per box, confidence strictly above the
threshold, class allow-list applied after the best class is chosen, class-aware greedy NMS by offsetting
boxes per class, at most ``max_det`` per image) and ``scale_boxes`` (remove padding, divide by the gain,
clip to the image), in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.detect.base import Prepared
from core.protocol import Detection

MAX_WH = 7680  # per-class box offset for class-aware NMS (Ultralytics' value)
MAX_NMS = 30000


class Thresholds:
    """Per-class minimum confidence and allow-list, resolved from names to class ids once."""

    def __init__(
        self, labels: Sequence[str], conf: float, classes: Sequence[str] | None, class_conf: dict[str, float]
    ) -> None:
        by_name = {name.lower(): i for i, name in enumerate(labels)}
        unknown = [n for n in (*(classes or ()), *class_conf) if n.lower() not in by_name]
        if unknown:
            raise ValueError(f"unknown class name(s) {', '.join(map(repr, unknown))}; the model has {list(labels)}")
        self.conf = conf
        self.per_class = np.full(len(labels), conf, np.float32)
        for name, value in class_conf.items():
            self.per_class[by_name[name.lower()]] = value
        self.allowed: np.ndarray | None = None
        if classes is not None:
            self.allowed = np.zeros(len(labels), bool)
            self.allowed[[by_name[n.lower()] for n in classes]] = True
        self.min_conf = float(self.per_class.min()) if len(labels) else conf


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy NMS, highest score first (torchvision.ops.nms semantics: drop IoU > iou)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    alive = np.ones(len(order), bool)
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = np.nonzero(alive[i + 1 :])[0] + i + 1
        if not len(rest):
            break
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        alive[rest[inter / (areas[i] + areas[rest] - inter) > iou]] = False
    return order[np.asarray(keep, np.intp)]


def postprocess(
    output: np.ndarray,
    batch: Sequence[Prepared],
    labels: Sequence[str],
    thresholds: Thresholds,
    iou: float,
    max_det: int = 300,
) -> list[list[Detection]]:
    """Detections per image for a raw output of shape ``(len(batch), 4 + nc, anchors)``."""
    nc = len(labels)
    if output.ndim != 3 or output.shape[1] < 4 + nc:
        raise ValueError(f"model output has shape {output.shape}; expected (batch, {4 + nc}, anchors)")
    scores_all = output[:, 4 : 4 + nc, :]
    best = scores_all.max(1)  # (B, N), one pass for the whole batch
    results: list[list[Detection]] = []
    for b, prep in enumerate(batch):
        cand = np.nonzero(best[b] > thresholds.min_conf)[0]
        if not len(cand):
            results.append([])
            continue
        cls = scores_all[b][:, cand].argmax(0)
        conf = best[b, cand]
        keep = conf > thresholds.per_class[cls]
        if thresholds.allowed is not None:
            keep &= thresholds.allowed[cls]
        cand, cls, conf = cand[keep], cls[keep], conf[keep]
        if not len(cand):
            results.append([])
            continue
        if len(cand) > MAX_NMS:
            top = np.argsort(-conf, kind="stable")[:MAX_NMS]
            cand, cls, conf = cand[top], cls[top], conf[top]
        xywh = output[b][:4, cand].T.astype(np.float32)  # (n, 4) cx, cy, w, h
        half = xywh[:, 2:] / 2
        xyxy = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], 1)
        finite = np.isfinite(xyxy).all(1)  # a broken model's NaN or infinite box is no detection
        xyxy, cls, conf = xyxy[finite], cls[finite], conf[finite]
        kept = nms(xyxy + (cls[:, None] * MAX_WH).astype(np.float32), conf, iou)[:max_det]
        xyxy, cls, conf = xyxy[kept], cls[kept], conf[kept]
        # Back to the original image: remove the padding, undo the gain, clip.
        px, py = prep.pad
        gx, gy = prep.gain
        xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - px) / gx).clip(0, prep.width)
        xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - py) / gy).clip(0, prep.height)
        results.append(
            [
                Detection(label=labels[c], class_id=int(c), confidence=float(s), box=tuple(float(v) for v in box))
                for box, c, s in zip(xyxy.tolist(), cls.tolist(), conf.tolist(), strict=True)
            ]
        )
    return results
