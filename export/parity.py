"""Parity: does an exported model decide like the Keras model it came from?

``compare_scores`` is the pure core (used by export before it writes a bundle, and by the CLI);
``check_parity`` is the whole check, callable from a user's own pytest suite::

    from gru_edge.export.parity import check_parity

    def test_bundle_matches_keras():
        report = check_parity("runs/pump", "bundles/pump-int8")
        assert report.passed, report.summary()
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..edge_runtime.device_profile import ParityTolerance
from ..train.metrics import detection_metrics

# What each weight storage is expected to keep, unless a device profile says otherwise.
# fp32 must match Keras to float rounding; the compressed variants are judged on decisions.
DEFAULT_TOLERANCE = {
    "none": ParityTolerance(max_abs_diff=1e-5, min_decision_agreement=1.0, max_f1_drop=0.0),
    "fp16": ParityTolerance(max_abs_diff=2e-2, min_decision_agreement=0.995, max_f1_drop=0.01),
    "int8": ParityTolerance(max_abs_diff=1e-1, min_decision_agreement=0.995, max_f1_drop=0.01),
    # TFLite dynamic-range int8 (int8 weights, float activations): judged like int8 weight storage.
    "dynamic": ParityTolerance(max_abs_diff=1e-1, min_decision_agreement=0.995, max_f1_drop=0.01),
}
# An alarm onset of the candidate further than this from the reference's counts as missed / extra.
ONSET_MATCH_WINDOWS = 64


@dataclass
class ParityReport:
    variant: str
    windows: int
    max_abs_diff: float
    mean_abs_diff: float
    decision_agreement: float
    f1_reference: float | None
    f1_candidate: float | None
    tolerance: ParityTolerance
    failures: list = field(default_factory=list)
    # How far the candidate moves alarm onsets (see ``onset_shift``); reported, not gated.
    alarm_onsets: dict = field(default_factory=dict)
    # Diffs measured as |ref - cand| / max(1, |ref|) (unbounded scores such as forecast errors, see compare_scores).
    relative: bool = False

    @property
    def f1_delta(self) -> float | None:
        if self.f1_reference is None or self.f1_candidate is None:
            return None
        return self.f1_candidate - self.f1_reference

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["f1_delta"] = self.f1_delta
        d["passed"] = self.passed
        return d

    def summary(self) -> str:
        f1 = "" if self.f1_delta is None else f", F1 {self.f1_candidate:.4f} ({self.f1_delta:+.4f})"
        onsets = self.alarm_onsets
        shift = "" if not onsets.get("matched") else f", onsets max shift {onsets['max_abs_shift']}"
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)
        return (
            f"{self.variant}: {self.windows} windows, max {'rel ' if self.relative else ''}|diff| {self.max_abs_diff:.2e}, "
            f"mean {self.mean_abs_diff:.2e}, "
            f"decisions agree {100 * self.decision_agreement:.2f}%{f1}{shift} -> {verdict}"
        )


def compare_scores(reference: np.ndarray, candidate: np.ndarray, threshold: float, tolerance: ParityTolerance,
                   labels: np.ndarray | None = None, variant: str = "candidate",
                   candidate_threshold: float | None = None, relative: bool = False) -> ParityReport:
    """``threshold`` decides for the reference; ``candidate_threshold`` (default: the same) for the candidate.

    ``relative``: diffs are ``|ref - cand| / max(1, |ref|)``. For unbounded scores (normal-only forecast
    errors reach 100+ on far-out inputs) float32 alone moves a score by ~1e-7 of its size, so an absolute
    bound would fail exact exports on large scores; below 1 the two measures are the same."""
    cand_t = threshold if candidate_threshold is None else candidate_threshold
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 1:
        raise ValueError(f"reference {ref.shape} and candidate {cand.shape} scores must be equal-length 1-D arrays")
    if ref.size == 0:
        raise ValueError("no windows to compare")
    diff = np.abs(ref - cand)
    if relative:
        diff = diff / np.maximum(1.0, np.abs(ref))
    diff = np.where(np.isfinite(diff), diff, np.inf)
    agreement = float(np.mean((ref >= threshold) == (cand >= cand_t)))
    f1_ref = f1_cand = None
    if labels is not None and np.any(labels):
        f1_ref = detection_metrics(labels, ref, threshold)["f1"]
        f1_cand = detection_metrics(labels, cand, cand_t)["f1"]
    report = ParityReport(variant, int(ref.size), float(diff.max()), float(diff.mean()), agreement, f1_ref, f1_cand,
                          tolerance, alarm_onsets=onset_shift(ref >= threshold, cand >= cand_t), relative=relative)
    if report.max_abs_diff > tolerance.max_abs_diff:
        report.failures.append(f"max {'rel ' if relative else ''}|diff| {report.max_abs_diff:.2e} > {tolerance.max_abs_diff:.0e}")
    if agreement < tolerance.min_decision_agreement:
        report.failures.append(
            f"decision agreement {100 * agreement:.2f}% < {100 * tolerance.min_decision_agreement:.2f}%"
        )
    if report.f1_delta is not None and -report.f1_delta > tolerance.max_f1_drop:
        report.failures.append(f"F1 drop {-report.f1_delta:.4f} > {tolerance.max_f1_drop}")
    return report


def alarm_onsets(decisions: np.ndarray) -> np.ndarray:
    """Positions where an alarm starts (decision turns on; a leading alarm counts).

    >>> alarm_onsets(np.array([1, 1, 0, 0, 1, 0, 1], bool)).tolist()
    [0, 4, 6]
    """
    d = np.asarray(decisions, dtype=bool)
    return np.flatnonzero(d & ~np.r_[False, d[:-1]])


def onset_shift(reference: np.ndarray, candidate: np.ndarray, radius: int = ONSET_MATCH_WINDOWS) -> dict:
    """Match each reference alarm onset to the nearest unmatched candidate onset within ``radius`` windows
    (samples at stride 1) and report the shifts: positive = the candidate alarms later.

    >>> r = onset_shift(np.array([0, 1, 1, 0, 0, 0, 1], bool), np.array([0, 0, 1, 0, 0, 0, 1], bool))
    >>> r["matched"], r["max_abs_shift"], r["mean_abs_shift"], r["missed"], r["extra"]
    (2, 1, 0.5, 0, 0)
    """
    ref, cand = alarm_onsets(reference), alarm_onsets(candidate)
    free = list(cand)
    shifts = []
    for r in ref:
        if not free:
            break
        nearest = min(free, key=lambda c: (abs(c - r), c))
        if abs(nearest - r) <= radius:
            shifts.append(int(nearest - r))
            free.remove(nearest)
    return {
        "reference": int(len(ref)),
        "candidate": int(len(cand)),
        "matched": len(shifts),
        "missed": int(len(ref) - len(shifts)),
        "extra": len(free),
        "mean_abs_shift": float(np.mean(np.abs(shifts))) if shifts else None,
        "max_abs_shift": int(np.max(np.abs(shifts))) if shifts else None,
        "mean_shift": float(np.mean(shifts)) if shifts else None,
    }


def check_parity(run_dir: str | Path, bundle_dir: str | Path, data: str | Path | None = None,
                 tolerance: ParityTolerance | None = None, max_windows: int = 4096) -> ParityReport:
    """Score the same windows with the run's Keras model and the bundle (through edge_runtime) and compare.

    ``data`` is a CSV with the bundle's feature columns (and optionally a `label` column); by default
    the run's held-out test part is used. The tolerance defaults to the one recorded in the bundle.
    """
    from ..edge_runtime.scorer import Scorer
    from ..train.normal_only import reference_scores
    from ..train.record import open_run

    run = open_run(run_dir)
    scorer = Scorer(bundle_dir)
    m = scorer.manifest
    if list(m.features) != list(run.record.features) or m.window != run.record.window:
        raise ValueError(f"{bundle_dir} was not exported from {run_dir}: features or window differ")
    series, labels = _parity_series(run, data, m.features)
    ends, candidate = scorer.score_series(series, stride=1)
    ends, candidate = ends[-max_windows:], candidate[-max_windows:]
    windows = windows_ending_at(m.scaler.transform(series), ends, m.window)
    reference = reference_scores(run.record, run.load_model(), windows)
    window_labels = None if labels is None else labels[ends]
    quantization = m.window_model.quantization
    tol = tolerance or tolerance_from_manifest(m.parity) or DEFAULT_TOLERANCE.get(quantization, DEFAULT_TOLERANCE["int8"])
    # Keras decides with the run's threshold, the bundle with its own: a moved threshold is a difference too.
    return compare_scores(reference, candidate, run.record.threshold, tol, window_labels,
                          variant=f"{Path(bundle_dir).name} ({m.window_model.format}, {quantization})",
                          candidate_threshold=m.score.threshold, relative=m.score.kind == "forecast_error")


def run_test_windows(run, max_windows: int = 4096) -> tuple[np.ndarray, np.ndarray | None]:
    """The last ``max_windows`` stride-1 windows (scaled) of the run's held-out test part, in time order,
    and their labels (None when the run had none): the windows every parity figure is measured on."""
    from ..edge_runtime.windows import sliding_windows

    holdout = run.holdout()
    scaled = run.record.scaler.transform(holdout.test)
    windows = np.ascontiguousarray(sliding_windows(scaled, run.record.window, 1)[-max_windows:])
    labels = None
    if holdout.test_labels is not None:
        labels = holdout.test_labels[run.record.window - 1 :][-max_windows:]
    return windows, labels


def windows_ending_at(scaled: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    from ..edge_runtime.windows import sliding_windows

    return np.ascontiguousarray(sliding_windows(scaled, window, 1)[ends - (window - 1)])


def tolerance_from_manifest(parity: dict) -> ParityTolerance | None:
    tol = parity.get("tolerance") if isinstance(parity, dict) else None
    return ParityTolerance(**tol) if isinstance(tol, dict) else None


def _parity_series(run, data, features) -> tuple[np.ndarray, np.ndarray | None]:
    if data is None:
        holdout = run.holdout()
        return holdout.test, holdout.test_labels
    from ..train.data import load_csv

    from ..train.pipeline import default_label_column

    ds = load_csv(data, features=list(features), label_column=default_label_column(str(data), None))
    return ds.values, ds.labels
