"""Detection metrics over scored samples (pure numpy, no TensorFlow).

A sample counts as detected when ``score >= threshold`` (the runtime's rule).
"""

from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    y = np.asarray(labels).astype(bool)
    p = np.asarray(predicted).astype(bool)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} differ in shape")
    return {
        "tp": int(np.sum(y & p)),
        "fp": int(np.sum(~y & p)),
        "tn": int(np.sum(~y & ~p)),
        "fn": int(np.sum(y & ~p)),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank-sum statistic (ties get the average rank).

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over runs of equal scores.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """PR-AUC as average precision: sum over thresholds of (recall step) x precision.

    >>> round(average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 4)
    0.8333
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    tp, fp, _ = counts_by_threshold(y, s)
    precision = tp / (tp + fp)
    recall = tp / n_pos
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * precision))


def counts_by_threshold(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP and FP counts when flagging every score >= each distinct score, highest first."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    # Keep the last position of each run of equal scores: a threshold cannot split ties.
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    return tp[last].astype(np.float64), fp[last].astype(np.float64), s_sorted[last]


def detection_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1, FAR, MAR, ROC-AUC, PR-AUC and confusion counts at ``threshold``."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    c = confusion(labels, scores >= threshold)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    return {
        "threshold": float(threshold),
        "samples": int(len(labels)),
        "anomalous": int(np.sum(labels.astype(bool))),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "far": _ratio(c["fp"], c["fp"] + c["tn"]),
        "mar": _ratio(c["fn"], c["fn"] + c["tp"]),
        "accuracy": _ratio(c["tp"] + c["tn"], len(labels)),
        "roc_auc": roc_auc(labels, scores),
        "pr_auc": average_precision(labels, scores),
        **c,
    }
