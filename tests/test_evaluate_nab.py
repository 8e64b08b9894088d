"""NAB evaluation around the scoring rule: window timestamps -> rows, the detector output, and the whole
runner (train on probation, export, score through edge_runtime, corpus thresholds, JSON, report) on a
tiny NAB-shaped corpus written here, so it runs without the real data."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timedelta
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from gru_edge.evaluate.datasets import DatasetError, load_nab, nab_files, nab_windows
from gru_edge.evaluate.leaderboards import NAB, nab_table

NAB_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "nab"
needs_nab = pytest.mark.skipif(not (NAB_ROOT / "data" / "realKnownCause").is_dir(),
                               reason=f"NAB is not at {NAB_ROOT} (../shared/datasets/nab from the repo root)")


def _write_corpus(root: Path, rows: int = 1200, window=(800, 859)) -> None:
    """Two series, 5-minute steps: one with a level shift inside its labelled window, one anomaly-free."""
    start = datetime(2020, 1, 1)
    stamps = [(start + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(rows)]
    rng = np.random.default_rng(0)
    t = np.arange(rows)
    base = 10 + np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.1, rows)
    shifted = base.copy()
    shifted[820:840] += 6.0
    for folder, name, values in (("realKnownCause", "shift.csv", shifted), ("artificialNoAnomaly", "calm.csv", base)):
        (root / "data" / folder).mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value"] + [f"{s},{v:.4f}" for s, v in zip(stamps, values)]
        (root / "data" / folder / name).write_text("\n".join(lines) + "\n")
    labels = {"realKnownCause/shift.csv": [[stamps[window[0]] + ".000000", stamps[window[1]] + ".000000"]],
              "artificialNoAnomaly/calm.csv": []}
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))


def test_windows_map_to_inclusive_rows(tmp_path):
    _write_corpus(tmp_path)
    windows = nab_windows(tmp_path)
    series, labels = load_nab(tmp_path / "data" / "realKnownCause" / "shift.csv", tmp_path, windows)
    assert labels.name == "realKnownCause/shift.csv" and labels.n_rows == 1200
    assert labels.windows == ((800, 859),)
    assert series.labels.sum() == 60 and series.labels[800] == 1 and series.labels[860] == 0
    assert [p.name for p in nab_files(tmp_path)] == ["calm.csv", "shift.csv"]


def test_a_window_limit_that_is_no_row_is_refused(tmp_path):
    _write_corpus(tmp_path)
    path = tmp_path / "labels" / "combined_windows.json"
    d = json.loads(path.read_text())
    d["realKnownCause/shift.csv"][0][0] = "2020-01-03 18:41:00.000000"  # between two 5-minute rows
    path.write_text(json.dumps(d))
    with pytest.raises(DatasetError, match="not a row timestamp"):
        load_nab(tmp_path / "data" / "realKnownCause" / "shift.csv", tmp_path, nab_windows(tmp_path))


def test_missing_corpus_says_what_it_expected(tmp_path):
    with pytest.raises(DatasetError, match="not a NAB folder"):
        nab_files(tmp_path)


def test_detector_output_is_relative_to_the_file_threshold():
    from gru_edge.evaluate.nab import detector_output
    from gru_edge.evaluate.series_run import SeriesScores

    s = SeriesScores("x", start=3, scores={"keras": np.array([1.0, 2.0, 4.0])}, threshold=2.0)
    np.testing.assert_allclose(detector_output(s, 6, "keras"), [0, 0, 0, 0.5, 1.0, 2.0])


def test_adapted_output_is_causal_and_fires_once_per_episode():
    from gru_edge.evaluate.nab import MIN_HISTORY, adapted_output

    rng = np.random.default_rng(1)
    s = rng.normal(1.0, 0.1, 400)
    s[300:320] += 3.0  # one episode of 20 high scores
    out = adapted_output(s, history=100, hold=50)
    assert (out[:MIN_HISTORY] == 0).all()
    assert out[300] > 10 and (out[301:320] <= 0).all()  # fires at the start only
    changed = s.copy()
    changed[350:] = 50.0  # the future never changes the past
    np.testing.assert_array_equal(adapted_output(changed, 100, 50)[:350], out[:350])
    assert adapted_output(changed, 100, 50)[350] > 10  # a later, higher episode fires again
    # without hold every high row stays high
    assert (adapted_output(s, 100, 0)[300:305] > 3).all()


def test_scoreboard_places_our_row():
    lines = nab_table({"gru-edge (onnx-int8)": {"standard": 53.0, "low_fp": 40.0, "low_fn": 60.0}}).splitlines()
    ours = next(i for i, line in enumerate(lines) if line.startswith(">"))
    assert "Relative Entropy" in lines[ours - 1] and "Random Cut Forest" in lines[ours + 1]
    assert len(lines) == len(NAB) + 2


@needs_nab
def test_real_corpus_windows_match_the_provenance_counts():
    windows = nab_windows(NAB_ROOT)
    assert len(windows) == 58 and sum(len(w) for w in windows.values()) == 116
    path = NAB_ROOT / "data" / "realKnownCause" / "nyc_taxi.csv"
    series, labels = load_nab(path, NAB_ROOT, windows)
    assert labels.n_rows == 10320 and len(labels.windows) == 5
    assert int(series.labels.sum()) == 1035  # rows inside windows, per PROVENANCE.md


@pytest.mark.slow
def test_runner_end_to_end_on_a_tiny_corpus(tmp_path):
    from gru_edge.evaluate.nab import NabConfig, run_nab

    _write_corpus(tmp_path)
    config = NabConfig(units=(8,), epochs=3, window=16, error_steps=4)
    result = run_nab(tmp_path, config, jobs=1, variants=("keras", "onnx-fp32"), log=lambda m: None)
    assert set(result.variants) == {"keras", "onnx-fp32"}
    for v, m in result.variants.items():
        for profile in ("standard", "low_fp", "low_fn"):
            assert -1000 < m[profile] <= 100.0
        assert set(m["thresholds"]) == {"standard", "low_fp", "low_fn"}
    # a 6-sigma level shift inside the window: the corpus threshold catches it
    assert result.variants["keras"]["standard"] > 50
    names = [s["name"] for s in result.series]
    assert names == ["artificialNoAnomaly/calm.csv", "realKnownCause/shift.csv"]
    shift = result.series[1]["keras"]["standard"]
    assert shift["detected"] == 1 and shift["missed"] == 0
    # scores from the first complete window (the adapter's history); NAB ignores the 180 probationary rows
    assert all(sc.start == 15 for sc in result.scores)
    for m in result.variants.values():
        assert {"standard", "low_fp", "low_fn"} <= set(m["plain"])
    json.dumps(result.to_dict(), allow_nan=False)  # the JSON summary is strict JSON
    np.testing.assert_allclose(result.scores[1].scores["keras"], result.scores[1].scores["onnx-fp32"], atol=1e-4)

    pytest.importorskip("matplotlib")
    from gru_edge.evaluate.report import nab_report

    page = nab_report(result, tmp_path, tmp_path / "report", variant="onnx-fp32")
    text = page.read_text()
    assert "Numenta HTM" in text and "realKnownCause_shift.png" in text
    assert (tmp_path / "report" / "realKnownCause_shift.png").stat().st_size > 1000
    assert not math.isnan(result.variants["onnx-fp32"]["standard"])
