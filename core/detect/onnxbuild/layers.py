"""ONNX nodes for the modules of YOLOv8 and YOLO11 backbones and necks, from their pickled stand-ins.

    b = Builder(Graph())
    y = b.emit(layer, x, "model.2")     # the module's forward pass as nodes; returns the output's name

Each emitter mirrors the module's ``forward`` in Ultralytics (``nn/modules/conv.py``, ``block.py``) in
inference mode: a Conv's BatchNorm is folded into its weights the way ``fuse_conv_and_bn`` does it, in
float32. A module the table does not know stops the build with :class:`UnsupportedModel` naming it and
where it sits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from core.detect.checkpoint import CheckpointError, Module, UnsupportedModel
from core.detect.onnxbuild.graph import Graph

Emitter = Callable[["Builder", Module, Any, str], Any]
GEOMETRY_MAX = 64  # strides, paddings, dilations and kernels of any YOLO are a few pixels
SCALE_MAX = 16  # upsampling factor (YOLO's necks use 2)
EMITTERS: dict[str, tuple[str, Emitter]] = {}  # class name -> (namespace it must come from, emitter)


def emits(namespace: str, *names: str) -> Callable[[Emitter], Emitter]:
    def register(fn: Emitter) -> Emitter:
        for name in names:
            EMITTERS[name] = (namespace, fn)
        return fn

    return register


class Builder:
    def __init__(self, graph: Graph) -> None:
        self.g = graph

    def emit(self, m: Any, x: Any, path: str) -> Any:
        if not isinstance(m, Module):
            raise CheckpointError(f"{path} is a {type(m).__name__}, not a module")
        namespace, fn = EMITTERS.get(m.name, ("", None))
        if fn is None or not m.cls.startswith(namespace):
            raise UnsupportedModel(f"unsupported module {m.cls} at {path}")
        return fn(self, m, x, path)

    def child(self, m: Module, name: str, path: str) -> Module:
        found = m.child(name)
        if not isinstance(found, Module):
            raise CheckpointError(f"{path}.{name} is missing from the checkpoint")
        return found

    def items(self, m: Module, name: str, path: str) -> list[tuple[str, Module]]:
        """The submodules of a ModuleList or Sequential child, with their paths."""
        holder = self.child(m, name, path)
        return [(f"{path}.{name}.{key}", sub) for key, sub in holder.children().items()]

    def conv2d(self, conv: Module, x: str, path: str, bn: Module | None = None) -> str:
        a = conv.attrs
        w = conv.tensor("weight")
        if w is None or w.ndim != 4:
            raise CheckpointError(f"{path} has no 4-D weight")
        bias = conv.tensor("bias")
        if a.get("padding_mode", "zeros") != "zeros":
            raise UnsupportedModel(f"unsupported padding mode {a.get('padding_mode')!r} at {path}")
        stride, dilation = _pair(a.get("stride", 1), path, 1), _pair(a.get("dilation", 1), path, 1)
        pads = _pads(a.get("padding", 0), w.shape[2:], dilation, path)
        if bn is not None:
            w, bias = fold_batchnorm(w, bias, bn, path)
        inputs = [x, self.g.weight(w, f"{path}.weight")]
        if bias is not None:
            inputs.append(self.g.weight(bias.astype(np.float32), f"{path}.bias"))
        return self.g.op(
            "Conv",
            inputs,
            path,
            kernel_shape=list(w.shape[2:]),
            strides=stride,
            pads=pads,
            dilations=dilation,
            group=as_int(a.get("groups", 1), path, 1, w.shape[0]),
        )

    def split(self, x: str, sizes: list[int], path: str, axis: int = 1) -> list[str]:
        return self.g.op("Split", [x, self.g.ints(sizes)], path, outputs=len(sizes), axis=axis)

    def concat(self, xs: list[str], path: str, axis: int = 1) -> str:
        return self.g.op("Concat", xs, path, axis=axis)


def fold_batchnorm(w: np.ndarray, b: np.ndarray | None, bn: Module, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights with the BatchNorm after them folded in, as torch's ``fuse_conv_bn_weights`` does."""
    n = w.shape[0]
    mean, var = bn.tensor("running_mean"), bn.tensor("running_var")
    gamma, beta = bn.tensor("weight"), bn.tensor("bias")
    gamma = np.ones(n, np.float32) if gamma is None else gamma
    beta = np.zeros(n, np.float32) if beta is None else beta
    if mean is None or var is None:
        raise CheckpointError(f"{path}: BatchNorm without running statistics")
    if any(t.shape != (n,) for t in (mean, var, gamma, beta)) or (b is not None and b.shape != (n,)):
        raise CheckpointError(f"{path}: BatchNorm sizes do not match the convolution's {n} channels")
    eps = bn.attrs.get("eps", 1e-5)
    if not isinstance(eps, float | int) or not eps > 0:
        raise CheckpointError(f"{path}: BatchNorm eps {eps!r} is not a positive number")
    rsqrt = (np.float32(1) / np.sqrt(var + np.float32(eps))).astype(np.float32)
    folded_w = (w * (gamma * rsqrt).reshape(-1, 1, 1, 1)).astype(np.float32)
    b = np.zeros(n, np.float32) if b is None else b
    folded_b = ((b - mean) * rsqrt * gamma + beta).astype(np.float32)
    return folded_w, folded_b


def as_int(value: Any, path: str, lo: int = 0, hi: int = 1 << 20) -> int:
    """An integer attribute within [lo, hi]: a hostile file's 10⁹ repeats or 10⁶ paddings stop here, not in
    onnxruntime's memory."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{path}: expected an integer, found {type(value).__name__}")
    if not lo <= value <= hi:
        raise CheckpointError(f"{path}: {value} is outside {lo}..{hi}")
    return value


def _pair(value: Any, path: str, lo: int = 0, hi: int = GEOMETRY_MAX) -> list[int]:
    values = list(value) if isinstance(value, tuple | list) else [value, value]
    if len(values) != 2:
        raise UnsupportedModel(f"{path}: only 2-D convolutions and pooling convert")
    return [as_int(v, path, lo, hi) for v in values]


def _pads(padding: Any, kernel: tuple[int, ...], dilation: list[int], path: str) -> list[int]:
    if padding == "valid":
        return [0, 0, 0, 0]
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        if any(t % 2 for t in total):
            raise UnsupportedModel(f"{path}: 'same' padding with an even kernel")
        return [total[0] // 2, total[1] // 2, total[0] // 2, total[1] // 2]
    ph, pw = _pair(padding, path)
    return [ph, pw, ph, pw]


@emits("torch.nn.", "Conv2d")
def _conv2d(b: Builder, m: Module, x: str, path: str) -> str:
    return b.conv2d(m, x, path)


@emits("ultralytics.", "Conv", "DWConv")
def _conv(b: Builder, m: Module, x: str, path: str) -> str:
    bn = m.child("bn")  # absent in a fused checkpoint, whose convolution carries the bias
    y = b.conv2d(b.child(m, "conv", path), x, f"{path}.conv", bn if isinstance(bn, Module) else None)
    act = m.child("act")
    return y if act is None else b.emit(act, y, f"{path}.act")


@emits("torch.nn.", "SiLU")
def _silu(b: Builder, m: Module, x: str, path: str) -> str:
    return b.g.op("Mul", [x, b.g.op("Sigmoid", [x], f"{path}.sigmoid")], path)


@emits("torch.nn.", "Identity")
def _identity(b: Builder, m: Module, x: Any, path: str) -> Any:
    return x


@emits("torch.nn.", "ReLU")
def _relu(b: Builder, m: Module, x: str, path: str) -> str:
    return b.g.op("Relu", [x], path)


@emits("torch.nn.", "LeakyReLU")
def _leaky_relu(b: Builder, m: Module, x: str, path: str) -> str:
    return b.g.op("LeakyRelu", [x], path, alpha=float(m.attrs.get("negative_slope", 0.01)))


@emits("torch.nn.", "Hardswish")
def _hardswish(b: Builder, m: Module, x: str, path: str) -> str:
    return b.g.op("HardSwish", [x], path)


@emits("torch.nn.", "Sigmoid")
def _sigmoid(b: Builder, m: Module, x: str, path: str) -> str:
    return b.g.op("Sigmoid", [x], path)


@emits("torch.nn.", "Sequential")
def _sequential(b: Builder, m: Module, x: Any, path: str) -> Any:
    for key, sub in m.children().items():
        x = b.emit(sub, x, f"{path}.{key}")
    return x


@emits("torch.nn.", "Upsample")
def _upsample(b: Builder, m: Module, x: str, path: str) -> str:
    a = m.attrs
    scale = a.get("scale_factor")
    if a.get("mode", "nearest") != "nearest" or a.get("size") is not None or scale is None:
        raise UnsupportedModel(f"{path}: only nearest upsampling by a scale factor converts")
    sh, sw = (scale, scale) if isinstance(scale, int | float) else tuple(scale)
    if not all(isinstance(v, int | float) and 1 <= v <= SCALE_MAX for v in (sh, sw)):
        raise CheckpointError(f"{path}: upsampling factor {scale!r} is outside 1..{SCALE_MAX}")
    scales = b.g.floats([1.0, 1.0, float(sh), float(sw)])
    return b.g.op(
        "Resize",
        [x, "", scales],
        path,
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


@emits("torch.nn.", "MaxPool2d")
def _maxpool(b: Builder, m: Module, x: str, path: str) -> str:
    a = m.attrs
    kernel = _pair(a.get("kernel_size"), path, 1)
    stride = _pair(a.get("stride") or a.get("kernel_size"), path, 1)
    ph, pw = _pair(a.get("padding", 0), path)
    return b.g.op(
        "MaxPool",
        [x],
        path,
        kernel_shape=kernel,
        strides=stride,
        pads=[ph, pw, ph, pw],
        dilations=_pair(a.get("dilation", 1), path, 1),
        ceil_mode=int(bool(a.get("ceil_mode", False))),
    )


@emits("ultralytics.", "Concat")
def _concat(b: Builder, m: Module, xs: Any, path: str) -> str:
    if not isinstance(xs, list):
        raise CheckpointError(f"{path}: Concat takes several inputs")
    return b.concat(xs, path, axis=as_int(m.attrs.get("d", 1), path))


@emits("ultralytics.", "Bottleneck")
def _bottleneck(b: Builder, m: Module, x: str, path: str) -> str:
    y = b.emit(b.child(m, "cv1", path), x, f"{path}.cv1")
    y = b.emit(b.child(m, "cv2", path), y, f"{path}.cv2")
    return b.g.op("Add", [x, y], f"{path}.add") if m.attrs.get("add") else y


@emits("ultralytics.", "C2f", "C3k2")
def _c2f(b: Builder, m: Module, x: str, path: str) -> str:
    c = as_int(m.attrs.get("c"), path)
    ys = b.split(b.emit(b.child(m, "cv1", path), x, f"{path}.cv1"), [c, c], f"{path}.split")
    for sub_path, sub in b.items(m, "m", path):
        ys.append(b.emit(sub, ys[-1], sub_path))
    return b.emit(b.child(m, "cv2", path), b.concat(ys, f"{path}.concat"), f"{path}.cv2")


@emits("ultralytics.", "C3", "C3k")
def _c3(b: Builder, m: Module, x: str, path: str) -> str:
    y1 = b.emit(b.child(m, "m", path), b.emit(b.child(m, "cv1", path), x, f"{path}.cv1"), f"{path}.m")
    y2 = b.emit(b.child(m, "cv2", path), x, f"{path}.cv2")
    return b.emit(b.child(m, "cv3", path), b.concat([y1, y2], f"{path}.concat"), f"{path}.cv3")


@emits("ultralytics.", "SPPF")
def _sppf(b: Builder, m: Module, x: str, path: str) -> str:
    ys = [b.emit(b.child(m, "cv1", path), x, f"{path}.cv1")]
    pool = b.child(m, "m", path)
    for _ in range(as_int(m.attrs.get("n", 3), path, 1, 16)):
        ys.append(b.emit(pool, ys[-1], f"{path}.m"))
    y = b.emit(b.child(m, "cv2", path), b.concat(ys, f"{path}.concat"), f"{path}.cv2")
    return b.g.op("Add", [y, x], f"{path}.add") if m.attrs.get("add") else y


@emits("ultralytics.", "C2PSA")
def _c2psa(b: Builder, m: Module, x: str, path: str) -> str:
    c = as_int(m.attrs.get("c"), path)
    first, second = b.split(b.emit(b.child(m, "cv1", path), x, f"{path}.cv1"), [c, c], f"{path}.split")
    second = b.emit(b.child(m, "m", path), second, f"{path}.m")
    return b.emit(b.child(m, "cv2", path), b.concat([first, second], f"{path}.concat"), f"{path}.cv2")


@emits("ultralytics.", "PSABlock")
def _psablock(b: Builder, m: Module, x: str, path: str) -> str:
    for part in ("attn", "ffn"):
        y = b.emit(b.child(m, part, path), x, f"{path}.{part}")
        x = b.g.op("Add", [x, y], f"{path}.{part}.add") if m.attrs.get("add") else y
    return x


@emits("ultralytics.", "Attention")
def _attention(b: Builder, m: Module, x: str, path: str) -> str:
    """Multi-head self-attention over the H×W positions (block.py's Attention.forward, non-CoreML branch)."""
    a = m.attrs
    heads, key_dim, head_dim = (as_int(a.get(k), path) for k in ("num_heads", "key_dim", "head_dim"))
    scale = a.get("scale")
    if not isinstance(scale, float | int):
        raise CheckpointError(f"{path}: attention scale missing")
    g = b.g
    shape = g.op("Shape", [x], f"{path}.shape")
    qkv = b.emit(b.child(m, "qkv", path), x, f"{path}.qkv")
    qkv = g.op("Reshape", [qkv, g.ints([0, heads, 2 * key_dim + head_dim, -1])], f"{path}.reshape")
    q, k, v = b.split(qkv, [key_dim, key_dim, head_dim], f"{path}.split", axis=2)
    q = g.op(
        "Transpose", [g.op("Mul", [q, g.floats([float(scale)])], f"{path}.scale")], f"{path}.qT", perm=[0, 1, 3, 2]
    )
    attn = g.op("Softmax", [g.op("MatMul", [q, k], f"{path}.qk")], f"{path}.softmax", axis=-1)
    attn = g.op("Transpose", [attn], f"{path}.attnT", perm=[0, 1, 3, 2])
    y = g.op("Reshape", [g.op("MatMul", [v, attn], f"{path}.av"), shape], f"{path}.view")
    pe = b.emit(b.child(m, "pe", path), g.op("Reshape", [v, shape], f"{path}.v"), f"{path}.pe")
    return b.emit(b.child(m, "proj", path), g.op("Add", [y, pe], f"{path}.add"), f"{path}.proj")
