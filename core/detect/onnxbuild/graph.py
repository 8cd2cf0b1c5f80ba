"""A thin layer over ``onnx.helper``: nodes with unique, readable names, weights as initializers.

g = Graph()
y = g.op("Conv", [x, g.weight(w, "model.0.conv.weight")], "model.0.conv", kernel_shape=[3, 3])
a, b = g.op("Split", [y, g.ints([16, 16])], "model.2.split", outputs=2, axis=1)
model = g.model([input_info], [output_info], opset=17, metadata={"names": "{0: 'person'}"})
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 17  # onnxruntime 1.14 and later; every op here has had its current form since 13
IR_VERSION = 8  # the IR of opset 17


class Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: Counter[str] = Counter()
        self._ints: dict[tuple[int, ...], str] = {}
        self._floats: dict[tuple[float, ...], str] = {}

    def fresh(self, hint: str) -> str:
        self._used[hint] += 1
        n = self._used[hint]
        return hint if n == 1 else f"{hint}_{n - 1}"

    def weight(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array) if array.ndim else array, name))
        return name

    def ints(self, values: list[int] | tuple[int, ...], scalar: bool = False) -> str:
        """An int64 constant (1-D, or a scalar), shared by every node that needs the same one."""
        key = (*values, -(1 << 62)) if scalar else tuple(values)
        if key not in self._ints:
            array = np.array(values[0] if scalar else values, dtype=np.int64)
            self._ints[key] = self.weight(array, "const_i64")
        return self._ints[key]

    def floats(self, values: list[float] | tuple[float, ...], shape: tuple[int, ...] | None = None) -> str:
        key = (*values, *(shape or ()), len(shape or ()))
        if key not in self._floats:
            array = np.array(values, dtype=np.float32)
            self._floats[key] = self.weight(array.reshape(shape) if shape is not None else array, "const_f32")
        return self._floats[key]

    def op(self, op_type: str, inputs: list[str], hint: str, outputs: int = 1, **attrs: Any) -> Any:
        """Append one node; returns its output name (or a list of them when ``outputs`` > 1)."""
        name = self.fresh(hint)
        names = [name if outputs == 1 else f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=name, **attrs))
        return names[0] if outputs == 1 else names

    def rename_output(self, old: str, new: str) -> None:
        """Make the node that writes ``old`` write ``new`` (the graph output's fixed name)."""
        for node in self.nodes:
            for i, out in enumerate(node.output):
                if out == old:
                    node.output[i] = new
                    return
        raise KeyError(old)

    def model(
        self,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        metadata: dict[str, str],
        name: str = "main_graph",
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="insane")
        model.ir_version = IR_VERSION
        for key, value in metadata.items():
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        return model
