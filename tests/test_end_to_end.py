"""Whole paths a user walks, on small data."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from gru_edge.cli import cli


def _write_foreign_csv(path, rows=1500, seed=7):
    """A labelled CSV unlike the demo data: ';'-separated, other names, a text column, a 'fault' label."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    a = np.sin(t / 15) + 0.05 * rng.normal(size=rows)
    b = np.cos(t / 15) + 0.05 * rng.normal(size=rows)
    fault = np.zeros(rows, dtype=int)
    for start in range(150, rows - 40, 120):
        a[start : start + 20] += 2.5
        fault[start : start + 20] = 1
    lines = ["when;motor_a;motor_b;site;fault"]
    lines += [f"2026-02-01 00:{i // 60 % 60:02d}:{i % 60:02d};{a[i]:.5f};{b[i]:.5f};plant-3;{fault[i]}" for i in t]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_train_unseen_csv_with_only_label_column(tmp_path):
    data = tmp_path / "foreign.csv"
    _write_foreign_csv(data)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(run), "--label-column", "fault",
                                      "--units", "8", "--epochs", "2", "--window", "16"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((run / "train.json").read_text())
    assert record["features"] == ["motor_a", "motor_b"]  # text column and label excluded, timestamp detected
    for key in ("precision", "recall", "f1", "roc_auc", "pr_auc", "tp", "fp", "tn", "fn"):
        assert key in record["metrics"]["test"]
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(cli, ["export", str(run), "--out", str(bundle)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((bundle / "manifest.json").read_text())["features"] == ["motor_a", "motor_b"]


@pytest.mark.slow
def test_demo_runs_the_main_job(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo"), "--rows", "3000", "--epochs", "2",
                                      "--units", "16,8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for step in ("[1] generate", "[2] train", "[3] export", "[5] parity", "[6] score", "samples/s"):
        assert step in result.output
    summary = result.output.split("\nsummary\n", 1)[1]
    assert re.search(r"bundle-fp32 .* PASS", summary) and re.search(r"bundle-int8 .* PASS", summary), summary
    assert (tmp_path / "demo" / "bundle-int8" / "manifest.json").is_file()
