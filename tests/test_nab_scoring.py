"""The NAB scoring rule on hand-computed cases, and the corpus threshold sweep against brute force.

Hand values use S(y) = tanh(-5y/2), the same curve as 2 / (1 + e^(5y)) - 1 written another way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gru_edge.evaluate.nab_scoring import (
    PROFILES,
    SeriesLabels,
    normalised,
    optimise_threshold,
    probationary_rows,
    row_weights,
    scaled_sigmoid,
    score_series,
)

STD, LOW_FP, LOW_FN = PROFILES["standard"], PROFILES["low_fp"], PROFILES["low_fn"]
S_LEFT = math.tanh(2.5)  # S(-1) = 0.98661...


def _s(y: float) -> float:
    return -1.0 if y >= 3 else math.tanh(-2.5 * y)


# 100 rows: probation = 15 rows; one window of width 10 on rows 50..59.
ONE = SeriesLabels("one", 100, ((50, 59),))


def _fire(*rows: int, n: int = 100) -> np.ndarray:
    s = np.zeros(n)
    s[list(rows)] = 1.0
    return s


def test_profiles_are_nabs():
    assert (STD.a_tp, STD.a_fp, STD.a_fn) == (1.0, 0.11, 1.0)
    assert (LOW_FP.a_tp, LOW_FP.a_fp, LOW_FP.a_fn) == (1.0, 0.22, 1.0)
    assert (LOW_FN.a_tp, LOW_FN.a_fp, LOW_FN.a_fn) == (1.0, 0.11, 2.0)


def test_scaled_sigmoid_shape():
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(2.999)) == pytest.approx(_s(2.999))
    assert float(scaled_sigmoid(3.0)) == -1.0
    assert float(scaled_sigmoid(50.0)) == -1.0  # no overflow warning turned into NaN


def test_probation_is_fifteen_percent_capped_at_750():
    assert probationary_rows(100) == 15
    assert probationary_rows(4032) == 604
    assert probationary_rows(5000) == 750
    assert probationary_rows(22695) == 750


def test_earliest_detection_earns_exactly_a_tp():
    r = score_series(_fire(50), ONE, STD, 0.5)
    assert r.raw == pytest.approx(1.0)
    assert (r.detected_windows, r.missed_windows, r.false_positives) == (1, 0, 0)
    assert normalised(r.raw, 1, STD) == pytest.approx(100.0)


def test_last_row_of_window_earns_little():
    r = score_series(_fire(59), ONE, STD, 0.5)
    # y = -(59 - 59 + 1) / 10 = -0.1
    assert r.raw == pytest.approx(_s(-0.1) / S_LEFT)
    assert r.raw == pytest.approx(0.248242, abs=1e-6)


def test_only_the_best_detection_in_a_window_counts():
    r = score_series(_fire(55, 52, 58), ONE, STD, 0.5)
    # earliest is row 52: y = -(59 - 52 + 1) / 10 = -0.8
    assert r.raw == pytest.approx(_s(-0.8) / S_LEFT)
    assert r.raw == pytest.approx(0.977107, abs=1e-6)


def test_missed_window_costs_a_fn():
    assert score_series(np.zeros(100), ONE, STD, 0.5).raw == pytest.approx(-1.0)
    assert score_series(np.zeros(100), ONE, LOW_FN, 0.5).raw == pytest.approx(-2.0)
    assert normalised(-1.0, 1, STD) == 0.0


def test_false_positive_before_any_window_costs_full_a_fp():
    r = score_series(_fire(20), ONE, STD, 0.5)
    assert r.raw == pytest.approx(-1.0 - 0.11)
    assert score_series(_fire(20), ONE, LOW_FP, 0.5).raw == pytest.approx(-1.0 - 0.22)
    assert r.false_positives == 1


def test_false_positive_just_after_a_window_costs_less():
    r = score_series(_fire(60), ONE, STD, 0.5)
    # y = |60 - 59| / (10 - 1) = 1/9
    assert r.raw == pytest.approx(-1.0 + 0.11 * _s(1 / 9))
    assert 0.11 * _s(1 / 9) == pytest.approx(-0.029793, abs=1e-6)
    far = score_series(_fire(95), ONE, STD, 0.5)  # y = 36/9 = 4 >= 3: full cost
    assert far.raw == pytest.approx(-1.0 - 0.11)


def test_probationary_rows_are_ignored():
    assert score_series(_fire(3, 14), ONE, STD, 0.5).raw == pytest.approx(-1.0)
    w = row_weights(ONE, STD)
    assert not w.scored[:15].any() and w.scored[15:].all()


def test_detection_is_score_at_or_above_threshold():
    s = np.zeros(100)
    s[50] = 0.7
    assert score_series(s, ONE, STD, 0.7).detected_windows == 1
    assert score_series(s, ONE, STD, 0.7000001).detected_windows == 0


def test_two_windows_and_a_hand_total():
    labels = SeriesLabels("two", 200, ((40, 49), (100, 119)))  # probation 30 rows
    s = _fire(45, 60, 105, 119, 170, n=200)
    r = score_series(s, labels, STD, 0.5)
    want = (
        _s(-(49 - 45 + 1) / 10) / S_LEFT  # window 1, row 45
        + 0.11 * _s(abs(60 - 49) / 9)  # FP 11 rows after window 1
        + _s(-(119 - 105 + 1) / 20) / S_LEFT  # window 2, earliest row 105
        + 0.11 * _s(abs(170 - 119) / 19)  # FP 51 rows after window 2 (y = 2.68 < 3)
    )
    assert r.raw == pytest.approx(want)
    assert (r.detected_windows, r.false_positives) == (2, 2)


def test_bad_windows_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        SeriesLabels("x", 100, ((10, 20), (20, 30)))
    with pytest.raises(ValueError, match="inside"):
        SeriesLabels("x", 100, ((90, 100),))


def test_sweep_matches_brute_force_over_every_threshold():
    rng = np.random.default_rng(3)
    corpus = []
    for i, (n, windows) in enumerate([(300, ((100, 129),)), (250, ((60, 79), (150, 199))), (200, ())]):
        s = np.round(rng.random(n), 2)  # rounding makes ties
        for first, last in windows:
            s[first + 3 : last] += rng.random() * 0.5
        corpus.append((s, SeriesLabels(f"s{i}", n, windows)))
    for profile in PROFILES.values():
        got = optimise_threshold(corpus, profile)
        candidates = np.unique(np.concatenate([s for s, _ in corpus]))
        brute = {t: sum(score_series(s, lb, profile, t).raw for s, lb in corpus) for t in candidates}
        best_t = max(brute, key=lambda t: (brute[t], t))
        assert got.raw == pytest.approx(max(max(brute.values()), got.null))
        if brute[best_t] > got.null:
            assert got.threshold == best_t
        assert sum(r.raw for r in got.series) == pytest.approx(got.raw)
        assert got.score == pytest.approx(normalised(got.raw, 3, profile))


def test_sweep_of_null_and_perfect_detectors():
    labels = SeriesLabels("p", 100, ((50, 59),))
    perfect = optimise_threshold([(_fire(50), labels)], STD)
    assert perfect.score == pytest.approx(100.0) and perfect.threshold == 1.0
    null = optimise_threshold([(np.zeros(100), labels)], STD)  # firing everywhere is worse than never
    assert null.score == 0.0 and null.threshold == math.inf
