"""Detection metrics and threshold calibration against brute-force references."""

import numpy as np
import pytest

from gru_edge.train.metrics import average_precision, detection_metrics, roc_auc
from gru_edge.train.thresholds import best_f1_threshold, far_threshold


def _f1(y, s, t):
    p = s >= t
    tp, fp, fn = np.sum(p & y), np.sum(p & ~y), np.sum(~p & y)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_best_f1_threshold_beats_every_candidate():
    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.2
    s = np.round(rng.random(400) * 0.6 + y * 0.3, 2)  # ties on purpose
    t = best_f1_threshold(y, s)
    best = max(_f1(y, s, c) for c in np.unique(s))
    assert _f1(y, s, t) == pytest.approx(best)
    assert detection_metrics(y, s, t)["f1"] == pytest.approx(best)


def test_far_threshold_respects_target():
    rng = np.random.default_rng(4)
    normal = rng.normal(size=5000)
    for target in (0.0, 0.001, 0.01, 0.1):
        t = far_threshold(normal, target)
        assert np.mean(normal >= t) <= target
        assert np.mean(normal >= t) > target - 0.002  # and not far more conservative than asked


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(5)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300) + y * 0.4, 1)
    pos, neg = s[y], s[~y]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert roc_auc(y, s) == pytest.approx(pairwise)


def test_average_precision_perfect_and_degenerate():
    y = np.array([0, 0, 1, 1, 0])
    assert average_precision(y, np.array([0.1, 0.2, 0.9, 0.8, 0.3])) == pytest.approx(1.0)
    assert average_precision(np.zeros(4), np.arange(4.0)) is None
    assert roc_auc(np.ones(4), np.arange(4.0)) is None


def test_detection_metrics_counts_and_rates():
    y = np.array([1, 1, 0, 0, 0, 1])
    s = np.array([0.9, 0.2, 0.8, 0.1, 0.1, 0.7])
    m = detection_metrics(y, s, 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 2, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["far"] == pytest.approx(1 / 3) and m["mar"] == pytest.approx(1 / 3)


def test_threshold_without_anomalies_is_refused():
    with pytest.raises(ValueError, match="no anomalous"):
        best_f1_threshold(np.zeros(5), np.arange(5.0))
