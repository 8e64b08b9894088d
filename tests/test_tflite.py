"""TFLite: conversion in a child process, the LiteRT backend, and TFLite bundles end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gru_edge.edge_runtime.bundle import BundleError
from gru_edge.edge_runtime.scorer import Scorer

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def tflite_bundle(tiny_run, tmp_path_factory):
    """One conversion (dynamic-range int8, the LiteRT variant the benchmarks compare with)."""
    from gru_edge.export.exporter import export

    out = tmp_path_factory.mktemp("bundles") / "tiny-tflite-dynamic"
    export(tiny_run.dir, out, quantize="dynamic", format="tflite", cross_check=False, log=lambda m: None)
    return out


def test_tflite_bundle_scores_like_keras(tflite_bundle, tiny_run):
    from gru_edge.export.parity import check_parity

    scorer = Scorer(tflite_bundle)
    m = scorer.manifest
    assert m.window_model.format == "tflite" and m.window_model.file == "model.tflite"
    assert m.window_model.quantization == "dynamic"
    assert "step" not in m.models and "stateful" in m.notes  # stateful needs an ONNX bundle, and says so
    report = check_parity(tiny_run.dir, tflite_bundle)
    assert report.passed, report.summary()
    assert report.max_abs_diff < 1e-2 and report.decision_agreement >= 0.995


def test_litert_backend_gives_the_same_scores_at_any_batch_size(tflite_bundle, tiny_run):
    scorer = Scorer(tflite_bundle)
    windows = np.random.default_rng(0).normal(size=(300, scorer.window, len(scorer.features))).astype(np.float32)
    model = scorer._model
    whole = model.run(windows)  # 256 + 44: two chunks, two tensor resizes
    singles = np.concatenate([model.run(windows[i : i + 1]) for i in range(0, 300, 37)])
    assert whole.shape == (300,)
    np.testing.assert_allclose(singles, whole[::37], atol=1e-6)
    # Streaming goes through the same backend and equals batch scoring.
    series = np.asarray(scorer.manifest.golden.probes[0].samples)
    ends, batch = scorer.score_series(series)
    live = scorer.stream()
    np.testing.assert_allclose([e.score for e in live.push_many(series)], batch, atol=1e-6)


def test_tflite_bundle_without_litert_says_what_to_install(tflite_bundle, monkeypatch):
    import gru_edge.edge_runtime.model_backend as backend

    real = backend.importlib.import_module

    def missing(name, *a, **k):
        if name.startswith("ai_edge_litert"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(backend.importlib, "import_module", missing)
    with pytest.raises(BundleError, match=r"pip install 'gru-edge\[litert\]'"):
        Scorer(tflite_bundle)


def test_unknown_quantization_for_a_format_is_refused(tiny_run, tmp_path):
    from gru_edge.export.exporter import ExportError, export

    with pytest.raises(ExportError, match="unknown quantization 'dynamic' for onnx"):
        export(tiny_run.dir, tmp_path / "x", quantize="dynamic", format="onnx", log=lambda m: None)
    with pytest.raises(ExportError, match="unknown format"):
        export(tiny_run.dir, tmp_path / "x", format="coreml", log=lambda m: None)
    assert not (tmp_path / "x").exists()


def test_converter_crash_is_reported_per_variant():
    from gru_edge.export.tflite_export import _describe_exit, convert_keras_file

    assert "SIGSEGV" in _describe_exit(-11, "Fatal Python error: Segmentation fault\n")
    assert "status 1" in _describe_exit(1, "Traceback ...\nValueError: boom")
    with pytest.raises(ValueError, match="representative"):
        convert_keras_file("model.keras", ["int8"])
    with pytest.raises(ValueError, match="unknown TFLite quantization"):
        convert_keras_file("model.keras", ["int4"])


def test_a_crashing_child_leaves_earlier_variants_and_names_the_one_it_died_on(monkeypatch):
    """The child writes each variant as it finishes; here it converts 'none' and then dies on 'int8'."""
    import subprocess

    from gru_edge.export import tflite_export

    def fake_run(cmd, **kwargs):
        out_dir = tflite_export.Path(cmd[cmd.index("--quantize") - 1])
        (out_dir / "none.tflite").write_bytes(b"TFL3fake")
        (out_dir / "none.json").write_text(json.dumps({"input_name": "in", "output_name": "out"}))
        return subprocess.CompletedProcess(cmd, -11, "", "Fatal Python error: Segmentation fault")

    monkeypatch.setattr(tflite_export.subprocess, "run", fake_run)
    reps = np.zeros((4, 8, 2), np.float32)
    results = tflite_export.convert_keras_file("m.keras", ["int8", "none"], reps)
    assert results["none"].content == b"TFL3fake" and results["none"].input_name == "in"
    assert isinstance(results["int8"], tflite_export.TfliteExportError)
    assert "SIGSEGV" in str(results["int8"]) and "int8" in str(results["int8"])
