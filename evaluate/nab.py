"""NAB under its published scoring rule, scored through the exported bundles.

Fair-comparison protocol (``../shared/notes/benchmarks.md``): a detector sees each file once, in time order,
without labels, learning only from what it has seen. Here each file gets its own normal-only GRU trained
on the file's probationary rows only (the first min(15 %, 750) rows; the last quarter of them is the
normal validation data for the error scale and the file's own threshold); every later row is scored
with a window reaching back only into past rows.

NAB then chooses one threshold on the detector output per profile for the whole corpus (its
``--optimize`` step). Two outputs are scored from the same bundle scores:

- plain: ``score / threshold`` of the file's own run (1.0 is where that gateway alarms), so the corpus
  threshold is one multiplier of every file's own threshold;
- adapted (the headline figures): a causal post-processing of the score stream, :func:`adapted_output`:
  each score as a z-score against the file's own previous ``history`` scores, kept only when it is the
  highest of the last ``hold`` rows. It reads past scores only (no labels, no look-ahead), like NAB's own
  detectors' likelihood layers, and puts files with very different error levels on one scale; it runs on
  top of the bundle's scores, not inside the bundle.
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
    error_steps: int = 1
    target: str = "delta"
    units: tuple = (32, 16)
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    patience: int = 10
    threshold_quantile: float = 0.99
    threshold_factor: float = 1.0
    seed: int = 0
    history: int = 1000  # adapted output: scores z-scored against this many previous scores of the file
    hold: int = 300  # adapted output: only a new maximum over this many previous rows can fire

    def train_config(self, name: str):
        from ..train.pipeline import TrainConfig

        return TrainConfig(data=name, window=self.window, units=tuple(self.units), epochs=self.epochs,
                           batch_size=self.batch_size, learning_rate=self.learning_rate, patience=self.patience,
                           mode="normal-only", target=self.target, error_steps=self.error_steps, threshold="far",
                           target_far=round(1.0 - self.threshold_quantile, 10),
                           threshold_factor=self.threshold_factor, seed=self.seed)


# Scores an adapted output needs before its z-scores mean anything; earlier rows output 0.
MIN_HISTORY = 20


@dataclass
class NabResult:
    config: NabConfig
    # variant -> {"standard", "low_fp", "low_fn" (adapted output), "thresholds", "raw", "plain": {same for plain}}
    variants: dict
    series: list  # per file: name, rows, windows, per-variant/profile raw score, detections, seconds, notes
    seconds: float
    notes: list = field(default_factory=list)
    scores: list = field(default_factory=list)  # SeriesScores per file (not in the JSON)
    labels: list = field(default_factory=list)  # SeriesLabels per file (not in the JSON)

    def to_dict(self) -> dict:
        return {"benchmark": "nab", "protocol": PROTOCOL, "config": asdict(self.config), "variants": self.variants,
                "series": self.series, "seconds": round(self.seconds, 1), "notes": self.notes}


def detector_output(scores: SeriesScores, n_rows: int, variant: str) -> np.ndarray:
    """The plain per-row output: the score relative to the file's own threshold; 0 before scoring starts."""
    out = np.zeros(n_rows, dtype=np.float64)
    out[scores.start :] = scores.scores[variant] / scores.threshold
    return out


def adapted_output(scores: np.ndarray, history: int, hold: int) -> np.ndarray:
    """Causal post-processing of one file's score stream (row ``t`` uses rows ``<= t`` only).

    ``z[t] = (s[t] - mean(s[t-history:t])) / std(s[t-history:t])``; then ``z[t]`` is kept when it exceeds
    every ``z`` of the previous ``hold`` rows, else it becomes ``min(z[t], 0)``: one episode fires once,
    at its start, instead of every row (NAB charges each row outside a window as a false positive).
    The first ``MIN_HISTORY`` rows output 0.

    >>> adapted_output(np.r_[np.tile([1.0, 2.0], 20), 9.0, 9.5, 1.0], history=40, hold=5)[-3:].round(2).tolist()
    [15.0, 0.0, -0.5]
    """
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    out = np.zeros(n)
    if n <= MIN_HISTORY:
        return out
    c = np.concatenate([[0.0], np.cumsum(s)])
    c2 = np.concatenate([[0.0], np.cumsum(s * s)])
    t = np.arange(MIN_HISTORY, n)
    a = np.maximum(0, t - history)
    count = t - a
    mean = (c[t] - c[a]) / count
    var = np.maximum((c2[t] - c2[a]) / count - mean * mean, 1e-12)
    out[t] = (s[t] - mean) / np.sqrt(var)
    if hold > 0:
        from numpy.lib.stride_tricks import sliding_window_view

        previous = sliding_window_view(np.concatenate([np.full(hold, -np.inf), out]), hold)[:-1].max(axis=1)
        repeat = out <= previous
        out[repeat] = np.minimum(out[repeat], 0.0)
    return out


def adapted_detector_output(scores: SeriesScores, n_rows: int, variant: str, config: "NabConfig") -> np.ndarray:
    """:func:`adapted_output` over the file's scored rows; 0 before scoring starts."""
    out = np.zeros(n_rows, dtype=np.float64)
    out[scores.start :] = adapted_output(scores.scores[variant], config.history, config.hold)
    return out


def run_nab(root: str | Path, config: NabConfig | None = None, limit: int | None = None, jobs: int = 2,
            variants: tuple[str, ...] = VARIANTS, log: Callable[[str], None] = print) -> NabResult:
    config = config or NabConfig()
    started = time.perf_counter()
    results = score_corpus(root, config, limit, jobs, variants, log)
    return summarise(results, config, variants, time.perf_counter() - started)


def score_corpus(root: str | Path, config: NabConfig, limit: int | None = None, jobs: int = 2,
                 variants: tuple[str, ...] = VARIANTS,
                 log: Callable[[str], None] = print) -> list[tuple[SeriesScores, SeriesLabels]]:
    """Train, export and score every series (the slow part)."""
    windows = nab_windows(root)
    files = spread(nab_files(root), limit)
    args = [(str(path), str(root), windows, config) for path in files]
    results: list[tuple[SeriesScores, SeriesLabels]] = []
    for k, (scores, labels) in enumerate(run_jobs(_nab_job, args, jobs, variants), 1):
        results.append((scores, labels))
        log(f"[{k}/{len(files)}] {labels.name}: {labels.n_rows} rows, {len(labels.windows)} windows, "
            f"{sum(scores.seconds.values()):.0f}s" + ("; " + "; ".join(scores.notes) if scores.notes else ""))
    return results


def summarise(results: list[tuple[SeriesScores, SeriesLabels]], config: NabConfig,
              variants: tuple[str, ...] = VARIANTS, seconds: float = 0.0) -> NabResult:
    """Corpus thresholds per variant and profile, normalised scores, per-series figures (the fast part)."""
    summary, per_series = {}, {sc.name: {"name": sc.name, "rows": lb.n_rows, "windows": len(lb.windows),
                                         "threshold": sc.threshold,
                                         "seconds": {k: round(v, 2) for k, v in sc.seconds.items()}}
                               for sc, lb in results}
    for v in variants:
        summary[v] = {"thresholds": {}, "raw": {}, "plain": {"thresholds": {}, "raw": {}}}
        adapted = [(adapted_detector_output(sc, lb.n_rows, v, config), lb) for sc, lb in results]
        plain = [(detector_output(sc, lb.n_rows, v), lb) for sc, lb in results]
        for key, profile in PROFILES.items():
            for target, corpus in ((summary[v], adapted), (summary[v]["plain"], plain)):
                r = optimise_threshold(corpus, profile)
                target[key] = r.score
                target["thresholds"][key] = r.threshold if np.isfinite(r.threshold) else None  # None: never fire
                target["raw"][key] = r.raw
                if corpus is adapted:
                    for s in r.series:
                        per_series[s.name].setdefault(v, {})[key] = {
                            "raw": s.raw, "detected": s.detected_windows, "missed": s.missed_windows,
                            "false_positives": s.false_positives}
    for sc, _ in results:
        if sc.notes:
            per_series[sc.name]["notes"] = sc.notes
    notes = [f"{sc.name}: {n}" for sc, _ in results for n in sc.notes]
    return NabResult(config, summary, list(per_series.values()), seconds, notes,
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
    # Scored from the first complete window: the probationary rows' scores are the adapter's first history
    # (past data); NAB itself ignores detections there.
    scores = score_series(series.name, series.values, parts, config.window - 1, config.train_config(series.name), variants,
                          feature_names=series.feature_names)
    return scores, labels
