"""Benchmarks: the runtime's own measurements, the targets' verdicts, and both commands."""

from __future__ import annotations

import json

import pytest

from gru_edge.edge_runtime.bench import add_compute_bound, bench_bundle, evaluate_targets, to_markdown


def test_bench_bundle_measures_everything_for_a_bundle_with_a_step_model(tiny_bundle):
    r = bench_bundle(tiny_bundle, budget_s=0.05)
    assert r["label"] == "onnx fp32" and r["step_model"]
    assert r["model_bytes"] < r["bundle_bytes"]
    assert 0 < r["latency_us"]["p50"] <= r["latency_us"]["p99"]
    assert set(r["windows_per_s"]) == {"1", "32", "256"} and all(v > 0 for v in r["windows_per_s"].values())
    assert {"exact", "exact_burst_64", "stateful", "multistream_64_exact", "multistream_64_stateful"} <= set(
        r["stream_us_per_sample"])
    assert all(v > 0 for v in r["stream_us_per_sample"].values())
    assert 0 < r["cold_start_s"] < 30 and len(r["cold_start_runs_s"]) == 3
    # A real process's footprint: numpy + onnxruntime alone are tens of MB, the runtime well under a GB.
    assert 20 < r["peak_rss_mb"] <= r["peak_rss_batch256_mb"] < 1000
    assert r["flops_per_window"] > 0 and r["decision_agreement"] == 1.0


def _model(label, latency, b256, exact, stateful, bundle_bytes, agreement=1.0, flops=11.4e6, cold=0.2, rss=60.0):
    return {"label": label, "latency_us": {"p50": latency, "p99": 2 * latency}, "bundle_bytes": bundle_bytes,
            "model_bytes": bundle_bytes // 2, "windows_per_s": {"1": 1e6 / latency, "32": b256, "256": b256},
            "stream_us_per_sample": {"exact": exact, "stateful": stateful}, "flops_per_window": flops,
            "decision_agreement": agreement, "cold_start_s": cold, "peak_rss_mb": rss, "peak_rss_batch256_mb": rss + 30}


def test_targets_say_met_or_by_how_much_they_are_missed():
    report = {
        "sgemm_gflops": 100.0,
        "models": [_model("onnx fp32", 270, 6000, 280, 25, 700_000),
                   _model("onnx int8", 300, 5900, 300, 26, 260_000, agreement=0.99),
                   _model("tflite dynamic", 250, 9000, 260, None, 540_000)],
        "keras": {"predict_latency_us": {"p50": 30_000, "p99": 40_000}, "model_bytes": 1_200_000},
    }
    report["models"][2]["stream_us_per_sample"] = {"exact": 260}
    add_compute_bound(report)
    assert report["models"][0]["compute_bound_windows_per_s"] == pytest.approx(100e9 / 11.4e6)
    report["targets"] = evaluate_targets(report)
    targets = {t["target"]: t for t in report["targets"]}
    assert targets["ONNX fp32 single window vs Keras predict"]["status"] == "met"  # 111x
    litert = targets["ONNX fp32 single window vs LiteRT dynamic"]
    assert litert["status"] == "missed" and litert["miss"] == "8 % slower"
    bound = targets["batch-256 throughput vs compute bound"]
    assert bound["status"] == "missed" and bound["miss"] == "2 points short"  # 68 %
    assert targets["stateful vs exact streaming"]["status"] == "met"  # 11.2x
    size = targets["int8-weight ONNX bundle size and agreement"]
    assert size["status"] == "missed" and size["miss"] == "2.1 points over"  # 37.1 % and 99.0 %
    assert targets["runtime cold start"]["status"] == "met"
    assert targets["runtime peak RSS (streaming)"]["status"] == "met"
    md = to_markdown(report)
    assert "| onnx int8 |" in md and "| Keras model.predict | 1171.9 | - | 30000 / 40000 |" in md
    assert "missed: 8 % slower" in md


def test_edge_score_bench_writes_json_and_markdown(tiny_bundle, tmp_path, capsys):
    from gru_edge.edge_runtime.cli import main

    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    assert main(["bench", str(tiny_bundle), "--budget", "0.02", "--json", str(out_json),
                 "--markdown", str(out_md)]) == 0
    report = json.loads(out_json.read_text())
    assert report["sgemm_gflops"] > 1 and report["machine"]["onnxruntime"]
    (model,) = report["models"]
    assert 0 < model["compute_bound_fraction"] < 2
    assert any(t["target"] == "runtime cold start" for t in report["targets"])
    assert "| onnx fp32 |" in out_md.read_text() and "| onnx fp32 |" in capsys.readouterr().out
    assert main(["bench", str(tmp_path / "missing")]) == 2


@pytest.mark.slow
def test_gru_edge_bench_adds_keras_side_by_side(tiny_run, tiny_bundle, tmp_path):
    from click.testing import CliRunner

    from gru_edge.cli import cli

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", str(tiny_bundle), "--vs-keras", str(tiny_run.dir), "--litert", "",
                                      "--budget", "0.05", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    keras = report["keras"]
    assert keras["one_thread"] and keras["predict_latency_us"]["p50"] > 0
    assert set(keras["predict_windows_per_s"]) == {"1", "32", "256"}
    target = next(t for t in report["targets"] if t["target"].endswith("vs Keras predict"))
    assert target["status"] in ("met", "missed") and target["measured"].endswith("x lower")
    assert "| Keras model.predict |" in result.output
