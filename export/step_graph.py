"""The single-step model for stateful streaming: one GRU step per sample instead of a whole window.

Graph (names are the runtime's contract, see ``edge_runtime/stateful.py``):

    x [N, F] --Unsqueeze--> [1, N, F] --GRU(h0)--> h0_next [1, N, u0] --GRU(h1)--> h1_next ... --> head --> score [N]

Inputs ``x`` and one state ``h{i}`` [1, N, u_i] per GRU layer; outputs ``score`` and ``h{i}_next``.
States keep ONNX's [num_directions=1, N, u] layout so a step feeds them straight back, and with one
time step a layer's ``Y_h`` already is the next layer's time-major input: no reshapes in the hot path.

The weights, the gate mapping and the head are the window graph's own (``onnx_graph``), so replaying a
window from zero states gives the window model's score; ``weight_storage`` shrinks it the same way.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnx_graph import IR_VERSION, OPSET, OUTPUT_NAME, GraphParts, _dense_head, _gru_weights, _parse

STEP_INPUT = "x"
BATCH_DIM = "N"


def state_name(layer: int) -> str:
    return f"h{layer}"


def next_state_name(layer: int) -> str:
    return f"h{layer}_next"


def keras_to_step_onnx(model, name: str = "gru-edge-step") -> onnx.ModelProto:
    """Single-step fused-GRU ONNX graph of the same ``Input -> GRU... -> Dense`` model ``keras_to_fused_onnx`` takes."""
    grus, head = _parse(model, sequence_output=False)  # a classifier: the head scores the last state
    n_features = int(grus[0].kernel.shape[0])
    parts = GraphParts()
    current = "x_tm"
    parts.nodes.append(
        helper.make_node("Unsqueeze", [STEP_INPUT, parts.const("x_axes", np.array([0], np.int64))], [current])
    )
    inputs = [helper.make_tensor_value_info(STEP_INPUT, TensorProto.FLOAT, [BATCH_DIM, n_features])]
    outputs = []
    for i, spec in enumerate(grus):
        w, r, b = _gru_weights(spec)
        prefix = f"gru{i}"
        gru_inputs = [current, parts.const(f"{prefix}_W", w), parts.const(f"{prefix}_R", r),
                      parts.const(f"{prefix}_B", b) if b is not None else "", "", state_name(i)]
        parts.nodes.append(
            helper.make_node("GRU", gru_inputs, ["", next_state_name(i)], name=f"{prefix}_{spec.name}",
                             hidden_size=spec.units, linear_before_reset=1, layout=0)
        )
        inputs.append(helper.make_tensor_value_info(state_name(i), TensorProto.FLOAT, [1, BATCH_DIM, spec.units]))
        outputs.append(helper.make_tensor_value_info(next_state_name(i), TensorProto.FLOAT, [1, BATCH_DIM, spec.units]))
        current = next_state_name(i)  # [1, N, u]: Y_h of one step is the next layer's [T=1, N, u] input
    hidden = "last_h"
    parts.nodes.append(
        helper.make_node("Squeeze", [current, parts.const("last_axes", np.array([0], np.int64))], [hidden])
    )
    k = _dense_head(parts, head, hidden, OUTPUT_NAME)
    score = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM] if k == 1 else [BATCH_DIM, k])
    graph = helper.make_graph(parts.nodes, name, inputs, [score, *outputs], initializer=parts.initializers)
    step = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gru-edge",
                             ir_version=IR_VERSION)
    step.doc_string = f"fused-gru step: {len(grus)} GRU layer(s) {[g.units for g in grus]} -> Dense({k}, {head.activation})"
    onnx.checker.check_model(step, full_check=True)
    return step


def flops_per_window(model, window: int) -> int:
    """Floating-point operations to score one window (multiply and add counted separately).

    Per step and layer: the input and recurrent products 2 * 3u * (F_in + u), both biases 6u, and the
    gates ~10u (two sigmoids, tanh, the reset product and the interpolation); the head once per window
    (a classifier) or at every step (a forecaster). Matrix products are ~98 % of it, which is why sgemm
    throughput bounds batch scoring.
    """
    grus, head = _parse(model)
    per_step = 0
    for spec in grus:
        u, f_in = spec.units, int(spec.kernel.shape[0])
        per_step += 2 * 3 * u * (f_in + u) + 6 * u + 10 * u
    k_in, k_out = head.kernel.shape
    head_calls = window if grus[-1].return_sequences else 1
    return int(window * per_step + head_calls * (2 * k_in * k_out + 2 * k_out))


def gru_units(model) -> list[int]:
    grus, _ = _parse(model)
    return [g.units for g in grus]
