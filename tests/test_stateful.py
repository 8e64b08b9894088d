"""Stateful streaming: the single-step graph, its self-test, its measured divergence, and the stream scorer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gru_edge.edge_runtime.bundle import BundleError
from gru_edge.edge_runtime.fsutil import sha256_file
from gru_edge.edge_runtime.scorer import Scorer
from gru_edge.edge_runtime.stateful import StepModel, open_step_model
from gru_edge.train.data import load_csv

keras = pytest.importorskip("keras")


def _random_gru(units, n_features=3, window=10, seed=0):
    stack = [keras.Input((window, n_features))]
    for i, u in enumerate(units):
        stack.append(keras.layers.GRU(u, return_sequences=i < len(units) - 1))
    stack.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(stack)
    rng = np.random.default_rng(seed)
    # Random non-zero biases too: a swapped bias row or wrong gate order would show.
    model.set_weights([(rng.normal(size=w.shape) * 0.4).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("storage", ["none", "int8"])
def test_step_model_replayed_from_zero_state_is_the_window_model(storage):
    from gru_edge.export.onnx_graph import keras_to_fused_onnx
    from gru_edge.export.step_graph import keras_to_step_onnx
    from gru_edge.export.variants import onnx_variant

    model = _random_gru([12, 6, 5])
    windows = np.random.default_rng(1).normal(size=(40, 10, 3)).astype(np.float32)
    window_scores = onnx_variant(keras_to_fused_onnx(model), storage).scores(windows)
    step = StepModel(onnx_variant(keras_to_step_onnx(model), storage).content)
    assert step.state_sizes == [12, 6, 5]
    np.testing.assert_allclose(step.replay(windows), window_scores, atol=2e-6)
    if storage == "none":
        keras_scores = np.asarray(model(windows))[:, 0]
        np.testing.assert_allclose(step.replay(windows), keras_scores, atol=1e-5)
    # A never-reset stream is a different thing: after the first window its scores move away.
    series = windows.reshape(-1, 3)[:60]
    carried = step.run_series(series)
    assert carried[9] == pytest.approx(step.replay(series[None, :10])[0], abs=1e-6)


def test_flops_per_window_counts_the_matrix_products():
    from gru_edge.export.step_graph import flops_per_window

    model = _random_gru([128, 64], n_features=4, window=64)
    flops = flops_per_window(model, 64)
    matrix = 64 * (2 * 3 * 128 * (4 + 128) + 2 * 3 * 64 * (128 + 64))
    assert matrix < flops < 1.03 * matrix  # 11.4 M for the reference model, ~98 % matrix products


def test_bundle_carries_a_self_tested_step_model_and_its_divergence(tiny_bundle):
    scorer = Scorer(tiny_bundle)
    m = scorer.manifest
    assert m.models["step"].file == "step.onnx" and m.models["step"].quantization == "none"
    stateful = m.parity["stateful"]
    for key in ("mean_abs_diff", "max_abs_diff", "decision_agreement", "alarm_onsets", "replay_max_abs_diff"):
        assert key in stateful, key
    assert 0.0 <= stateful["decision_agreement"] <= 1.0
    assert stateful["replay_max_abs_diff"] <= m.golden.atol
    assert m.notes["model"]["gru_units"] == [16, 8]
    model = scorer.step_model()
    assert model is scorer.step_model()  # opened once


def test_step_model_with_other_weights_fails_its_self_test(tiny_bundle, tmp_path):
    from gru_edge.export.step_graph import keras_to_step_onnx

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    m = Scorer(bundle).manifest
    impostor = _random_gru([16, 8], n_features=len(m.features), window=m.window, seed=5)
    (bundle / "step.onnx").write_bytes(keras_to_step_onnx(impostor).SerializeToString())
    manifest = json.loads((bundle / "manifest.json").read_text())
    for f in manifest["files"]:  # a consistent but wrong bundle: hashes match, behaviour does not
        if f["path"] == "step.onnx":
            f["sha256"], f["bytes"] = sha256_file(bundle / "step.onnx"), (bundle / "step.onnx").stat().st_size
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    scorer = Scorer(bundle)  # the window model is untouched and still opens
    with pytest.raises(BundleError, match="step model self-test failed"):
        scorer.stream("stateful")
    with pytest.raises(BundleError, match="self-test failed"):
        open_step_model(bundle)


@pytest.fixture(scope="module")
def series(tiny_bundle, synth_csv):
    return load_csv(synth_csv, features=Scorer(tiny_bundle).features).values[:400]


def test_stateful_stream_scores_at_the_exact_samples_and_starts_equal(tiny_bundle, series):
    scorer = Scorer(tiny_bundle)
    live_exact, live_state = scorer.stream("exact"), scorer.stream("stateful")
    a = [e for e in (live_exact.push(r) for r in series) if e is not None]
    b = [e for e in (live_state.push(r) for r in series) if e is not None]
    assert [e.index for e in a] == [e.index for e in b]
    # The first window is seen from zero state in both modes: same score.
    assert b[0].score == pytest.approx(a[0].score, abs=1e-5)
    assert all(e.anomaly == (e.score >= scorer.threshold) for e in b)
    # Never-reset scores equal a single replay of the whole series through the step model.
    replay = scorer.step_model().run_series(scorer.manifest.scaler.transform(series))
    np.testing.assert_allclose([e.score for e in b], replay[[e.index for e in b]], atol=1e-6)


def test_stateful_push_many_equals_push_and_reset_restarts(tiny_bundle, series):
    scorer = Scorer(tiny_bundle)
    one = scorer.stream("stateful")
    by_one = [e for e in (one.push(r) for r in series) if e is not None]
    burst = scorer.stream("stateful")
    by_burst = []
    for start in range(0, len(series), 37):
        by_burst += burst.push_many(series[start : start + 37])
    assert by_burst == by_one
    burst.reset()
    assert burst.samples_seen == 0
    assert burst.push_many(series[: scorer.window])[0] == by_one[0]


def test_stateful_bad_sample_is_refused_without_advancing(tiny_bundle, series):
    live = Scorer(tiny_bundle).stream("stateful")
    live.push(series[0])
    with pytest.raises(ValueError, match="NaN"):
        live.push(np.full(series.shape[1], np.nan))
    with pytest.raises(ValueError, match="values per sample"):
        live.push(series[1][:-1])
    with pytest.raises(ValueError, match="sample 1 of the burst"):
        live.push_many([series[1], np.full(series.shape[1], np.inf)])
    assert live.samples_seen == 1


def test_bundle_without_step_model_refuses_stateful_mode(tiny_run, tmp_path, synth_csv, capsys):
    from gru_edge.edge_runtime.cli import EXIT_BAD_BUNDLE, main
    from gru_edge.export.exporter import export

    out = tmp_path / "nostep"
    result = export(tiny_run.dir, out, cross_check=False, step=False, log=lambda m: None)
    assert "step" not in result.manifest.models
    with pytest.raises(BundleError, match="no step model"):
        Scorer(out).stream("stateful")
    assert main([str(out), "--input", str(synth_csv), "--mode", "stateful"]) == EXIT_BAD_BUNDLE
    assert "no step model" in capsys.readouterr().err


def test_edge_score_stateful_mode(tiny_bundle, synth_csv, capsys):
    from gru_edge.edge_runtime.cli import main

    assert main([str(tiny_bundle), "--input", str(synth_csv), "--mode", "stateful", "--quiet"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    scorer = Scorer(tiny_bundle)
    assert rows[0]["index"] == scorer.window - 1
    assert len(rows) == len(load_csv(synth_csv, features=scorer.features).values) - scorer.window + 1


def test_step_fast_path_gives_what_the_public_run_gives(tiny_bundle):
    model = Scorer(tiny_bundle).step_model()
    assert model._run is not model._session.run  # this onnxruntime offers the internal call, and it was verified
    x = np.random.default_rng(0).normal(size=(3, model.n_features)).astype(np.float32)
    states = [np.random.default_rng(1).normal(size=s.shape).astype(np.float32) for s in model.zero_states(3)]
    expected = model._session.run(None, {model.input_name: x, **dict(zip(model.state_names, states))})
    score, new_states = model.step(x, states)
    np.testing.assert_array_equal(score, expected[0])
    for got, want in zip(new_states, expected[1:]):
        np.testing.assert_array_equal(got, want)
