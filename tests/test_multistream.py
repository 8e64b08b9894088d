"""Bursts and many streams: batched scoring must give exactly what one sample at a time gives."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from gru_edge.edge_runtime.multistream import MultiStreamScorer
from gru_edge.edge_runtime.scorer import Scorer
from gru_edge.train.data import load_csv


@pytest.fixture(scope="module")
def scorer(tiny_bundle):
    return Scorer(tiny_bundle)


@pytest.fixture(scope="module")
def series(scorer, synth_csv):
    return load_csv(synth_csv, features=scorer.features).values


def _one_by_one(stream, rows):
    return [e for e in (stream.push(r) for r in rows) if e is not None]


@pytest.mark.parametrize("stride", [1, 5])
def test_push_many_equals_push_in_any_burst_sizes(tiny_bundle, series, stride):
    scorer = Scorer(tiny_bundle)
    object.__setattr__(scorer.manifest, "stride", stride)  # as if exported with --stride
    rows = series[:300]
    expected = _one_by_one(scorer.stream(), rows)
    live = scorer.stream()
    got, start = [], 0
    for size in [1, 3, scorer.window - 2, 2 * scorer.window + 5, 1, 0, 64, 200]:
        got += live.push_many(rows[start : start + size])
        start += size
    got += live.push_many(rows[start:])
    assert [e.index for e in got] == [e.index for e in expected]
    np.testing.assert_array_equal([e.score for e in got], [e.score for e in expected])
    assert live.samples_seen == len(rows)


def test_push_many_refuses_a_bad_burst_without_consuming_it(scorer, series):
    live = scorer.stream()
    live.push_many(series[:10])
    burst = series[10:20].copy()
    burst[4, 1] = np.nan
    with pytest.raises(ValueError, match="sample 4 of the burst"):
        live.push_many(burst)
    with pytest.raises(ValueError, match="shape"):
        live.push_many(series[10:20, :-1])
    assert live.samples_seen == 10
    # The refused bursts left no trace: the stream goes on as if it had only ever seen the 10 samples.
    assert live.push_many(series[10:100]) == scorer.stream().push_many(series[:100])


@pytest.mark.parametrize("mode", ["exact", "stateful"])
def test_interleaved_streams_equal_one_scorer_per_stream(scorer, series, mode):
    streams = {"pump-a": series[:260], "pump-b": series[900:1100], 7: series[2000:2150]}
    expected = {k: _one_by_one(scorer.stream(mode), rows) for k, rows in streams.items()}
    # Arrival order: random interleaving in bursts of random size (a stream may appear twice in one burst).
    rng = np.random.default_rng(3)
    pos = {k: 0 for k in streams}
    order = []
    while any(pos[k] < len(v) for k, v in streams.items()):
        k = list(streams)[rng.integers(len(streams))]
        if pos[k] < len(streams[k]):
            order.append((k, streams[k][pos[k]]))
            pos[k] += 1
    multi = MultiStreamScorer(scorer, mode)
    got = []
    seen = {k: 0 for k in streams}
    i = 0
    while i < len(order):
        n = int(rng.integers(1, 12))
        burst = order[i : i + n]
        events = multi.push_many(burst)
        # Events come in the order of the samples that completed them.
        completing = []
        for k, _ in burst:
            if seen[k] >= scorer.window - 1:
                completing.append((k, seen[k]))
            seen[k] += 1
        assert [(e.stream, e.index) for e in events] == completing
        got += events
        i += n
    for k, exp in expected.items():
        mine = [e for e in got if e.stream == k]
        assert [e.index for e in mine] == [e.index for e in exp]
        np.testing.assert_array_equal([e.score for e in mine], [e.score for e in exp])
        assert [e.anomaly for e in mine] == [e.anomaly for e in exp]
    assert sorted(map(str, multi.streams)) == sorted(map(str, streams))
    assert multi.samples_seen("pump-b") == 200 and multi.samples_seen("nobody") == 0


def test_multistream_bad_sample_names_its_stream_and_consumes_nothing(scorer, series):
    multi = MultiStreamScorer(scorer)
    multi.push_many([("a", series[0]), ("b", series[1])])
    bad = series[2].copy()
    bad[0] = np.inf
    with pytest.raises(ValueError, match="stream 'b'"):
        multi.push_many([("a", series[2]), ("b", bad)])
    with pytest.raises(ValueError, match="stream 'c'.*values per sample"):
        multi.push_many([("a", series[2]), ("c", series[2][:-1])])
    assert multi.samples_seen("a") == 1 and multi.samples_seen("b") == 1 and "c" not in multi.streams
    multi.reset("a")
    assert multi.samples_seen("a") == 0 and multi.samples_seen("b") == 1


def test_edge_score_stream_column(tiny_bundle, synth_csv, tmp_path, capsys):
    from gru_edge.edge_runtime.cli import EXIT_BAD_INPUT, main

    with open(synth_csv, newline="") as f:
        rows = list(csv.reader(f))
    header, data = rows[0], rows[1:]
    mixed = tmp_path / "two-pumps.csv"
    with open(mixed, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pump", *header])
        for i in range(150):
            w.writerow(["north", *data[i]])
            w.writerow(["south", *data[1000 + i]])
    assert main([str(tiny_bundle), "--input", str(mixed), "--stream-column", "pump", "--quiet"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    scorer = Scorer(tiny_bundle)
    values = load_csv(synth_csv, features=scorer.features).values
    for name, offset in (("north", 0), ("south", 1000)):
        mine = [r for r in out if r["stream"] == name]
        _, batch = scorer.score_series(values[offset : offset + 150])
        assert [r["index"] for r in mine] == list(range(scorer.window - 1, 150))
        np.testing.assert_allclose([r["score"] for r in mine], batch, atol=1e-6)
    assert main([str(tiny_bundle), "--input", str(mixed), "--stream-column", "pumpz"]) == EXIT_BAD_INPUT
    assert "no stream column 'pumpz'" in capsys.readouterr().err
