"""Batch and streaming scoring through edge_runtime."""

import pickle

import numpy as np
import pytest

from gru_edge.edge_runtime.scorer import Scorer
from gru_edge.edge_runtime.windows import sliding_windows
from gru_edge.train.data import load_csv


@pytest.fixture(scope="module")
def scorer(tiny_bundle):
    return Scorer(tiny_bundle)


@pytest.fixture(scope="module")
def series(scorer, synth_csv):
    return load_csv(synth_csv, features=scorer.features).values[:600]


def test_stream_gives_exactly_the_batch_scores(scorer, series):
    ends, batch = scorer.score_series(series)
    live = scorer.stream()
    events = [e for e in (live.push(row) for row in series) if e is not None]
    assert [e.index for e in events] == ends.tolist()
    np.testing.assert_array_equal([e.score for e in events], batch)
    assert [e.anomaly for e in events] == (batch >= scorer.threshold).tolist()


def test_stream_honours_the_stride(tiny_bundle, series):
    scorer = Scorer(tiny_bundle)
    object.__setattr__(scorer.manifest, "stride", 5)  # as if exported with --stride 5
    live = scorer.stream()
    events = [e for e in (live.push(row) for row in series) if e is not None]
    ends, batch = scorer.score_series(series)
    assert [e.index for e in events] == ends.tolist()
    assert all((e.index - scorer.window + 1) % 5 == 0 for e in events)
    np.testing.assert_array_equal([e.score for e in events], batch)


def test_score_windows_equals_score_series(scorer, series):
    ends, batch = scorer.score_series(series)
    windows = sliding_windows(series, scorer.window, 1)
    np.testing.assert_allclose(scorer.score_windows(windows), batch, atol=1e-6)


def test_bad_sample_is_rejected_without_corrupting_the_stream(scorer, series):
    clean = scorer.stream()
    dirty = scorer.stream()
    a = [clean.push(r) for r in series[:100]]
    b = []
    for i, r in enumerate(series[:100]):
        if i == 50:
            with pytest.raises(ValueError, match="NaN"):
                dirty.push(np.full(len(r), np.nan))
            with pytest.raises(ValueError, match="values per sample"):
                dirty.push(r[:-1])
        b.append(dirty.push(r))
    assert a == b


def test_scorer_pickles_as_a_path_and_rescores_identically(scorer, series):
    clone = pickle.loads(pickle.dumps(scorer))
    assert len(pickle.dumps(scorer)) < 500  # no session, no weights inside
    np.testing.assert_array_equal(clone.score_series(series)[1], scorer.score_series(series)[1])


def test_wrong_shapes_are_refused(scorer):
    with pytest.raises(ValueError, match="expected windows of shape"):
        scorer.score_windows(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="expected a series of shape"):
        scorer.score_series(np.zeros((100, 2)))
