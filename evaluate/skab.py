"""SKAB outlier detection under its own protocol, scored through the exported bundles.

Protocol (SKAB repository, ``core/utils.py``; ``../shared/notes/benchmarks.md``): each of the 34 labelled
files is its own series; its first 400 rows are the training part and every later row is scored; no
label is used for training or for the threshold. Here the 400 rows are split in time: the first 300
train the forecaster, the last 100 are its normal validation data (error scale and threshold quantile).
Rows from 400 on are scored with windows that reach back into the training rows (past data only).
Metrics pool every scored row of every file (:mod:`.skab_scoring`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .datasets import load_skab, skab_files
from .series_run import VARIANTS, SeriesScores, run_jobs, spread
from .skab_scoring import pooled_metrics

PROTOCOL = ("SKAB outlier detection: each labelled file its own series, rows 0-399 train (300 fit + 100 normal "
            "validation), rows 400.. scored point-wise; no labels for training or threshold; "
            "F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP) over all scored rows")


@dataclass
class SkabConfig:
    """The per-file model and threshold rule (one setting for every file: nothing is tuned per file)."""

    train_rows: int = 400
    validation_rows: int = 100
    window: int = 32
    error_steps: int = 24
    target: str = "delta"
    units: tuple = (32, 16)
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    patience: int = 10
    threshold_quantile: float = 0.99
    threshold_factor: float = 1.25
    seed: int = 0

    def train_config(self, name: str):
        from ..train.pipeline import TrainConfig

        return TrainConfig(data=name, window=self.window, units=tuple(self.units), epochs=self.epochs,
                           batch_size=self.batch_size, learning_rate=self.learning_rate, patience=self.patience,
                           mode="normal-only", target=self.target, error_steps=self.error_steps, threshold="far",
                           target_far=round(1.0 - self.threshold_quantile, 10),
                           threshold_factor=self.threshold_factor, seed=self.seed)


@dataclass
class SkabResult:
    config: SkabConfig
    variants: dict  # variant -> {"f1", "far" %, "mar" %, counts}
    series: list  # per file: name, threshold, rows, per-variant metrics, seconds, notes
    seconds: float
    notes: list = field(default_factory=list)
    scores: list = field(default_factory=list)  # SeriesScores per file (not in the JSON)
    labels: list = field(default_factory=list)  # test-row labels per file (not in the JSON)

    def to_dict(self) -> dict:
        return {"benchmark": "skab", "protocol": PROTOCOL, "config": asdict(self.config),
                "variants": self.variants, "series": self.series, "seconds": round(self.seconds, 1),
                "notes": self.notes}


def run_skab(root: str | Path, config: SkabConfig | None = None, limit: int | None = None, jobs: int = 2,
             variants: tuple[str, ...] = VARIANTS, log: Callable[[str], None] = print) -> SkabResult:
    config = config or SkabConfig()
    started = time.perf_counter()
    results = score_corpus(root, config, limit, jobs, variants, log)
    return summarise(results, config, variants, time.perf_counter() - started)


def score_corpus(root: str | Path, config: SkabConfig, limit: int | None = None, jobs: int = 2,
                 variants: tuple[str, ...] = VARIANTS,
                 log: Callable[[str], None] = print) -> list[tuple[SeriesScores, np.ndarray]]:
    """Train, export and score every file (the slow part): (scores, labels of the scored rows) per file."""
    files = spread(skab_files(root), limit)
    jobs_args = [(str(path), str(root), config) for path in files]
    results: list[tuple[SeriesScores, np.ndarray]] = []
    for k, (scores, labels) in enumerate(run_jobs(_skab_job, jobs_args, jobs, variants), 1):
        results.append((scores, labels))
        m = pooled_metrics([(labels, scores.detections(v)) for v in variants[:1]])
        log(f"[{k}/{len(files)}] {scores.name}: {len(labels)} rows, F1 {m['f1']:.3f} FAR {m['far']:.1f}% "
            f"({variants[0]}) {sum(scores.seconds.values()):.0f}s" + ("; " + "; ".join(scores.notes) if scores.notes else ""))
    return results


def summarise(results: list[tuple[SeriesScores, np.ndarray]], config: SkabConfig,
              variants: tuple[str, ...] = VARIANTS, seconds: float = 0.0) -> SkabResult:
    """Pooled metrics per variant and per-file figures (the fast part)."""
    summary = {v: pooled_metrics([(lb, sc.detections(v)) for sc, lb in results]) for v in variants}
    series = []
    for sc, lb in results:
        row = {"name": sc.name, "threshold": sc.threshold, "rows": int(len(lb)), "anomalous": int(lb.sum()),
               "seconds": {k: round(v, 2) for k, v in sc.seconds.items()}}
        for v in variants:
            row[v] = pooled_metrics([(lb, sc.detections(v))])
        if sc.notes:
            row["notes"] = sc.notes
        series.append(row)
    notes = [f"{sc.name}: {n}" for sc, _ in results for n in sc.notes]
    return SkabResult(config, summary, series, seconds, notes,
                      [sc for sc, _ in results], [lb for _, lb in results])


def _skab_job(path: str, root: str, config: SkabConfig, variants: tuple[str, ...]) -> tuple[SeriesScores, np.ndarray]:
    from .series_run import score_series

    series = load_skab(Path(path), root)
    n, tr, va = len(series.values), config.train_rows, config.validation_rows
    parts = {"train": slice(0, tr - va), "validation": slice(tr - va, tr), "test": slice(tr, n)}
    scores = score_series(series.name, series.values, parts, tr, config.train_config(series.name), variants,
                          feature_names=series.feature_names)
    return scores, series.labels[tr:].astype(np.int8)
