"""The quantization matrix, alarm-onset shifts, and `--quantize auto`."""

from __future__ import annotations

import numpy as np
import pytest

from gru_edge.edge_runtime.device_profile import ParityTolerance
from gru_edge.export.parity import alarm_onsets, compare_scores, onset_shift
from gru_edge.export.variants import VariantResult, auto_tolerance, choose_smallest, matrix_table, variant_label


def test_alarm_onsets_and_their_shift():
    assert alarm_onsets(np.array([0, 0, 1, 1, 0, 1], bool)).tolist() == [2, 5]
    assert alarm_onsets(np.array([], bool)).tolist() == []
    ref = np.zeros(200, bool)
    ref[[10, 11, 12, 80, 81, 150]] = True
    cand = np.zeros(200, bool)
    cand[[13, 14, 78, 79, 80]] = True  # later by 3, earlier by 2, the third alarm missed
    cand[190] = True  # and one extra, too far from any reference onset
    r = onset_shift(ref, cand, radius=20)
    assert (r["reference"], r["candidate"], r["matched"], r["missed"], r["extra"]) == (3, 3, 2, 1, 1)
    assert r["max_abs_shift"] == 3 and r["mean_abs_shift"] == 2.5 and r["mean_shift"] == 0.5
    assert onset_shift(ref, ref)["max_abs_shift"] == 0


def test_compare_scores_reports_onsets():
    ref = np.r_[np.zeros(20), np.ones(5), np.zeros(20)]
    cand = np.r_[np.zeros(22), np.ones(5), np.zeros(18)]
    report = compare_scores(ref, cand, 0.5, ParityTolerance(1.0, 0.0, 1.0))
    assert report.alarm_onsets["max_abs_shift"] == 2
    assert "onsets max shift 2" in report.summary()
    assert report.to_dict()["alarm_onsets"]["matched"] == 1


def _result(label, size, agreement, f1_drop=0.0, tol=None, error=None):
    tol = tol or ParityTolerance(1e30, 0.995, 0.01)
    if error:
        return VariantResult(label, label.split()[0], label.split()[1], size, None, error=error)
    ref = np.r_[np.zeros(500), np.ones(500)]
    cand = ref.copy()
    cand[: int(round((1 - agreement) * 1000))] = 1.0  # false alarms in the normal part
    labels = ref.astype(int)
    report = compare_scores(ref, cand, 0.5, tol, labels, variant=label)
    return VariantResult(label, label.split()[0], label.split()[1], size, report)


def test_choose_smallest_passing_and_says_why():
    results = [
        _result("onnx fp32", 350_000, 1.0),
        _result("onnx fp16", 175_000, 0.999),
        _result("onnx int8", 98_000, 0.99),  # fails agreement
        _result("tflite int8", 50_000, 1.0, error="converter crashed (SIGSEGV)"),
    ]
    chosen, note = choose_smallest(results)
    assert chosen.label == "onnx fp16"
    why = {c["variant"]: c["why"] for c in note["candidates"]}
    assert "decision agreement" in why["onnx int8"]
    assert why["onnx fp16"] == "chosen: smallest passing"
    assert "larger than onnx fp16" in why["onnx fp32"]
    assert "SIGSEGV" in why["tflite int8"]
    assert note["chosen"] == "onnx fp16" and "99.50 %" in note["rule"]
    # A device budget rules out what does not fit even when it passes parity.
    chosen, note = choose_smallest([_result("onnx fp32", 350_000, 1.0), _result("onnx fp16", 175_000, 0.99)],
                                   budget_bytes=256 * 1024)
    assert chosen is None and "exceeds the device budget" in note["candidates"][0]["why"]


def test_auto_tolerance_gates_decisions_only():
    from gru_edge.edge_runtime.device_profile import load_profile

    tol = auto_tolerance(load_profile("rpi-zero2w"))
    assert tol.min_decision_agreement == 0.98 and tol.max_f1_drop == 0.03 and tol.max_abs_diff >= 1e29
    assert auto_tolerance(None).min_decision_agreement == 0.995


def test_matrix_table_lists_every_variant():
    table = matrix_table([_result("onnx fp32", 350_000, 1.0), _result("onnx int8", 98_000, 0.99),
                          _result("tflite int8", None, 1.0, error="converter crashed")])
    lines = table.splitlines()
    assert len(lines) == 5 and all(line.count("|") == lines[0].count("|") for line in lines[:4])
    assert "FAIL: decision agreement" in lines[3] and "ERROR: converter crashed" in lines[4]


def test_export_auto_keeps_the_smallest_passing_onnx_variant(tiny_run, tmp_path):
    from gru_edge.export.exporter import export

    logs = []
    result = export(tiny_run.dir, tmp_path / "auto", quantize="auto", cross_check=False, log=logs.append)
    note = result.manifest.notes["quantization"]
    candidates = {c["variant"]: c for c in note["candidates"]}
    assert set(candidates) == {"onnx fp32", "onnx fp16", "onnx int8"}
    passing = [c for c in note["candidates"] if c["passed"]]
    smallest = min(passing, key=lambda c: c["bytes"])
    assert note["chosen"] == smallest["variant"] == variant_label("onnx", result.manifest.window_model.quantization)
    assert result.bytes == smallest["bytes"]
    assert any("quantize auto: chose" in line for line in logs)
    # The step model carries the same weight storage as the window model.
    assert result.manifest.models["step"].quantization == result.manifest.window_model.quantization


def test_export_auto_fails_when_nothing_fits_the_device(tiny_run, tmp_path):
    from gru_edge.export.exporter import ExportError, export

    profile = tmp_path / "tiny-box.toml"
    profile.write_text("""
name = "tiny-box"
description = "test device with almost no storage"
arch = "aarch64"
cpu = "test"
cores = 1
ram_mb = 64
model_storage_budget_kb = 1
format = "onnx"
quantization = "none"
threads = 1
latency_budget_ms = 10.0
speed_factor = 10.0

[parity]
max_abs_diff = 0.05
min_decision_agreement = 0.98
max_f1_drop = 0.03
""")
    with pytest.raises(ExportError, match="no variant passes.*exceeds the device budget"):
        export(tiny_run.dir, tmp_path / "b", quantize="auto", device=str(profile), cross_check=False,
               log=lambda m: None)
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_parity_matrix_cli_covers_every_variant(tiny_run):
    import json

    from click.testing import CliRunner

    from gru_edge.cli import cli

    result = CliRunner().invoke(cli, ["parity", str(tiny_run.dir), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    labels = [r["variant"] for r in payload["matrix"]]
    assert labels == ["onnx fp32", "onnx fp16", "onnx int8", "tflite fp32", "tflite fp16", "tflite dynamic",
                      "tflite int8"]
    by_label = {r["variant"]: r for r in payload["matrix"]}
    for r in payload["matrix"]:  # every conversion ran (full int8 included) and was scored against Keras
        assert "error" not in r, r
        assert {"bytes", "max_abs_diff", "decision_agreement", "f1_delta", "alarm_onsets"} <= set(r)
    assert by_label["tflite fp32"]["max_abs_diff"] < 1e-5 and by_label["onnx fp32"]["max_abs_diff"] < 1e-5
    assert by_label["tflite fp16"]["max_abs_diff"] < 1e-2 and by_label["tflite int8"]["max_abs_diff"] < 0.3
    assert by_label["onnx int8"]["bytes"] < 0.7 * by_label["onnx fp32"]["bytes"]  # tiny model: graph overhead weighs
