"""What the DeepStack-API tests share: a fixed-output COCO model, and a real worker on a loop of its own.

    path = fixed_coco_model(tmp_path / "m.onnx", [("person", 0.9, (10, 10, 60, 120)), ...])
    with WorkerThread(model, source, lan=LanConfig(port=0)) as w:   # w.url: its LAN API, when asked
        ...

The model is YOLOv8-shaped with the 80 COCO class names and a fixed output: every image gets the same
boxes. Built here with ``onnx`` (nothing downloaded), it runs through the real onnxruntime backend,
letterbox, decode and NMS, so a test knows exactly which detections to expect. Boxes are in the model's
640×640 input pixels (x1, y1, x2, y2); for a 640×640 photo they are the photo's.

The worker runs its real engine and detector; the clients under test are synchronous, so the worker
gets a thread and an event loop of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_COCO80 = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
    "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
)
COCO_NAMES = tuple(n.replace("_", " ") for n in _COCO80.split(" "))


def fixed_coco_model(path: Path, boxes: Sequence[tuple[str, float, tuple[float, float, float, float]]]) -> Path:
    import onnx
    from onnx import TensorProto, helper

    nc = len(COCO_NAMES)
    out = np.zeros((1, 4 + nc, max(1, len(boxes))), np.float32)
    for i, (label, score, (x1, y1, x2, y2)) in enumerate(boxes):
        out[0, :4, i] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[0, 4 + COCO_NAMES.index(label), i] = score
    const = helper.make_tensor("fixed", TensorProto.FLOAT, out.shape, out.ravel().tolist())
    tail = helper.make_tensor("tail", TensorProto.INT64, [2], [4 + nc, out.shape[2]])
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"], start=0, end=1),  # (batch,)
        helper.make_node("Constant", [], ["tail"], value=tail),
        helper.make_node("Concat", ["shape", "tail"], ["target"], axis=0),
        helper.make_node("Constant", [], ["fixed"], value=const),
        helper.make_node("Expand", ["fixed", "target"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed-coco",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + nc, out.shape[2]])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    names = {i: n for i, n in enumerate(COCO_NAMES)}
    for key, value in {"names": repr(names), "imgsz": "[640, 640]", "stride": "32", "task": "detect"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def grid_boxes(n: int, label: str = "person", top: float = 0.95) -> list[tuple[str, float, tuple]]:
    """``n`` boxes that do not overlap (NMS keeps them all), confidences from ``top`` down by 0.01."""
    out = []
    for i in range(n):
        row, col = divmod(i, 6)
        x, y = 20 + col * 100, 20 + row * 100
        out.append((label, round(top - 0.01 * i, 4), (x, y, x + 80, y + 80)))
    return out


def blank_jpeg(width: int = 640, height: int = 640) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 127, np.uint8))
    assert ok
    return buf.tobytes()


class WorkerThread:
    """A worker (and its LAN server when ``lan`` is given) on an event loop in a thread of its own."""

    def __init__(self, model: Path, source: Any, lan: Any = None, **config: Any) -> None:
        self.model, self.source, self.lan_config = model, source, lan
        options: dict[str, Any] = dict(lease_wait_s=0.5, heartbeat_s=0.5, threads=2, retry_min_s=0.1, retry_max_s=0.5)
        options.update(config)
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.worker: Any = None
        self.server: Any = None
        self._run: asyncio.Task | None = None

    def call(self, coro: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        from core.detect import OnnxConfig, load_detector
        from core.worker import Worker, WorkerConfig

        detector = load_detector(OnnxConfig(type="onnx", path=str(self.model), threads=2))
        self.worker = Worker(WorkerConfig(**self.options), self.source, detector)
        self._run = asyncio.create_task(self.worker.run())
        if self.lan_config is not None:
            from core.lan.server import LanServer

            self.server = LanServer(self.worker, self.lan_config)
            await self.server.start()

    async def _stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.worker is not None:
            await self.worker.stop(drain=False)
        if self._run is not None:
            await self._run

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port
