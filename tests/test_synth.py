"""The embedded default dataset: deterministic, labelled, physically coupled, split-friendly."""

from __future__ import annotations

import csv
import os
from collections import Counter

import numpy as np
import pytest

from gru_edge.train.synth import ANOMALY_KINDS, FEATURE_NAMES, MIN_ROWS, SynthSeries, generate, write_csv


@pytest.fixture(scope="module")
def series() -> SynthSeries:
    return generate()


def test_shapes_names_and_types(series: SynthSeries) -> None:
    assert FEATURE_NAMES == ("pump_current", "pressure", "flow", "vibration", "temperature")
    assert series.feature_names == FEATURE_NAMES
    assert series.features.shape == (8000, 5)
    assert series.features.dtype == np.float64
    assert series.labels.shape == (8000,)
    assert series.labels.dtype == np.int8
    assert len(series.timestamps) == 8000


def test_timestamps_are_iso_utc_one_second_apart(series: SynthSeries) -> None:
    assert series.timestamps[0] == "2026-01-01T00:00:00Z"
    assert series.timestamps[1] == "2026-01-01T00:00:01Z"
    assert series.timestamps[3661] == "2026-01-01T01:01:01Z"
    assert series.timestamps[-1] == "2026-01-01T02:13:19Z"


def test_same_seed_same_series_other_seed_other_series() -> None:
    a, b, c = generate(2000, seed=7), generate(2000, seed=7), generate(2000, seed=8)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.kinds == b.kinds
    assert not np.array_equal(a.features, c.features)
    assert a.kinds != c.kinds


def test_every_kind_several_times(series: SynthSeries) -> None:
    counts = Counter(kind for kind, _, _ in series.kinds)
    assert set(counts) == set(ANOMALY_KINDS)
    assert min(counts.values()) >= 3


def test_anomaly_fraction_in_range(series: SynthSeries) -> None:
    assert 0.08 <= series.labels.mean() <= 0.15


@pytest.mark.parametrize("rows", [MIN_ROWS, 1234, 6000, 8000, 20000])
def test_labels_are_exactly_the_fault_segments(rows: int) -> None:
    s = generate(rows, seed=3)
    expected = np.zeros(rows, dtype=np.int8)
    previous_end = -1
    for kind, start, end in s.kinds:
        assert kind in ANOMALY_KINDS
        lo, hi = (2, 5) if kind == "spike" else (8, 150)
        assert lo <= end - start <= hi, (kind, start, end)
        assert start > previous_end, "segments overlap or touch: no normal gap between faults"
        previous_end = end
        expected[start:end] = 1
    np.testing.assert_array_equal(s.labels, expected)
    # The lead stays clean.
    assert not s.labels[: int(0.1 * rows)].any()
    assert s.kinds[-1][2] <= rows


def test_faults_change_the_data(series: SynthSeries) -> None:
    # A labelled segment must differ from the physics it replaced: compare against the same seed's
    # clean plant, reproduced by dropping the faults (every fault kind moves at least one channel).
    from gru_edge.train import synth

    rng = np.random.default_rng(0)
    clean = synth._simulate_plant(8000, rng)
    measured = clean + rng.normal(size=clean.shape) * synth._NOISE_SIGMA
    diff = np.abs(series.features - measured) / synth._NOISE_SIGMA
    changed = diff.max(axis=1) > 1e-9
    np.testing.assert_array_equal(changed[series.labels == 0], False)
    for kind, start, end in series.kinds:
        if kind == "stuck":
            # A frozen channel holds exactly one value for the whole segment (away from the last good one).
            frozen = [c for c in range(5) if np.ptp(series.features[start:end, c]) == 0.0]
            assert len(frozen) == 1, (kind, start, end)
        else:
            assert diff[start:end].max() >= 3.0, (kind, start, end)


def test_channels_are_physically_coupled(series: SynthSeries) -> None:
    x = series.features[series.labels == 0]
    corr = np.corrcoef(x.T)
    i = {name: k for k, name in enumerate(FEATURE_NAMES)}
    assert corr[i["flow"], i["pump_current"]] > 0.5
    assert corr[i["pressure"], i["flow"]] > 0.5
    assert corr[i["vibration"], i["flow"]] > 0.5
    # Temperature lags the current: it correlates better with the current's past than with its present.
    current, temperature = x[:, i["pump_current"]], x[:, i["temperature"]]
    lagged = np.corrcoef(current[:-200], temperature[200:])[0, 1]
    assert lagged > np.corrcoef(current, temperature)[0, 1] > 0.2


def test_plausible_ranges_and_no_nan(series: SynthSeries) -> None:
    assert np.isfinite(series.features).all()
    normal = series.features[series.labels == 0]
    lo, hi = normal.min(axis=0), normal.max(axis=0)
    bounds = {"pump_current": (5, 70), "pressure": (0.5, 8), "flow": (20, 140), "vibration": (0, 5), "temperature": (10, 80)}
    for k, name in enumerate(FEATURE_NAMES):
        assert bounds[name][0] <= lo[k] and hi[k] <= bounds[name][1], (name, lo[k], hi[k])


@pytest.mark.parametrize("rows", [6000, 8000])
def test_time_ordered_70_15_15_parts_each_hold_every_kind(rows: int) -> None:
    s = generate(rows, seed=0)
    cuts = [0, int(0.7 * rows), int(0.85 * rows), rows]
    for lo, hi in zip(cuts, cuts[1:]):
        # Whole segments only, and not in the part's first 64 rows, which complete no window there.
        inside = {kind for kind, start, end in s.kinds if start >= lo + 64 and end <= hi}
        assert inside == set(ANOMALY_KINDS), (lo, hi, inside)


def test_csv_round_trip(series: SynthSeries, tmp_path) -> None:
    path = tmp_path / "pump.csv"
    write_csv(series, path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["timestamp", *FEATURE_NAMES, "label"]
    body = rows[1:]
    assert len(body) == 8000
    assert {r[-1] for r in body} == {"0", "1"}
    assert [int(r[-1]) for r in body] == series.labels.tolist()
    assert [r[0] for r in body] == series.timestamps
    values = np.array([[float(v) for v in r[1:-1]] for r in body])
    np.testing.assert_allclose(values, series.features, rtol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["pump.csv"], "temp file left behind"


def test_csv_other_delimiter(tmp_path) -> None:
    s = generate(MIN_ROWS, seed=1)
    path = tmp_path / "pump.csv"
    write_csv(s, path, delimiter=";")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert rows[0][0] == "timestamp" and rows[0][-1] == "label" and len(rows[0]) == 7
    assert len(rows) == MIN_ROWS + 1
    with pytest.raises(ValueError, match="delimiter"):
        write_csv(s, path, delimiter=".")


def test_csv_write_is_atomic_on_failure(tmp_path, monkeypatch) -> None:
    path = tmp_path / "pump.csv"
    path.write_text("old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_csv(generate(MIN_ROWS), path)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pump.csv"]


@pytest.mark.parametrize("rows", [0, 10, MIN_ROWS - 1])
def test_too_few_rows(rows: int) -> None:
    with pytest.raises(ValueError, match="rows must be >= 500"):
        generate(rows)


def test_fast() -> None:
    import time

    t = time.perf_counter()
    generate(8000, seed=5)
    assert time.perf_counter() - t < 1.0
