"""The Detect head as ONNX nodes: per-level box and class branches, DFL, anchors and strides, decode.

Output as Ultralytics' own export writes it: ``(batch, 4 + nc, anchors)``, boxes as centre x, centre y,
width, height in input pixels, then the class probabilities (sigmoid). Anchors are built from each feature
map's shape at run time (``Shape`` → ``Range``), so batch, height and width stay dynamic.
"""

from __future__ import annotations

from core.detect.checkpoint import CheckpointError, Module, UnsupportedModel
from core.detect.onnxbuild.layers import Builder, as_int, emits

MAX_CLASSES = 100_000  # LVIS has 1,203; a larger count is a hostile file's way to allocate

# Heads that subclass Detect or replace it, and what they do: named in the "unsupported" error.
OTHER_HEADS = {
    "Segment": "instance segmentation",
    "Segment26": "instance segmentation",
    "Pose": "pose estimation",
    "Pose26": "pose estimation",
    "OBB": "oriented bounding boxes",
    "OBB26": "oriented bounding boxes",
    "Classify": "classification",
    "WorldDetect": "open-vocabulary detection (YOLO-World)",
    "YOLOEDetect": "open-vocabulary detection (YOLOE)",
    "YOLOESegment": "open-vocabulary segmentation (YOLOE)",
    "RTDETRDecoder": "RT-DETR detection",
    "v10Detect": "NMS-free detection (YOLOv10)",
    "LRPCHead": "prompt-free detection (YOLOE)",
}


@emits("ultralytics.", "Detect")
def detect(b: Builder, m: Module, xs: object, path: str) -> str:
    if not isinstance(xs, list) or not xs:
        raise CheckpointError(f"{path}: Detect takes the feature maps of several levels")
    a = m.attrs
    nc, reg_max = as_int(a.get("nc"), path, 1, MAX_CLASSES), as_int(a.get("reg_max", 16), path, 1, 64)
    if m.child("one2one_cv2") is not None:
        raise UnsupportedModel(f"{path}: an end-to-end (NMS-free) Detect head does not convert; only the YOLOv8/11 one")
    boxes_by_level, cls_by_level = b.items(m, "cv2", path), b.items(m, "cv3", path)
    strides = m.tensor("stride")
    n = len(xs)
    if len(boxes_by_level) != n or len(cls_by_level) != n or strides is None or strides.shape != (n,):
        raise CheckpointError(f"{path}: {n} feature levels, but the head's branches or strides do not match")
    g = b.g
    boxes, scores, anchors, stride_rows = [], [], [], []
    for i, x in enumerate(xs):
        box = b.emit(boxes_by_level[i][1], x, boxes_by_level[i][0])
        cls = b.emit(cls_by_level[i][1], x, cls_by_level[i][0])
        boxes.append(g.op("Reshape", [box, g.ints([0, 4 * reg_max, -1])], f"{path}.box{i}.flat"))
        scores.append(g.op("Reshape", [cls, g.ints([0, nc, -1])], f"{path}.cls{i}.flat"))
        points, row = _anchors(b, x, float(strides[i]), f"{path}.anchors{i}")
        anchors.append(points)
        stride_rows.append(row)
    box = b.concat(boxes, f"{path}.boxes", axis=2)
    score = g.op("Sigmoid", [b.concat(scores, f"{path}.scores", axis=2)], f"{path}.sigmoid")
    dist = _dfl(b, m, box, reg_max, path)
    anchor = b.concat(anchors, f"{path}.anchor_points", axis=1)  # (2, A)
    stride = b.concat(stride_rows, f"{path}.strides", axis=1)  # (1, A)
    # dist2bbox(xywh=True) then × strides, in Ultralytics' order of operations.
    lt, rb = b.split(dist, [2, 2], f"{path}.ltrb")
    x1y1 = g.op("Sub", [anchor, lt], f"{path}.x1y1")
    x2y2 = g.op("Add", [anchor, rb], f"{path}.x2y2")
    centre = g.op("Div", [g.op("Add", [x1y1, x2y2], f"{path}.sum"), g.floats([2.0])], f"{path}.centre")
    size = g.op("Sub", [x2y2, x1y1], f"{path}.wh")
    xywh = g.op("Mul", [b.concat([centre, size], f"{path}.xywh"), stride], f"{path}.pixels")
    return b.concat([xywh, score], f"{path}.output")


def _dfl(b: Builder, m: Module, box: str, reg_max: int, path: str) -> str:
    """Distribution focal loss decode: the expected distance of each side, softmax over ``reg_max`` bins."""
    dfl = m.child("dfl")
    if reg_max == 1 or (isinstance(dfl, Module) and dfl.name == "Identity"):
        return box
    if not isinstance(dfl, Module) or dfl.name != "DFL" or not dfl.cls.startswith("ultralytics."):
        raise UnsupportedModel(f"{path}.dfl: expected a DFL module")
    g = b.g
    x = g.op("Reshape", [box, g.ints([0, 4, reg_max, -1])], f"{path}.dfl.view")
    x = g.op("Softmax", [g.op("Transpose", [x], f"{path}.dfl.T", perm=[0, 2, 1, 3])], f"{path}.dfl.softmax", axis=1)
    x = b.conv2d(b.child(dfl, "conv", f"{path}.dfl"), x, f"{path}.dfl.conv")
    return g.op("Reshape", [x, g.ints([0, 4, -1])], f"{path}.dfl.out")


def _anchors(b: Builder, x: str, stride: float, path: str) -> tuple[str, str]:
    """Cell centres of one level, (2, H·W) as (x, y), and its stride repeated, (1, H·W) (tal.make_anchors)."""
    g = b.g
    shape = g.op("Shape", [x], f"{path}.shape")
    h = g.op("Gather", [shape, g.ints([2], scalar=True)], f"{path}.h", axis=0)
    w = g.op("Gather", [shape, g.ints([3], scalar=True)], f"{path}.w", axis=0)
    zero, one = g.ints([0], scalar=True), g.ints([1], scalar=True)
    half = g.floats([0.5])
    sx = g.op("Add", [g.op("Cast", [g.op("Range", [zero, w, one], f"{path}.rx")], f"{path}.fx", to=1), half], path)
    sy = g.op("Add", [g.op("Cast", [g.op("Range", [zero, h, one], f"{path}.ry")], f"{path}.fy", to=1), half], path)
    hw = b.concat(
        [g.op("Unsqueeze", [h, g.ints([0])], f"{path}.h1"), g.op("Unsqueeze", [w, g.ints([0])], f"{path}.w1")],
        f"{path}.hw",
        axis=0,
    )
    gx = g.op("Expand", [g.op("Unsqueeze", [sx, g.ints([0])], f"{path}.sx"), hw], f"{path}.gx")  # (H, W)
    gy = g.op("Expand", [g.op("Unsqueeze", [sy, g.ints([1])], f"{path}.sy"), hw], f"{path}.gy")
    grid = b.concat(
        [g.op("Unsqueeze", [gx, g.ints([0])], f"{path}.gx1"), g.op("Unsqueeze", [gy, g.ints([0])], f"{path}.gy1")],
        f"{path}.grid",
        axis=0,
    )
    points = g.op("Reshape", [grid, g.ints([2, -1])], f"{path}.points")
    count = g.op("Slice", [g.op("Shape", [points], f"{path}.pshape"), g.ints([1]), g.ints([2])], f"{path}.count")
    row_shape = b.concat([g.ints([1]), count], f"{path}.row_shape", axis=0)
    return points, g.op("Expand", [g.floats([stride], (1, 1)), row_shape], f"{path}.stride")
