"""NAB under its published scoring rule, scored through the exported bundles.

Fair-comparison protocol (``../shared/notes/benchmarks.md``): a detector sees each file once, in time order,
without labels, learning only from what it has seen. Here each file gets its own normal-only GRU trained
on the file's probationary rows only (the first min(15 %, 750) rows; the last quarter of them is the
normal validation data for the error scale and the file's own threshold); every later row is scored
with a window reaching back only into past rows.

The detector's output on a row is ``score / threshold`` of its file's own run: 1.0 is where that
gateway would alarm. NAB then chooses one threshold on this output per profile for the whole corpus
(its ``--optimize`` step), i.e. one multiplier of every file's own threshold.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .datasets import load_nab, nab_files, nab_windows
from .nab_scoring import PROFILES, SeriesLabels, optimise_threshold, probationary_rows
from .series_run import VARIANTS, SeriesScores, run_jobs, spread

PROTOCOL = ("NAB v1.1 corpus, scoring rule re-implemented from its description (scaled sigmoid, earliest detection "
            "per window, FP costs, probationary 15 %/750 rows, null = 0, perfect = 100, one threshold per profile "
            "for the corpus); one GRU per file trained on its probationary rows only, no labels")


@dataclass
class NabConfig:
    """The per-file model and threshold rule (one setting for every file)."""

    validation_fraction: float = 0.25  # of the probationary rows
    window: int = 32
    error_steps: int = 4
    target: str = "delta"
    units: tuple = (32, 16)
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    patience: int = 10
    threshold_quantile: float = 0.99
    threshold_factor: float = 1.0
    seed: int = 0

    def train_config(self, name: str):
        from ..train.pipeline import TrainConfig

        return TrainConfig(data=name, window=self.window, units=tuple(self.units), epochs=self.epochs,
                           batch_size=self.batch_size, learning_rate=self.learning_rate, patience=self.patience,
                           mode="normal-only", target=self.target, error_steps=self.error_steps, threshold="far",
                           target_far=round(1.0 - self.threshold_quantile, 10),
                           threshold_factor=self.threshold_factor, seed=self.seed)


@dataclass
class NabResult:
    config: NabConfig
    variants: dict  # variant -> {"standard", "low_fp", "low_fn", "thresholds": {...}, "raw": {...}}
    series: list  # per file: name, rows, windows, per-variant/profile raw score, detections, seconds, notes
    seconds: float
    notes: list = field(default_factory=list)
    scores: list = field(default_factory=list)  # SeriesScores per file (not in the JSON)
    labels: list = field(default_factory=list)  # SeriesLabels per file (not in the JSON)

    def to_dict(self) -> dict:
        return {"benchmark": "nab", "protocol": PROTOCOL, "config": asdict(self.config), "variants": self.variants,
                "series": self.series, "seconds": round(self.seconds, 1), "notes": self.notes}


def detector_output(scores: SeriesScores, n_rows: int, variant: str) -> np.ndarray:
    """Per-row detector output for NAB: the score relative to the file's own threshold; 0 before scoring starts."""
    out = np.zeros(n_rows, dtype=np.float64)
    out[scores.start :] = scores.scores[variant] / scores.threshold
    return out


def run_nab(root: str | Path, config: NabConfig | None = None, limit: int | None = None, jobs: int = 2,
            variants: tuple[str, ...] = VARIANTS, log: Callable[[str], None] = print) -> NabResult:
    config = config or NabConfig()
    windows = nab_windows(root)
    files = spread(nab_files(root), limit)
    started = time.perf_counter()
    args = [(str(path), str(root), windows, config) for path in files]
    results: list[tuple[SeriesScores, SeriesLabels]] = []
    for k, (scores, labels) in enumerate(run_jobs(_nab_job, args, jobs, variants), 1):
        results.append((scores, labels))
        log(f"[{k}/{len(files)}] {labels.name}: {labels.n_rows} rows, {len(labels.windows)} windows, "
            f"{sum(scores.seconds.values()):.0f}s" + ("; " + "; ".join(scores.notes) if scores.notes else ""))
    summary, per_series = {}, {sc.name: {"name": sc.name, "rows": lb.n_rows, "windows": len(lb.windows),
                                         "threshold": sc.threshold,
                                         "seconds": {k: round(v, 2) for k, v in sc.seconds.items()}}
                               for sc, lb in results}
    for v in variants:
        corpus = [(detector_output(sc, lb.n_rows, v), lb) for sc, lb in results]
        summary[v] = {"thresholds": {}, "raw": {}}
        for key, profile in PROFILES.items():
            r = optimise_threshold(corpus, profile)
            summary[v][key] = r.score
            summary[v]["thresholds"][key] = r.threshold if np.isfinite(r.threshold) else None  # None: never fire
            summary[v]["raw"][key] = r.raw
            for s in r.series:
                per_series[s.name].setdefault(v, {})[key] = {
                    "raw": s.raw, "detected": s.detected_windows, "missed": s.missed_windows,
                    "false_positives": s.false_positives}
    for sc, _ in results:
        if sc.notes:
            per_series[sc.name]["notes"] = sc.notes
    notes = [f"{sc.name}: {n}" for sc, _ in results for n in sc.notes]
    return NabResult(config, summary, list(per_series.values()), time.perf_counter() - started, notes,
                     [sc for sc, _ in results], [lb for _, lb in results])


def _nab_job(path: str, root: str, windows: dict, config: NabConfig,
             variants: tuple[str, ...]) -> tuple[SeriesScores, SeriesLabels]:
    from .series_run import score_series

    series, labels = load_nab(Path(path), root, windows)
    n = len(series.values)
    probation = probationary_rows(n)
    validation = max(int(round(config.validation_fraction * probation)), config.window + 2)
    if probation - validation < config.window + 2:
        raise ValueError(f"{series.name}: {probation} probationary rows are too few for window {config.window}")
    parts = {"train": slice(0, probation - validation), "validation": slice(probation - validation, probation),
             "test": slice(probation, n)}
    scores = score_series(series.name, series.values, parts, probation, config.train_config(series.name), variants,
                          feature_names=series.feature_names)
    return scores, labels
