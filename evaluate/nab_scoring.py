"""The NAB scoring rule (pure numpy), written from its published description.

Per series, every row after the probationary period gets a weight:

- inside an anomaly window of width ``w`` rows whose last row is ``r``: a true-positive credit
  ``A_TP * S(y) / S(-1)`` with ``y = -(r - i + 1) / w`` (the window's first row earns exactly ``A_TP``,
  its last row almost nothing);
- outside every window: a false-positive cost ``A_FP * S(y)`` (negative) with
  ``y = |i - r_prev| / (w_prev - 1)`` past the preceding window, or the full ``-A_FP`` when no window
  precedes the row;

where ``S(y) = 2 / (1 + exp(5 y)) - 1`` and ``S(y) = -1`` for ``y >= 3``. A row is a detection when its
anomaly score is ``>= threshold``. A window adds the best (earliest) credit among its detections, or
``-A_FN`` when it has none; every detection outside windows adds its cost. The corpus total is
normalised so the null detector (never fires) scores 0 and the perfect one (fires on every window's
first row, nowhere else) scores 100. One threshold per detector and profile serves the whole corpus,
chosen here by an exact sweep over every distinct score (NAB searches the same objective numerically).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750  # NAB: 0.15 * 5000 rows


@dataclass(frozen=True)
class Profile:
    name: str  # the key used in our JSON summaries
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "low_fp": Profile("low_fp", 1.0, 0.22, 1.0),  # NAB's reward_low_FP_rate
    "low_fn": Profile("low_fn", 1.0, 0.11, 2.0),  # NAB's reward_low_FN_rate
}


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """``2 / (1 + e^(5y)) - 1``, and exactly -1 from ``y = 3`` on.

    >>> [round(float(v), 5) for v in scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0, 3.0]))]
    [0.98661, 0.84828, 0.0, -0.98661, -1.0]
    """
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):  # exp overflows to inf far past a window: the limit -1 is right
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y >= 3.0, -1.0, s)


def probationary_rows(n_rows: int) -> int:
    """Rows at the start of a series that are never scored: min(floor(0.15 n), 750).

    >>> probationary_rows(4032), probationary_rows(22695), probationary_rows(10)
    (604, 750, 1)
    """
    return int(min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_CAP))


@dataclass(frozen=True)
class SeriesLabels:
    """Ground truth of one series: its row count and anomaly windows as inclusive row ranges."""

    name: str
    n_rows: int
    windows: tuple  # ((first_row, last_row), ...) in time order, non-overlapping

    def __post_init__(self) -> None:
        previous = -1
        for first, last in self.windows:
            if not 0 <= first <= last < self.n_rows:
                raise ValueError(f"{self.name}: window rows [{first}, {last}] are not inside [0, {self.n_rows})")
            if first <= previous:
                raise ValueError(f"{self.name}: windows overlap or are out of order at rows [{first}, {last}]")
            previous = last


@dataclass(frozen=True)
class RowWeights:
    """What a detection on each row of one series is worth under one profile (weights are 0 where unscored)."""

    weight: np.ndarray  # [n] TP credit (> 0) inside windows, FP cost (< 0) outside
    window: np.ndarray  # [n] index of the window the row lies in, -1 outside every window
    scored: np.ndarray  # [n] bool: after the probationary period
    n_windows: int  # windows with at least one scored row (the ones that count)


def row_weights(labels: SeriesLabels, profile: Profile) -> RowWeights:
    n = labels.n_rows
    weight = np.empty(n, dtype=np.float64)
    window = np.full(n, -1, dtype=np.int64)
    max_tp = float(scaled_sigmoid(-1.0))
    start = 0
    prev_right = prev_width = None
    for k, (first, last) in enumerate(labels.windows):
        weight[start:first] = _fp_costs(np.arange(start, first), prev_right, prev_width, profile)
        width = last - first + 1
        rows = np.arange(first, last + 1)
        weight[first : last + 1] = profile.a_tp * scaled_sigmoid(-(last - rows + 1) / width) / max_tp
        window[first : last + 1] = k
        start, prev_right, prev_width = last + 1, last, width
    weight[start:n] = _fp_costs(np.arange(start, n), prev_right, prev_width, profile)
    scored = np.arange(n) >= probationary_rows(n)
    counted = np.unique(window[scored & (window >= 0)])
    return RowWeights(np.where(scored, weight, 0.0), window, scored, int(counted.size))


def _fp_costs(rows: np.ndarray, prev_right: int | None, prev_width: int | None, profile: Profile) -> np.ndarray:
    if prev_right is None:
        return np.full(rows.shape, -profile.a_fp)
    if prev_width <= 1:  # a one-row window has no scale to measure distance by: full cost
        return np.full(rows.shape, -profile.a_fp)
    return profile.a_fp * scaled_sigmoid(np.abs(rows - prev_right) / (prev_width - 1))


@dataclass
class SeriesResult:
    name: str
    raw: float
    detected_windows: int
    missed_windows: int
    false_positives: int  # detections outside every window (scored rows only)


def score_series(scores: np.ndarray, labels: SeriesLabels, profile: Profile, threshold: float) -> SeriesResult:
    """Raw NAB score of one series at a fixed threshold (detection = score >= threshold)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (labels.n_rows,):
        raise ValueError(f"{labels.name}: {s.shape[0] if s.ndim else 0} scores for {labels.n_rows} rows")
    w = row_weights(labels, profile)
    fired = (s >= threshold) & w.scored
    raw = float(np.sum(w.weight[fired & (w.window < 0)]))
    detected = 0
    for k in np.unique(w.window[w.scored & (w.window >= 0)]):
        hits = fired & (w.window == k)
        if hits.any():
            raw += float(np.max(w.weight[hits]))
            detected += 1
        else:
            raw -= profile.a_fn
    return SeriesResult(labels.name, raw, detected, w.n_windows - detected, int(np.sum(fired & (w.window < 0))))


@dataclass
class CorpusResult:
    profile: str
    threshold: float  # detection = score >= threshold; inf when never firing is best
    raw: float
    null: float
    perfect: float
    score: float  # normalised: null 0, perfect 100
    series: list = field(default_factory=list)  # SeriesResult per series at the threshold


def normalised(raw: float, n_windows: int, profile: Profile) -> float:
    """100 * (raw - null) / (perfect - null) with null = -A_FN per window and perfect = A_TP per window.

    >>> normalised(0.0, 4, PROFILES["standard"])
    50.0
    """
    null, perfect = -profile.a_fn * n_windows, profile.a_tp * n_windows
    if perfect == null:
        raise ValueError("the corpus has no anomaly window to score against")
    return 100.0 * (raw - null) / (perfect - null)


def optimise_threshold(corpus: list[tuple[np.ndarray, SeriesLabels]], profile: Profile) -> CorpusResult:
    """The one threshold maximising the corpus total, by an exact sweep over every distinct score.

    Rows are visited from the highest score down; lowering the threshold past a row adds its FP cost
    (outside windows) or raises its window from the best credit so far to this one (inside). Ties move
    together: a threshold cannot separate equal scores.
    """
    all_scores, deltas, n_windows = [], [], 0
    for scores, labels in corpus:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (labels.n_rows,):
            raise ValueError(f"{labels.name}: {s.shape[0] if s.ndim else 0} scores for {labels.n_rows} rows")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{labels.name}: scores hold NaN or infinite values")
        w = row_weights(labels, profile)
        n_windows += w.n_windows
        outside = w.scored & (w.window < 0)
        all_scores.append(s[outside])
        deltas.append(w.weight[outside])
        for k in np.unique(w.window[w.scored & (w.window >= 0)]):
            rows = np.flatnonzero(w.scored & (w.window == k))
            order = rows[np.argsort(-s[rows], kind="mergesort")]
            best = np.maximum.accumulate(np.r_[-profile.a_fn, w.weight[order]])
            all_scores.append(s[order])
            deltas.append(np.diff(best))  # gain in this window's credit as each row starts firing
    s = np.concatenate(all_scores) if all_scores else np.empty(0)
    d = np.concatenate(deltas) if deltas else np.empty(0)
    null, perfect = -profile.a_fn * n_windows, profile.a_tp * n_windows
    order = np.argsort(-s, kind="mergesort")
    s, totals = s[order], null + np.cumsum(d[order])
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.empty(0, dtype=np.int64)
    threshold, raw = math.inf, null
    if len(ends) and totals[ends].max() > null:
        best = int(ends[np.argmax(totals[ends])])  # first maximum = highest threshold among ties
        threshold, raw = float(s[best]), float(totals[best])
    result = CorpusResult(profile.name, threshold, raw, null, perfect, normalised(raw, n_windows, profile))
    result.series = [score_series(sc, lb, profile, threshold) for sc, lb in corpus]
    return result
