"""Fused-GRU ONNX export: parity with Keras, refusals, compact weight storage, tf2onnx cross-check.

Models get random weights and no training: parity must hold for any weights, and random non-zero
biases exercise the bias layout (Keras initialises biases to zero, which would hide a swapped row).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from gru_edge.export.onnx_graph import (  # noqa: E402
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    UnsupportedModelError,
    keras_to_fused_onnx,
)
from gru_edge.export.weight_storage import quantize_per_channel, to_fp16_weights, to_int8_weights  # noqa: E402

PARITY_ATOL = 1e-5
layers = keras.layers


def _randomize(model, seed: int, kernel_gain: float | None = None) -> None:
    """Random normal weights: scale 0.3 for everything, or ``kernel_gain / sqrt(fan_in)`` for kernels when given
    (a wide layer with 0.3 would saturate every unit and be nothing like a trained model)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for var, w in zip(layer.weights, layer.get_weights()):
            if kernel_gain is not None and not var.path.endswith("bias"):
                new.append(rng.normal(size=w.shape) * kernel_gain / np.sqrt(w.shape[0]))
            else:
                new.append(rng.normal(size=w.shape) * 0.3)
        layer.set_weights([w.astype(np.float32) for w in new])


def _gru_model(units: list[int], n_features: int, window: int = 12, head=None, seed: int = 0, **gru_kwargs):
    stack = [keras.Input((window, n_features), name="in")]
    for i, u in enumerate(units):
        stack.append(layers.GRU(u, return_sequences=i < len(units) - 1, name=f"gru_{i}", **gru_kwargs))
    stack.append(head if head is not None else layers.Dense(1, activation="sigmoid", name="head"))
    model = keras.Sequential(stack)
    _randomize(model, seed)
    return model


def _session(m: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return _session(m).run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def _keras_scores(model, x: np.ndarray) -> np.ndarray:
    y = np.asarray(model(x, training=False))
    return y[:, 0] if y.shape[1] == 1 else y


def _ops(m: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in m.graph.node]


def _windows(n: int, window: int, n_features: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, window, n_features)).astype(np.float32)


def _assert_parity(model, onnx_model, window: int, n_features: int) -> None:
    for batch in (1, 7):
        x = _windows(batch, window, n_features, seed=batch)
        got, want = _run(onnx_model, x), _keras_scores(model, x)
        assert got.shape == want.shape == (batch,)
        np.testing.assert_allclose(got, want, atol=PARITY_ATOL, rtol=0)


def _reference_model(seed: int):
    """GRU 128 -> GRU 64 -> Dense 1 on T=64, F=5 (the size the ratio targets are set for)."""
    model = keras.Sequential(
        [keras.Input((64, 5)), layers.GRU(128, return_sequences=True), layers.GRU(64), layers.Dense(1, "sigmoid")]
    )
    # gain 1.5 spreads the scores (std ~0.1) without saturating every one of the 128 units
    _randomize(model, seed=seed, kernel_gain=1.5)
    return model


@pytest.fixture(scope="module")
def reference_fused():
    model = _reference_model(seed=21)
    return model, keras_to_fused_onnx(model)


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize("n_features", [1, 5])
@pytest.mark.parametrize("units", [[12], [16, 8], [16, 12, 8]], ids=["1gru", "2gru", "3gru"])
def test_fused_graph_matches_keras(units, n_features):
    model = _gru_model(units, n_features, seed=len(units) * 10 + n_features)
    m = keras_to_fused_onnx(model)
    ops = _ops(m)
    assert ops.count("GRU") == len(units)
    assert "Loop" not in ops and "Scan" not in ops
    assert m.opset_import[0].version == OPSET
    (inp,), (out,) = m.graph.input, m.graph.output
    assert inp.name == INPUT_NAME and out.name == OUTPUT_NAME
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", 12, n_features]
    _assert_parity(model, m, 12, n_features)


def test_reference_architecture_matches_keras(reference_fused):
    model, m = reference_fused
    x = _windows(16, 64, 5)
    want = _keras_scores(model, x)
    assert want.std() > 0.02  # the weights must do something for the parity to mean anything
    np.testing.assert_allclose(_run(m, x), want, atol=PARITY_ATOL, rtol=0)


def test_functional_model_dropout_and_no_bias():
    inp = keras.Input((10, 3))
    h = layers.GRU(8, return_sequences=True, use_bias=False, name="g0")(inp)
    h = layers.Dropout(0.5, name="drop")(h)
    h = layers.GRU(8, name="g1")(h)
    out = layers.Dense(1, activation="sigmoid", use_bias=False, name="head")(h)
    model = keras.Model(inp, out)
    _randomize(model, seed=5)
    m = keras_to_fused_onnx(model)
    gru0 = next(n for n in m.graph.node if n.op_type == "GRU")
    assert len(gru0.input) == 3  # no B: ONNX's default zero bias is Keras use_bias=False
    _assert_parity(model, m, 10, 3)


def test_linear_multi_unit_head_keeps_unit_axis():
    model = _gru_model([12, 8], 4, head=layers.Dense(3, name="forecast"), seed=7)
    m = keras_to_fused_onnx(model)
    x = _windows(7, 12, 4)
    got = _run(m, x)
    assert got.shape == (7, 3)
    assert "Sigmoid" not in _ops(m)
    np.testing.assert_allclose(got, _keras_scores(model, x), atol=PARITY_ATOL, rtol=0)


def test_open_time_axis_stays_symbolic():
    inp = keras.Input((None, 2))
    out = layers.Dense(1, activation="sigmoid")(layers.GRU(8)(inp))
    model = keras.Model(inp, out)
    _randomize(model, seed=2)
    m = keras_to_fused_onnx(model)
    for steps in (5, 9):
        x = _windows(3, steps, 2)
        np.testing.assert_allclose(_run(m, x), _keras_scores(model, x), atol=PARITY_ATOL, rtol=0)


def _with(m: onnx.ModelProto, edit) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(m)
    edit(out)
    return out


def test_wrong_mappings_are_detected_by_parity():
    """The parity tolerance has teeth: each plausible mapping mistake moves scores by far more than 1e-5."""
    model = _gru_model([16, 8], 5, seed=11)
    m = keras_to_fused_onnx(model)
    x = _windows(32, 12, 5)
    good = _run(m, x)

    def flip_linear_before_reset(p):
        for node in p.graph.node:
            for a in node.attribute:
                if a.name == "linear_before_reset":
                    a.i = 0

    def swap_z_r(p):
        for init in p.graph.initializer:
            if init.name == "gru0_W":
                w = numpy_helper.to_array(init).copy()
                u = w.shape[1] // 3
                w[:, : 2 * u] = np.concatenate([w[:, u : 2 * u], w[:, :u]], axis=1)
                init.CopyFrom(numpy_helper.from_array(w, init.name))

    def swap_bias_rows(p):
        for init in p.graph.initializer:
            if init.name == "gru0_B":
                b = numpy_helper.to_array(init)
                half = b.shape[1] // 2
                init.CopyFrom(numpy_helper.from_array(np.concatenate([b[:, half:], b[:, :half]], axis=1), init.name))

    for edit in (flip_linear_before_reset, swap_z_r, swap_bias_rows):
        diff = np.abs(_run(_with(m, edit), x) - good).max()
        assert diff > 1e-3, edit.__name__


# ---------------------------------------------------------------- refusals


def _seq(*stack, window=6, n_features=2, batch_size=None):
    return keras.Sequential([keras.Input((window, n_features), batch_size=batch_size), *stack])


REFUSALS = {
    "reset_after": lambda: _seq(layers.GRU(4, reset_after=False, name="bad"), layers.Dense(1, "sigmoid")),
    "activation": lambda: _seq(layers.GRU(4, activation="relu", name="bad"), layers.Dense(1, "sigmoid")),
    "recurrent_activation": lambda: _seq(
        layers.GRU(4, recurrent_activation="hard_sigmoid", name="bad"), layers.Dense(1, "sigmoid")
    ),
    "go_backwards": lambda: _seq(layers.GRU(4, go_backwards=True, name="bad"), layers.Dense(1, "sigmoid")),
    "stateful": lambda: _seq(layers.GRU(4, stateful=True, name="bad"), layers.Dense(1, "sigmoid"), batch_size=2),
    "dense_relu": lambda: _seq(layers.GRU(4), layers.Dense(1, activation="relu", name="bad")),
    "last_gru_sequences": lambda: _seq(layers.GRU(4, return_sequences=True, name="bad"), layers.Dense(1, "sigmoid")),
    "bidirectional": lambda: _seq(layers.Bidirectional(layers.GRU(4), name="bad"), layers.Dense(1, "sigmoid")),
    "lstm": lambda: _seq(layers.LSTM(4, name="bad"), layers.Dense(1, "sigmoid")),
    "layer_norm": lambda: _seq(
        layers.GRU(4, return_sequences=True), layers.LayerNormalization(name="bad"), layers.GRU(4), layers.Dense(1)
    ),
    "after_head": lambda: _seq(layers.GRU(4), layers.Dense(2), layers.Dense(1, "sigmoid", name="bad")),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_unsupported_configurations_are_refused_naming_the_layer(case):
    model = REFUSALS[case]()
    with pytest.raises(UnsupportedModelError, match="'bad'"):
        keras_to_fused_onnx(model)


def test_return_state_is_refused_naming_the_gru():
    inp = keras.Input((6, 2))
    seq, _state = layers.GRU(4, return_state=True, name="bad")(inp)
    model = keras.Model(inp, layers.Dense(1, "sigmoid")(seq))
    with pytest.raises(UnsupportedModelError, match="'bad'"):
        keras_to_fused_onnx(model)


def test_branching_model_is_refused():
    inp = keras.Input((6, 2))
    a = layers.GRU(4, name="left")(inp)
    b = layers.GRU(4, name="right")(inp)
    model = keras.Model(inp, layers.Dense(1, "sigmoid")(layers.Add(name="join")([a, b])))
    with pytest.raises(UnsupportedModelError, match="'right'|'join'"):
        keras_to_fused_onnx(model)


def test_unbuilt_model_is_refused():
    with pytest.raises(UnsupportedModelError, match="not built"):
        keras_to_fused_onnx(keras.Sequential([layers.GRU(4), layers.Dense(1)]))


# ---------------------------------------------------------------- compact weight storage


def _size(m: onnx.ModelProto) -> int:
    return len(m.SerializeToString())


@pytest.mark.parametrize(
    "convert, expander, max_ratio, max_diff",
    [(to_fp16_weights, "Cast", 0.55, 5e-3), (to_int8_weights, "DequantizeLinear", 0.35, 5e-2)],
    ids=["fp16", "int8"],
)
def test_compact_weights_shrink_keep_gru_and_scores(reference_fused, convert, expander, max_ratio, max_diff):
    _, m = reference_fused
    before = m.SerializeToString()
    compact = convert(m)
    assert m.SerializeToString() == before  # input not mutated
    assert _ops(compact).count("GRU") == 2 and "Loop" not in _ops(compact)
    assert expander in _ops(compact)
    assert _size(compact) <= max_ratio * _size(m)
    x = _windows(64, 64, 5)
    fp32, got = _run(m, x), _run(compact, x)
    assert got.dtype == np.float32 and got.shape == fp32.shape
    diff = np.abs(got - fp32).max()
    assert 0 < diff <= max_diff  # > 0: the weights really were rounded


def test_compact_weights_on_tiny_model_still_run_and_shrink():
    model = _gru_model([8], 2, window=6, seed=22)
    m = keras_to_fused_onnx(model)
    x = _windows(5, 6, 2)
    for convert in (to_fp16_weights, to_int8_weights):
        compact = convert(m)
        assert _size(compact) < _size(m)
        np.testing.assert_allclose(_run(compact, x), _run(m, x), atol=5e-2)


def test_int8_keeps_biases_float_and_scales_per_gate_row(reference_fused):
    _, m = reference_fused
    q = to_int8_weights(m)
    inits = {i.name: i for i in q.graph.initializer}
    assert inits["gru0_B"].data_type == onnx.TensorProto.FLOAT
    assert inits["gru0_W_int8"].data_type == onnx.TensorProto.INT8
    dq = {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"}
    assert set(dq) == {"gru0_W", "gru0_R", "gru1_W", "gru1_R", "head_kernel"}
    axis = {n: next(a.i for a in node.attribute if a.name == "axis") for n, node in dq.items()}
    assert axis["gru0_R"] == 1 and axis["head_kernel"] == 1
    assert list(inits["gru0_R_scale"].dims) == [3 * 128]


def test_quantize_per_channel_is_symmetric_and_bounded():
    w = np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [0.01, -0.02, 0.0]], np.float32)
    q, scale = quantize_per_channel(w, axis=0)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    np.testing.assert_allclose(scale, [2.0 / 127, 1.0, 0.02 / 127], rtol=1e-6)
    np.testing.assert_allclose(q * scale[:, None], w, atol=scale.max() / 2 + 1e-7)
    assert not q[1].any()


# ---------------------------------------------------------------- tf2onnx cross-check


def test_tf2onnx_cross_check_agrees_with_fused_graph():
    from gru_edge.export.tf2onnx_check import tf2onnx_onnx_bytes, tf2onnx_scores

    model = _gru_model([12, 8], 3, seed=31)
    x = _windows(7, 12, 3)
    fused = _run(keras_to_fused_onnx(model), x)
    cross = tf2onnx_scores(model, x)
    assert cross.shape == fused.shape == (7,)
    np.testing.assert_allclose(cross, fused, atol=PARITY_ATOL, rtol=0)
    # it is an independent path: tf2onnx writes a Loop, not a fused GRU
    ops = {n.op_type for n in onnx.load_from_string(tf2onnx_onnx_bytes(model)).graph.node}
    assert "GRU" not in ops


def test_tf2onnx_cross_check_reference_model(reference_fused):
    from gru_edge.export.tf2onnx_check import tf2onnx_scores

    model, m = reference_fused
    x = _windows(16, 64, 5, seed=4)
    np.testing.assert_allclose(tf2onnx_scores(model, x), _run(m, x), atol=PARITY_ATOL, rtol=0)
