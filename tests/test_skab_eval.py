"""SKAB evaluation: the protocol's metrics, reading the corpus, the leaderboard, and one file end to end
through the CLI (Keras and the fp32 bundle through edge_runtime)."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from gru_edge.evaluate.leaderboards import SKAB, skab_table
from gru_edge.evaluate.skab_scoring import Counts, point_counts, pooled_metrics

SKAB_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "skab"
needs_skab = pytest.mark.skipif(not (SKAB_ROOT / "data" / "valve1").is_dir(),
                                reason=f"SKAB is not at {SKAB_ROOT} (../shared/datasets/skab from the repo root)")


def test_point_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    c = point_counts(y, p)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 2, 3)
    m = c.metrics()
    assert m["f1"] == pytest.approx(2 / (2 + 3 / 2))
    assert m["far"] == pytest.approx(25.0) and m["mar"] == pytest.approx(50.0)


def test_metrics_pool_points_not_files():
    a = (np.array([1, 0]), np.array([1, 0]))  # perfect
    b = (np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]))  # all wrong
    pooled = pooled_metrics([a, b])
    assert pooled["f1"] == pytest.approx(1 / (1 + (2 + 2) / 2))
    assert pooled["far"] == pytest.approx(100 * 2 / 3)
    # the mean of per-file F1s would be 0.5: pooling is what SKAB does
    assert pooled["f1"] != pytest.approx(0.5)


def test_flagging_everything_gives_far_100_mar_0():
    y = np.array([1, 0, 1, 1])
    m = Counts().__add__(point_counts(y, np.ones(4))).metrics()
    assert (m["far"], m["mar"]) == (100.0, 0.0)
    assert point_counts(y, np.zeros(4)).metrics()["f1"] == 0.0


def test_leaderboard_places_our_row_by_f1():
    table = skab_table({"gru-edge (keras)": {"f1": 0.765, "far": 12.0, "mar": 30.0}})
    lines = table.splitlines()
    ours = next(i for i, line in enumerate(lines) if line.startswith(">"))
    assert "gru-edge (keras)" in lines[ours] and "0.765" in lines[ours]
    # 0.765 ranks below the 0.78s (Conv-AE, MSET) and above T-squared+Q's 0.76.
    assert "MSET" in lines[ours - 1] and "T-squared+Q (PCA)" in lines[ours + 1]
    assert len(lines) == len(SKAB) + 2
    # published F1s have two decimals: 0.759 ranks below 0.76, not level with it
    lower = skab_table({"x": {"f1": 0.759, "far": 1.0, "mar": 1.0}}).splitlines()
    mine = next(i for i, line in enumerate(lower) if line.startswith(">"))
    assert "T-squared+Q (PCA)" in lower[mine - 1]


@needs_skab
def test_reads_the_corpus_like_the_protocol():
    from gru_edge.evaluate.datasets import load_skab, skab_files

    files = skab_files(SKAB_ROOT)
    assert len(files) == 34
    assert [f.parent.name for f in files[:1]] == ["valve1"] and files[1].stem == "1"  # numeric order
    s = load_skab(files[0], SKAB_ROOT)
    assert s.name == "valve1/0.csv"
    assert s.values.shape == (1147, 8) and "changepoint" not in s.feature_names  # the label never leaks in
    assert int(s.labels.sum()) == 401 and s.labels[573] == 1 and s.labels[572] == 0


@needs_skab
@pytest.mark.slow
def test_cli_one_file_end_to_end(tmp_path):
    from click.testing import CliRunner

    from gru_edge.cli import cli

    out = tmp_path / "skab.json"
    result = CliRunner().invoke(cli, ["evaluate", "skab", str(SKAB_ROOT), "--limit", "1", "--jobs", "1",
                                      "--variants", "keras,onnx-fp32", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "> gru-edge (onnx-fp32)" in result.output and "Conv-AE" in result.output
    summary = json.loads(out.read_text())
    assert set(summary["variants"]) == {"keras", "onnx-fp32"}
    for m in summary["variants"].values():
        assert {"f1", "far", "mar"} <= set(m)
    (series,) = summary["series"]
    assert series["name"] == "valve1/0.csv" and series["rows"] == 1147 - 400
    # the fp32 bundle through edge_runtime decides like Keras (scores equal to ~1e-6)
    assert summary["variants"]["keras"]["tp"] + summary["variants"]["keras"]["fp"] == pytest.approx(
        summary["variants"]["onnx-fp32"]["tp"] + summary["variants"]["onnx-fp32"]["fp"], abs=2)
