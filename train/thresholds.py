"""Choosing the decision threshold on validation scores (pure numpy).

Thresholds are placed halfway between adjacent distinct scores rather than on a score itself, so a
quantized model whose scores move slightly does not flip decisions that sat exactly on the line.
"""

from __future__ import annotations

import numpy as np

from .metrics import counts_by_threshold


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the highest F1 on these labelled scores.

    >>> best_f1_threshold(np.array([0, 0, 1, 1]), np.array([0.125, 0.25, 0.75, 1.0]))
    0.5
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.size == 0:
        raise ValueError(f"need equal-length, non-empty labels and scores, got {y.shape} and {s.shape}")
    if not y.any():
        raise ValueError("validation data has no anomalous samples: use a false-alarm-rate threshold instead")
    tp, fp, cut = counts_by_threshold(y, s)
    f1 = 2 * tp / (tp + fp + y.sum())
    best = int(np.argmax(f1))  # first maximum = highest threshold among ties: fewest alarms
    return _between(cut, best)


def far_threshold(scores_normal: np.ndarray, target_far: float) -> float:
    """The lowest threshold at which at most ``target_far`` of normal samples are flagged.

    >>> far_threshold(np.arange(100.0), 0.05)
    94.5
    """
    if not 0 <= target_far < 1:
        raise ValueError(f"target false-alarm rate must be in [0, 1), got {target_far}")
    s = np.sort(np.asarray(scores_normal, dtype=np.float64))[::-1]
    if s.size == 0:
        raise ValueError("no normal validation samples to calibrate a false-alarm-rate threshold")
    allowed = int(np.floor(target_far * s.size))  # number of normal samples that may be flagged
    if allowed == 0:
        return float(np.nextafter(s[0], np.inf))
    distinct = np.r_[s[np.nonzero(np.diff(s))[0]], s[-1]]  # distinct values, high to low
    flagged = np.searchsorted(-s, -distinct, side="right")  # samples >= each distinct value
    ok = np.nonzero(flagged <= allowed)[0]
    if ok.size == 0:
        return float(np.nextafter(s[0], np.inf))
    return _between(distinct, int(ok[-1]))


def _between(descending: np.ndarray, i: int) -> float:
    """Midpoint between the i-th distinct score and the next lower one (or the score itself when last)."""
    if i + 1 < len(descending):
        return float((descending[i] + descending[i + 1]) / 2.0)
    return float(descending[i])
