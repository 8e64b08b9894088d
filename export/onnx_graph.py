"""Write a Keras 3 GRU stack as one fused-GRU ONNX graph, straight from the layer weights.

Why by hand: Keras 3 + tf2onnx always emits a ``Loop`` graph for a GRU, which onnxruntime runs ~14x
slower per window than its fused ``GRU`` kernel (see notes/export-facts.md). The weight mapping is exact
for the configurations accepted here; anything else is refused with ``UnsupportedModelError`` rather
than exported approximately.

Graph: ``windows`` [N, T, F] -> Transpose to time-major (onnxruntime's CPU GRU rejects layout=1)
-> GRU (layout=0) per Keras layer -> last layer's ``Y_h`` [N, u] -> head -> ``score``.
The head is built separately (``_dense_head``) so other heads can be attached to the same GRU stack:
``keras_to_error_onnx`` attaches a per-step Dense forecaster and computes the normal-only anomaly score
(standardised forecast error) in-graph.

Keras is never imported here: the model object carries everything needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "windows"
OUTPUT_NAME = "score"
# 17: onnxruntime 1.31 runs it natively; >= 13 gives per-axis DequantizeLinear and Squeeze-axes-as-input.
OPSET = 17
# IR 8 is the version that goes with opset 17; older runtimes refuse a newer IR even when ops match.
IR_VERSION = 8
BATCH_DIM = "N"

# Layers that are the identity at inference time and can be skipped.
_IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout")
_DENSE_ACTIVATIONS = ("sigmoid", "linear")


class UnsupportedModelError(ValueError):
    """The Keras model uses a layer or setting that has no exact fused-ONNX mapping."""


@dataclass
class GraphParts:
    """Nodes and initializers collected while building; appended in topological order."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name=name))
        return name


@dataclass(frozen=True)
class _GruSpec:
    name: str
    units: int
    kernel: np.ndarray  # [F_in, 3u], gates z, r, h
    recurrent_kernel: np.ndarray  # [u, 3u]
    bias: np.ndarray | None  # [2, 3u] (input bias, recurrent bias) or None when use_bias=False
    return_sequences: bool


@dataclass(frozen=True)
class _DenseSpec:
    name: str
    kernel: np.ndarray  # [u, k]
    bias: np.ndarray | None  # [k]
    activation: str


def _fn_name(fn) -> str:
    """Name of a Keras activation (a function, or an ``Activation``-like object)."""
    if fn is None:
        return "linear"
    return getattr(fn, "__name__", None) or type(fn).__name__


def _refuse(layer, attribute: str, got, expected) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"layer {layer.name!r} ({type(layer).__name__}): {attribute}={got!r} cannot be exported "
        f"to a fused ONNX GRU graph (supported: {expected})"
    )


def _check_float32(layer) -> None:
    policy = getattr(layer, "dtype_policy", None)
    compute = getattr(policy, "compute_dtype", "float32")
    if compute != "float32":
        raise _refuse(layer, "dtype_policy.compute_dtype", compute, "float32")


def _gru_spec(layer) -> _GruSpec:
    _check_float32(layer)
    cell = getattr(layer, "cell", layer)
    if not getattr(cell, "reset_after", True):
        raise _refuse(layer, "reset_after", False, "True (the Keras 3 default)")
    if _fn_name(cell.activation) != "tanh":
        raise _refuse(layer, "activation", _fn_name(cell.activation), "'tanh'")
    if _fn_name(cell.recurrent_activation) != "sigmoid":
        raise _refuse(layer, "recurrent_activation", _fn_name(cell.recurrent_activation), "'sigmoid'")
    for attribute in ("go_backwards", "stateful", "return_state"):
        if getattr(layer, attribute, False):
            raise _refuse(layer, attribute, True, "False")
    units = int(cell.units)
    kernel = np.asarray(cell.kernel.numpy(), dtype=np.float32)
    recurrent = np.asarray(cell.recurrent_kernel.numpy(), dtype=np.float32)
    bias = None
    if cell.use_bias:
        bias = np.asarray(cell.bias.numpy(), dtype=np.float32)
        if bias.shape != (2, 3 * units):
            raise _refuse(layer, "bias.shape", bias.shape, f"(2, {3 * units}) with reset_after=True")
    if kernel.shape[1] != 3 * units or recurrent.shape != (units, 3 * units):
        raise _refuse(layer, "kernel shapes", (kernel.shape, recurrent.shape), f"(F, {3 * units}), ({units}, {3 * units})")
    return _GruSpec(layer.name, units, kernel, recurrent, bias, bool(layer.return_sequences))


def _dense_spec(layer) -> _DenseSpec:
    _check_float32(layer)
    activation = _fn_name(layer.activation)
    if activation not in _DENSE_ACTIVATIONS:
        raise _refuse(layer, "activation", activation, " or ".join(repr(a) for a in _DENSE_ACTIVATIONS))
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float32)
    bias = np.asarray(layer.bias.numpy(), dtype=np.float32) if layer.use_bias else None
    return _DenseSpec(layer.name, kernel, bias, activation)


def _is_identity(layer) -> bool:
    kind = type(layer).__name__
    if kind == "Activation":
        # Only a linear Activation layer is the identity.
        return _fn_name(layer.activation) == "linear"
    return kind in _IDENTITY_LAYERS


def _linear_layers(model) -> list:
    """The model's layers in order, checked to form a single chain input -> ... -> output."""
    inputs = getattr(model, "inputs", None)
    outputs = getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise UnsupportedModelError(
            f"model {model.name!r} is not built: give it a keras.Input(shape=(T, F)) or call it once before export"
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModelError(
            f"model {model.name!r} has {len(inputs)} inputs and {len(outputs)} outputs; expected exactly 1 and 1"
        )
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if type(model).__name__ == "Sequential":
        # A Sequential is a chain by construction; after save/load its symbolic tensors are rebuilt
        # per layer, so the identity check below would reject a perfectly linear model.
        return layers
    previous = inputs[0]
    for layer in layers:
        try:
            layer_input = layer.input
        except (AttributeError, ValueError) as exc:  # shared layer (several call sites) or never called
            raise UnsupportedModelError(f"layer {layer.name!r} ({type(layer).__name__}) is not used exactly once: {exc}") from exc
        if layer_input is not previous:
            raise UnsupportedModelError(
                f"layer {layer.name!r} ({type(layer).__name__}) does not take the previous layer's output: "
                "only a plain chain Input -> GRU... -> Dense can be exported"
            )
        previous = layer.output
        if isinstance(previous, (list, tuple)):
            raise UnsupportedModelError(
                f"layer {layer.name!r} ({type(layer).__name__}) has {len(previous)} outputs "
                "(e.g. return_state=True); only single-output layers can be exported"
            )
    if previous is not outputs[0]:
        raise UnsupportedModelError(f"model {model.name!r}: the last layer's output is not the model output")
    return layers


def _parse(model, sequence_output: bool | None = None) -> tuple[list[_GruSpec], _DenseSpec]:
    """GRU specs and the Dense head. ``sequence_output=True``: the last GRU must return sequences and the
    Dense applies at every step (a forecaster, see ``keras_to_error_onnx``); ``False``: the Dense scores the
    last state (a classifier); ``None`` accepts either (for callers that only inspect the layers)."""
    grus: list[_GruSpec] = []
    head: _DenseSpec | None = None
    for layer in _linear_layers(model):
        kind = type(layer).__name__
        if _is_identity(layer):
            continue
        if head is not None:
            raise UnsupportedModelError(
                f"layer {layer.name!r} ({kind}) follows the Dense head {head.name!r}; the Dense layer must be last"
            )
        if kind == "GRU":
            if grus and not grus[-1].return_sequences:
                raise _refuse(layer, "input", f"GRU {grus[-1].name!r} with return_sequences=False", "a sequence")
            grus.append(_gru_spec(layer))
        elif kind == "Dense":
            if not grus:
                raise UnsupportedModelError(f"layer {layer.name!r} (Dense) comes before any GRU layer")
            if grus[-1].return_sequences and sequence_output is False:
                raise UnsupportedModelError(
                    f"layer {grus[-1].name!r} (GRU): return_sequences=True on the last GRU cannot be exported "
                    "(the head scores the last hidden state; set return_sequences=False)"
                )
            if sequence_output is True and not grus[-1].return_sequences:
                raise UnsupportedModelError(
                    f"layer {grus[-1].name!r} (GRU): a forecaster's last GRU needs return_sequences=True "
                    "(its Dense forecasts at every step)"
                )
            head = _dense_spec(layer)
        else:
            raise UnsupportedModelError(
                f"layer {layer.name!r} ({kind}): layer type {kind!r} cannot be exported to a fused ONNX GRU graph "
                "(supported: GRU, Dense, Dropout)"
            )
    if not grus:
        raise UnsupportedModelError(f"model {model.name!r} has no GRU layer")
    if head is None:
        raise UnsupportedModelError(f"model {model.name!r} has no Dense head after its last GRU {grus[-1].name!r}")
    return grus, head


def _gru_weights(spec: _GruSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Keras (reset_after=True) -> ONNX W [1, 3u, F], R [1, 3u, u], B [1, 6u]; gate order z, r, h in both."""
    w = spec.kernel.T[np.newaxis]
    r = spec.recurrent_kernel.T[np.newaxis]
    b = None if spec.bias is None else np.concatenate([spec.bias[0], spec.bias[1]])[np.newaxis]
    return w, r, b


def _gru_stack(parts: GraphParts, specs: list[_GruSpec], x_time_major: str, sequence: bool = False) -> str:
    """Append one fused GRU node per spec; returns the name of the last layer's hidden state [N, u], or with
    ``sequence`` its hidden state at every step, time-major [T, N, u]."""
    current = x_time_major  # [T, N, F]
    for i, spec in enumerate(specs):
        w, r, b = _gru_weights(spec)
        prefix = f"gru{i}"
        inputs = [current, parts.const(f"{prefix}_W", w), parts.const(f"{prefix}_R", r)]
        if b is not None:
            inputs.append(parts.const(f"{prefix}_B", b))
        # ONNX's optional B defaults to zeros, which is exactly Keras use_bias=False.
        last = i == len(specs) - 1 and not sequence
        y, y_h = f"{prefix}_Y", f"{prefix}_Y_h"
        parts.nodes.append(
            helper.make_node(
                "GRU",
                inputs,
                ["" if last else y, y_h],
                name=f"{prefix}_{spec.name}",
                hidden_size=spec.units,
                linear_before_reset=1,
                layout=0,
            )
        )
        if last:
            # Y_h [1, N, u] -> [N, u]
            out = f"{prefix}_h"
            parts.nodes.append(
                helper.make_node("Squeeze", [y_h, parts.const(f"{prefix}_axes", np.array([0], np.int64))], [out])
            )
            return out
        # Y [T, 1, N, u] -> [T, N, u], the next layer's time-major input
        current = f"{prefix}_seq"
        parts.nodes.append(
            helper.make_node("Squeeze", [y, parts.const(f"{prefix}_axes", np.array([1], np.int64))], [current])
        )
    if sequence and specs:
        return current
    raise AssertionError("unreachable: specs is non-empty")


def _dense_head(parts: GraphParts, spec: _DenseSpec, hidden: str, output: str) -> int:
    """Dense on the last hidden state; writes ``output`` ([N] for one unit, [N, k] otherwise). Returns k."""
    k = int(spec.kernel.shape[1])
    gemm_inputs = [hidden, parts.const("head_kernel", spec.kernel)]
    if spec.bias is not None:
        gemm_inputs.append(parts.const("head_bias", spec.bias))
    logits = "head_logits"
    parts.nodes.append(helper.make_node("Gemm", gemm_inputs, [logits], name=f"head_{spec.name}"))
    current = logits
    if spec.activation == "sigmoid":
        parts.nodes.append(helper.make_node("Sigmoid", [current], ["head_act"]))
        current = "head_act"
    if k == 1:
        parts.nodes.append(
            helper.make_node("Squeeze", [current, parts.const("head_axes", np.array([1], np.int64))], [output])
        )
    else:
        parts.nodes.append(helper.make_node("Identity", [current], [output]))
    return k


def _input_dims(model, grus: list[_GruSpec]) -> tuple[int, int | str]:
    """(F, T) of the model input; T is the symbolic "T" when the Keras input leaves it open."""
    in_shape = tuple(model.inputs[0].shape)
    if len(in_shape) != 3 or in_shape[2] is None:
        raise UnsupportedModelError(f"model {model.name!r}: input shape {in_shape} is not [batch, T, F] with F fixed")
    in_dtype = str(getattr(model.inputs[0], "dtype", "float32"))
    if in_dtype != "float32":
        raise UnsupportedModelError(f"model {model.name!r}: input dtype {in_dtype} is not float32")
    n_features = int(in_shape[2])
    if grus[0].kernel.shape[0] != n_features:
        raise UnsupportedModelError(
            f"layer {grus[0].name!r} (GRU): kernel has {grus[0].kernel.shape[0]} input rows, input has {n_features} features"
        )
    return n_features, "T" if in_shape[1] is None else int(in_shape[1])


def keras_to_fused_onnx(model, name: str = "gru-edge") -> onnx.ModelProto:
    """Fused-GRU ONNX graph of ``Input[None, T, F] -> GRU... -> Dense(k, sigmoid|linear)``.

    Input ``windows`` float32 [N, T, F] (N symbolic; T symbolic only when the Keras input leaves it open);
    output ``score`` float32 [N] for a one-unit head, [N, k] otherwise.
    Raises ``UnsupportedModelError`` for any layer or setting without an exact mapping.
    """
    grus, head = _parse(model, sequence_output=False)
    n_features, time_dim = _input_dims(model, grus)

    parts = GraphParts()
    parts.nodes.append(helper.make_node("Transpose", [INPUT_NAME], ["windows_tm"], perm=[1, 0, 2]))
    hidden = _gru_stack(parts, grus, "windows_tm")
    k = _dense_head(parts, head, hidden, OUTPUT_NAME)

    graph = helper.make_graph(
        parts.nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, time_dim, n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM] if k == 1 else [BATCH_DIM, k])],
        initializer=parts.initializers,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gru-edge", ir_version=IR_VERSION
    )
    onnx_model.doc_string = (
        f"fused-gru: {len(grus)} GRU layer(s) {[g.units for g in grus]} -> Dense({k}, {head.activation}) "
        f"from Keras model {model.name!r}"
    )
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def _error_score(parts: GraphParts, spec: _DenseSpec, sequence: str, windows_tm: str, error_head, output: str) -> None:
    """Forecast-error score in-graph, the expression of ``gru_edge.train.normal_only.error_scores``.

    ``sequence`` [T, N, u] are the last GRU's states and ``windows_tm`` [T, N, F] the input; the Dense
    forecasts sample t + 1 from state t, so the last ``steps`` samples are forecast by states
    T - steps - 1 .. T - 2. Writes ``output`` [N] = sqrt(mean over those samples and the features of
    ((x - forecast - offset) / scale)^2).
    """
    k = int(error_head.steps)
    n_features = int(spec.kernel.shape[1])
    if len(error_head.scale) != n_features or len(error_head.offset) != n_features:
        raise UnsupportedModelError(
            f"error head has {len(error_head.scale)} scales for a forecaster of {n_features} features"
        )
    if error_head.target not in ("delta", "next"):
        raise UnsupportedModelError(f"error head target {error_head.target!r} is not 'delta' or 'next'")
    axis0 = parts.const("err_axis_t", np.array([0], np.int64))
    before = (parts.const("err_prev_start", np.array([-k - 1], np.int64)), parts.const("err_prev_end", np.array([-1], np.int64)))
    last = (parts.const("err_last_start", np.array([-k], np.int64)),
            parts.const("err_last_end", np.array([np.iinfo(np.int64).max], np.int64)))
    nodes = parts.nodes
    nodes.append(helper.make_node("Slice", [sequence, *before, axis0], ["err_states"]))  # [k, N, u]
    nodes.append(helper.make_node("MatMul", ["err_states", parts.const("head_kernel", spec.kernel)], ["err_dense"],
                                  name=f"head_{spec.name}"))
    current = "err_dense"
    if spec.bias is not None:
        nodes.append(helper.make_node("Add", [current, parts.const("head_bias", spec.bias)], ["err_dense_b"]))
        current = "err_dense_b"
    if spec.activation == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [current], ["err_dense_act"]))
        current = "err_dense_act"
    if error_head.target == "delta":
        nodes.append(helper.make_node("Slice", [windows_tm, *before, axis0], ["err_inputs"]))
        nodes.append(helper.make_node("Add", [current, "err_inputs"], ["err_forecast"]))
        current = "err_forecast"
    nodes.append(helper.make_node("Slice", [windows_tm, *last, axis0], ["err_actual"]))  # [k, N, F]
    nodes.append(helper.make_node("Sub", ["err_actual", current], ["err_raw"]))
    offset = parts.const("err_offset", np.asarray(error_head.offset, np.float32))
    scale = parts.const("err_scale", np.asarray(error_head.scale, np.float32))
    nodes.append(helper.make_node("Sub", ["err_raw", offset], ["err_centred"]))
    nodes.append(helper.make_node("Div", ["err_centred", scale], ["err_z"]))
    nodes.append(helper.make_node("Mul", ["err_z", "err_z"], ["err_z2"]))
    nodes.append(helper.make_node("ReduceMean", ["err_z2"], ["err_mean"], axes=[0, 2], keepdims=0))  # [N]
    nodes.append(helper.make_node("Sqrt", ["err_mean"], [output]))


def keras_to_error_onnx(model, error_head, name: str = "gru-edge") -> onnx.ModelProto:
    """Fused-GRU ONNX graph of a normal-only forecaster ``Input[None, T, F] -> GRU(seq)... -> Dense(F)`` whose
    output is the anomaly score itself (``error_head``: a ``gru_edge.train.normal_only.ErrorHead``).

    Input ``windows`` float32 [N, T, F]; output ``score`` float32 [N]. So the runtime scores a forecaster's
    bundle exactly like a classifier's.
    """
    grus, head = _parse(model, sequence_output=True)
    n_features, time_dim = _input_dims(model, grus)
    if head.kernel.shape[1] != n_features:
        raise UnsupportedModelError(
            f"layer {head.name!r} (Dense): forecasts {head.kernel.shape[1]} values per step, the input has {n_features} features"
        )
    if isinstance(time_dim, int) and not 1 <= int(error_head.steps) <= time_dim - 1:
        raise UnsupportedModelError(f"error head steps {error_head.steps} must be between 1 and T - 1 = {time_dim - 1}")

    parts = GraphParts()
    parts.nodes.append(helper.make_node("Transpose", [INPUT_NAME], ["windows_tm"], perm=[1, 0, 2]))
    sequence = _gru_stack(parts, grus, "windows_tm", sequence=True)
    _error_score(parts, head, sequence, "windows_tm", error_head, OUTPUT_NAME)

    graph = helper.make_graph(
        parts.nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, time_dim, n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM])],
        initializer=parts.initializers,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gru-edge", ir_version=IR_VERSION
    )
    onnx_model.doc_string = (
        f"fused-gru forecaster: {len(grus)} GRU layer(s) {[g.units for g in grus]} -> Dense({n_features}) per step "
        f"-> {error_head.target} forecast error of the last {error_head.steps} samples, standardised, RMS "
        f"from Keras model {model.name!r}"
    )
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model
