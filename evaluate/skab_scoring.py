"""SKAB's outlier-detection metrics (pure numpy), as its leaderboard computes them.

Every scored point of every series is pooled: F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN),
MAR = FN / (FN + TP). FAR and MAR are reported in percent, like the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def metrics(self) -> dict:
        """``f1`` (0..1), ``far`` and ``mar`` (percent) and the counts.

        >>> Counts(tp=6, fp=2, fn=2, tn=10).metrics()["f1"]
        0.75
        """
        f1 = self.tp / (self.tp + (self.fp + self.fn) / 2) if self.tp else 0.0
        far = 100.0 * self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0
        mar = 100.0 * self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0
        return {"f1": float(f1), "far": float(far), "mar": float(mar),
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def point_counts(labels: np.ndarray, detected: np.ndarray) -> Counts:
    y = np.asarray(labels).astype(bool)
    p = np.asarray(detected).astype(bool)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and detections {p.shape} differ in shape")
    return Counts(int(np.sum(y & p)), int(np.sum(~y & p)), int(np.sum(y & ~p)), int(np.sum(~y & ~p)))


def pooled_metrics(series: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Metrics over all points of ``[(labels, detections), ...]`` pooled together."""
    total = Counts()
    for labels, detected in series:
        total = total + point_counts(labels, detected)
    return total.metrics()
