"""Normal-only mode: the forecast-error score (pure maths), its in-graph ONNX twin, and the whole
train -> export -> edge_runtime path on a tiny model (stream == batch, parity, record fields)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from gru_edge.train.normal_only import (
    MIN_ERROR_SCALE,
    ErrorHead,
    all_normal,
    check_steps,
    error_scores,
    fit_error_head,
    forecast_errors,
    quantile_threshold,
    training_pairs,
)


def _head(target="delta", steps=2, offset=(0.0, 0.0), scale=(1.0, 1.0)):
    return ErrorHead(target, steps, tuple(offset), tuple(scale))


# ---------------------------------------------------------------- pure maths


def test_delta_forecast_error_by_hand():
    # one window, T = 4, F = 1: x = 0, 1, 3, 6; the model forecasts a change of +1 at every step
    w = np.array([[[0.0], [1.0], [3.0], [6.0]]])
    out = np.ones_like(w)
    # last 2 samples (3, 6) are forecast from samples 1 and 2 as 1 + 1 = 2 and 3 + 1 = 4: errors 1 and 2
    np.testing.assert_allclose(forecast_errors(w, out, "delta", 2)[0, :, 0], [1.0, 2.0])
    assert error_scores(w, out, _head("delta", 2, (0.0,), (1.0,)))[0] == pytest.approx(np.sqrt((1 + 4) / 2))
    # standardised: offset 1, scale 0.5 -> z = 0, 2
    assert error_scores(w, out, _head("delta", 2, (1.0,), (0.5,)))[0] == pytest.approx(np.sqrt((0 + 4) / 2))


def test_next_forecast_uses_outputs_before_the_last_step():
    w = np.array([[[0.0], [1.0], [3.0], [6.0]]])
    out = np.array([[[1.0], [2.0], [5.0], [99.0]]])  # the output at T - 1 forecasts beyond the window
    np.testing.assert_allclose(forecast_errors(w, out, "next", 3)[0, :, 0], [0.0, 1.0, 1.0])
    assert error_scores(w, out, _head("next", 3, (0.0,), (1.0,)))[0] == pytest.approx(np.sqrt(2 / 3))


def test_score_averages_features_and_steps():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 6, 3))
    out = rng.normal(size=(5, 6, 3))
    head = _head("delta", 4, (0.1, -0.2, 0.3), (0.5, 1.0, 2.0))
    err = w[:, -4:] - (out[:, -5:-1] + w[:, -5:-1])
    want = np.sqrt((((err - np.array(head.offset)) / np.array(head.scale)) ** 2).mean(axis=(1, 2)))
    np.testing.assert_allclose(error_scores(w, out, head), want)


def test_steps_must_fit_inside_the_window():
    check_steps(8, 7)
    for bad in (0, 8):
        with pytest.raises(ValueError, match="between 1 and window - 1"):
            check_steps(8, bad)
    with pytest.raises(ValueError):
        forecast_errors(np.zeros((1, 4, 1)), np.zeros((1, 4, 1)), "delta", 4)


def test_error_head_round_trip_and_validation():
    head = _head("next", 3, (0.5, -1.0), (0.2, 3.0))
    assert ErrorHead.from_dict(json.loads(json.dumps(head.to_dict()))) == head
    with pytest.raises(ValueError, match="target"):
        _head("sideways")
    with pytest.raises(ValueError, match="scales"):
        _head(scale=(1.0, 0.0))
    with pytest.raises(ValueError, match="not an error head"):
        ErrorHead.from_dict({"target": "delta"})


def test_fit_error_head_uses_mean_and_floored_std():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(200, 5, 2))
    w[:, :, 1] = 7.0  # a feature the persistence forecast gets exactly right
    out = np.zeros_like(w)  # delta = 0: forecast = previous sample
    head = fit_error_head(w, out, "delta", 2)
    err = (w[:, -2:] - w[:, -3:-1]).reshape(-1, 2)
    assert head.offset[0] == pytest.approx(err[:, 0].mean())
    assert head.scale[0] == pytest.approx(err[:, 0].std())
    assert head.scale[1] == MIN_ERROR_SCALE  # zero spread is floored, never divided by


def test_training_pairs_shift_by_one_and_skip_anomalous_windows():
    series = np.arange(20.0).reshape(10, 2)
    x, y = training_pairs(series, 4, "next")
    assert x.shape == y.shape == (6, 4, 2)
    np.testing.assert_array_equal(y[0], series[1:5])
    _, d = training_pairs(series, 4, "delta")
    np.testing.assert_array_equal(d, np.full((6, 4, 2), 2.0))
    normal = np.ones(10, bool)
    normal[6] = False  # rows 2..6 / 3..7 / ... contain it: only pairs starting at 0 and 1 stay
    x2, _ = training_pairs(series, 4, "next", normal=normal)
    np.testing.assert_array_equal(x2[:, 0, 0], [0.0, 2.0])
    np.testing.assert_array_equal(all_normal(~normal, 10, 4), [True, True, True, False, False, False, False])
    assert all_normal(None, 10, 4).all()


def test_quantile_threshold():
    assert quantile_threshold(np.arange(101.0), 0.99, 1.5) == pytest.approx(99.5 * 1.5)  # between 99 and 100
    assert quantile_threshold(np.array([1.0] * 9 + [3.0]), 0.9) == pytest.approx(2.0)  # never on a tied score
    assert quantile_threshold(np.zeros(50), 0.99) == pytest.approx(0.1)  # a flat line must not alarm at 0
    # a periodic signal repeats windows whose scores differ by float rounding only: never cut inside them
    cluster = 1.0 + np.arange(50) * 1e-8
    t = quantile_threshold(np.r_[cluster, 3.0], 0.9)
    assert t == pytest.approx((3.0 + cluster.max()) / 2)
    assert quantile_threshold(cluster, 0.99) > cluster.max() + 5e-5  # above them all, with a margin
    with pytest.raises(ValueError, match="no normal"):
        quantile_threshold(np.array([]), 0.99)


# ---------------------------------------------------------------- in-graph score (ONNX)

keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")


def _forecaster(units, n_features, window=10, seed=0, last_seq=True):
    layers = keras.layers
    stack = [keras.Input((window, n_features))]
    for i, u in enumerate(units):
        stack.append(layers.GRU(u, return_sequences=last_seq or i < len(units) - 1))
    stack.append(layers.Dense(n_features))
    model = keras.Sequential(stack)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # random non-zero biases exercise the bias layout
        layer.set_weights([(rng.normal(size=w.shape) * 0.4).astype(np.float32) for w in layer.get_weights()])
    return model


def _onnx_run(m, x):
    from gru_edge.export.onnx_graph import INPUT_NAME, OUTPUT_NAME

    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


@pytest.mark.parametrize("target", ["delta", "next"])
@pytest.mark.parametrize("units,n_features,steps", [([6], 1, 1), ([8, 5], 3, 4), ([6, 5, 4], 2, 9)])
def test_error_graph_matches_numpy_score(target, units, n_features, steps):
    from gru_edge.export.onnx_graph import keras_to_error_onnx
    from gru_edge.train.normal_only import keras_error_scores

    model = _forecaster(units, n_features, seed=len(units) + n_features)
    rng = np.random.default_rng(2)
    head = ErrorHead(target, steps, tuple(rng.normal(size=n_features) * 0.1),
                     tuple(rng.uniform(0.3, 2.0, size=n_features)))
    m = keras_to_error_onnx(model, head)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("GRU") == len(units) and "Loop" not in ops
    for batch in (1, 7):
        x = rng.normal(size=(batch, 10, n_features)).astype(np.float32)
        got = _onnx_run(m, x)
        assert got.shape == (batch,)
        np.testing.assert_allclose(got, keras_error_scores(model, x, head), atol=1e-5, rtol=1e-5)


def test_error_graph_int8_and_fp16_storage_stay_close():
    from gru_edge.export.onnx_graph import keras_to_error_onnx
    from gru_edge.export.weight_storage import to_fp16_weights, to_int8_weights

    model = _forecaster([16, 8], 3, seed=5)
    head = ErrorHead("delta", 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    m = keras_to_error_onnx(model, head)
    x = np.random.default_rng(3).normal(size=(32, 10, 3)).astype(np.float32)
    ref = _onnx_run(m, x)
    for stored, atol in ((to_int8_weights(m), 0.1), (to_fp16_weights(m), 0.02)):
        np.testing.assert_allclose(_onnx_run(stored, x), ref, atol=atol)
    assert len(to_int8_weights(m).SerializeToString()) < len(m.SerializeToString())


def test_error_graph_refuses_what_it_cannot_map():
    from gru_edge.export.onnx_graph import UnsupportedModelError, keras_to_error_onnx, keras_to_fused_onnx

    head = ErrorHead("delta", 4, (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(UnsupportedModelError, match="return_sequences=True"):
        keras_to_error_onnx(_forecaster([4], 2, last_seq=False), head)
    with pytest.raises(UnsupportedModelError, match="steps 10"):
        keras_to_error_onnx(_forecaster([4], 2), ErrorHead("delta", 10, (0.0, 0.0), (1.0, 1.0)))
    with pytest.raises(UnsupportedModelError, match="3 scales"):
        keras_to_error_onnx(_forecaster([4], 2), ErrorHead("delta", 2, (0.0,) * 3, (1.0,) * 3))
    # the classifier graph still refuses a sequence-returning last GRU
    with pytest.raises(UnsupportedModelError, match="return_sequences=True on the last GRU"):
        keras_to_fused_onnx(_forecaster([4], 2))


# ---------------------------------------------------------------- the whole path, tiny


@pytest.fixture(scope="module")
def normal_only_run(tmp_path_factory):
    from gru_edge.train.pipeline import TrainConfig, train
    from gru_edge.train.synth import generate, write_csv

    root = tmp_path_factory.mktemp("normal_only")
    csv = root / "pump.csv"
    write_csv(generate(rows=1500, seed=4), csv)
    config = TrainConfig(data=str(csv), mode="normal-only", window=16, units=(8,), epochs=2, error_steps=6, seed=0)
    run = train(config, root / "run", log=lambda m: None)
    return root, run


@pytest.mark.slow
def test_run_records_mode_error_head_and_threshold(normal_only_run):
    _, run = normal_only_run
    r = run.record
    assert r.mode == "normal-only" and r.score_kind == "forecast_error"
    head = ErrorHead.from_dict(r.error_head)
    assert head.target == "delta" and head.steps == 6 and head.n_features == len(r.features)
    assert r.threshold > 0 and "validation" in r.threshold_rule
    assert {"validation", "test"} <= set(r.metrics) and "f1" in r.metrics["test"]


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_bundle_scores_stream_equal_batch_and_match_keras(normal_only_run, quantize):
    from gru_edge.edge_runtime.scorer import Scorer
    from gru_edge.evaluate.series_run import _ungated
    from gru_edge.export.exporter import export
    from gru_edge.export.parity import check_parity

    root, run = normal_only_run
    # Error scores sit densely around their threshold, so int8's few flips can trip the 99.5 % decision
    # gate on a tiny test part; this test measures the int8 bundle instead of gating it.
    options = {} if quantize == "none" else _ungated(root)
    bundle = export(run.dir, root / f"b-{quantize}", quantize=quantize, cross_check=quantize == "none",
                    log=lambda m: None, **options)
    assert bundle.manifest.score.kind == "forecast_error"
    assert bundle.manifest.score.threshold == pytest.approx(run.record.threshold)
    assert bundle.manifest.window_model.quantization == quantize
    scorer = Scorer(bundle.bundle_dir)
    series = run.holdout().test
    ends, batch = scorer.score_series(series, stride=1)
    stream = scorer.stream()
    events = [e for e in (stream.push(s) for s in series) if e is not None]
    assert [e.index for e in events] == ends.tolist()
    np.testing.assert_allclose([e.score for e in events], batch, atol=1e-5)
    report = check_parity(run.dir, bundle.bundle_dir)
    if quantize == "none":
        assert report.passed, report.summary()
        assert report.max_abs_diff < 1e-5
    else:
        assert report.max_abs_diff < 0.05 and report.decision_agreement > 0.97, report.summary()


def test_parity_of_unbounded_scores_is_relative_to_their_size():
    from gru_edge.edge_runtime.device_profile import ParityTolerance
    from gru_edge.export.parity import compare_scores

    tol = ParityTolerance(max_abs_diff=1e-5, min_decision_agreement=1.0, max_f1_drop=0.0)
    ref = np.array([0.5, 2.0, 120.0])
    cand = ref + np.array([2e-6, 0.0, 6e-4])  # float32 rounding of a score of 120 is ~1e-5 already
    assert not compare_scores(ref, cand, 3.0, tol).passed
    report = compare_scores(ref, cand, 3.0, tol, relative=True)
    assert report.passed and report.max_abs_diff == pytest.approx(5e-6) and "rel |diff|" in report.summary()
    # below a score of 1 relative and absolute are the same: a real difference still fails
    assert not compare_scores(ref, ref + np.array([1e-3, 0, 0]), 3.0, tol, relative=True).passed
