"""Store a fused-GRU ONNX model's weights compactly and expand them to float32 when the model loads.

onnxruntime has no int8 GRU kernel and its quantizer leaves GRU weights alone (measured, see
notes/export-facts.md), so quantization here only shrinks the *file*: large float32 initializers are
replaced by float16 (``Cast``) or per-channel int8 (``DequantizeLinear``) initializers, and the
runtime computes in float32 after constant folding at session creation. The graph stays fused, the
model's inputs and outputs stay float32, and the input model is never mutated.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Smaller tensors (scalars, axes, a 1-unit head bias) are not worth a conversion node.
MIN_ELEMENTS = 16
# Symmetric int8 uses [-127, 127] so that the range is the same on both sides of zero.
INT8_MAX = 127


def _consumers(graph: onnx.GraphProto, name: str) -> list[tuple[onnx.NodeProto, int]]:
    return [(node, i) for node in graph.node for i, inp in enumerate(node.input) if inp == name]


def _large_float32(init: onnx.TensorProto, min_rank: int) -> bool:
    return (
        init.data_type == TensorProto.FLOAT
        and len(init.dims) >= min_rank
        and int(np.prod(init.dims)) >= MIN_ELEMENTS
    )


def _replace_initializers(m: onnx.ModelProto, select, expand) -> onnx.ModelProto:
    """Copy of ``m`` where each initializer ``name`` chosen by ``select(graph, init)`` is swapped for stored
    tensors plus nodes that rebuild a float32 tensor called ``name``, so every consumer keeps reading it."""
    out = onnx.ModelProto()
    out.CopyFrom(m)
    graph = out.graph
    selected = [init for init in graph.initializer if select(graph, init)]
    if not selected:
        return out
    selected_names = {init.name for init in selected}
    new_initializers: list[onnx.TensorProto] = []
    new_nodes: list[onnx.NodeProto] = []
    for init in selected:
        stored, nodes = expand(graph, init)
        new_initializers.extend(stored)
        new_nodes.extend(nodes)
    kept = [init for init in graph.initializer if init.name not in selected_names]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_initializers)
    # Initializers listed as graph inputs (old IR style) would now be dangling inputs.
    kept_inputs = [vi for vi in graph.input if vi.name not in selected_names]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    # The expansion nodes read only initializers: putting them first keeps the graph topologically sorted.
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + old_nodes)
    onnx.checker.check_model(out, full_check=True)
    return out


def _fp16_expand(graph: onnx.GraphProto, init: onnx.TensorProto):
    values = numpy_helper.to_array(init).astype(np.float32)
    half = values.astype(np.float16)
    if not np.all(np.isfinite(half)):
        raise ValueError(f"initializer {init.name!r}: values beyond float16 range (max |w| = {np.abs(values).max():g})")
    stored = numpy_helper.from_array(half, name=f"{init.name}_fp16")
    cast = helper.make_node("Cast", [stored.name], [init.name], name=f"{init.name}_to_fp32", to=TensorProto.FLOAT)
    return [stored], [cast]


def _output_channel_axis(graph: onnx.GraphProto, name: str, rank: int) -> int:
    """Axis along which ``name``'s consumer produces separate outputs; one int8 scale per index on it.

    GRU/LSTM/RNN W and R are [dirs, gates*u, X]: axis 1 gives every gate row of every unit its own scale.
    Gemm B is [K, M] (axis 1) or [M, K] with transB=1 (axis 0); MatMul B is [..., K, M] (last axis).
    """
    axes = set()
    for node, index in _consumers(graph, name):
        if node.op_type in ("GRU", "LSTM", "RNN") and index in (1, 2):
            axes.add(1)
        elif node.op_type == "Gemm" and index == 1:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axes.add(0 if trans_b else 1)
        elif node.op_type == "Gemm" and index == 0:
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            axes.add(1 if trans_a else 0)
        elif node.op_type == "MatMul" and index == 1:
            axes.add(rank - 1)
        else:
            raise ValueError(
                f"initializer {name!r}: no per-channel int8 layout known for input {index} of "
                f"{node.op_type} node {node.name!r}"
            )
    if len(axes) != 1:
        raise ValueError(f"initializer {name!r}: consumers disagree on the output-channel axis ({sorted(axes)})")
    return axes.pop()


def quantize_per_channel(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with one scale per index along ``axis``: values ~= q * scale (zero point 0)."""
    other = tuple(i for i in range(values.ndim) if i != axis)
    max_abs = np.max(np.abs(values), axis=other)
    # An all-zero channel still needs a positive scale; its values quantize to 0 anyway.
    scale = np.where(max_abs > 0, max_abs / INT8_MAX, 1.0).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1
    q = np.clip(np.rint(values / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def _int8_expand(graph: onnx.GraphProto, init: onnx.TensorProto):
    values = numpy_helper.to_array(init).astype(np.float32)
    axis = _output_channel_axis(graph, init.name, values.ndim)
    q, scale = quantize_per_channel(values, axis)
    stored_q = numpy_helper.from_array(q, name=f"{init.name}_int8")
    stored_scale = numpy_helper.from_array(scale, name=f"{init.name}_scale")
    stored_zero = numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), name=f"{init.name}_zero")
    dq = helper.make_node(
        "DequantizeLinear",
        [stored_q.name, stored_scale.name, stored_zero.name],
        [init.name],
        name=f"{init.name}_dequant",
        axis=axis,
    )
    return [stored_q, stored_scale, stored_zero], [dq]


def _is_bias(graph: onnx.GraphProto, name: str) -> bool:
    """A GRU ``B`` is [1, 6u] (rank 2) but a bias: keep it float32 like every other bias."""
    consumers = _consumers(graph, name)
    return bool(consumers) and all(
        (node.op_type in ("GRU", "LSTM", "RNN") and index == 3) or (node.op_type == "Gemm" and index == 2)
        for node, index in consumers
    )


def to_fp16_weights(m: onnx.ModelProto) -> onnx.ModelProto:
    """Every float32 initializer with >= 16 elements stored as float16 + ``Cast`` back to float32."""
    return _replace_initializers(m, lambda g, init: _large_float32(init, 0), _fp16_expand)


def to_int8_weights(m: onnx.ModelProto) -> onnx.ModelProto:
    """Every float32 weight initializer of rank >= 2 with >= 16 elements stored as int8 with per-output-channel
    symmetric scales (zero point 0) + ``DequantizeLinear``; biases stay float32."""
    return _replace_initializers(
        m, lambda g, init: _large_float32(init, 2) and not _is_bias(g, init.name), _int8_expand
    )
