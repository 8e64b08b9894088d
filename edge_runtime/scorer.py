"""Scoring raw sensor samples with a bundle: in batch, and as a streaming loop.

``Scorer`` is a plain object holding only the bundle path and options; the onnxruntime session is
opened lazily and dropped when pickled, so the same scorer can be shipped to Ray/Spark workers and
re-verifies the bundle wherever it lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import open_bundle
from .manifest import Manifest
from .windows import is_window_end, sliding_windows, window_end_indices


@dataclass(frozen=True)
class ScoreEvent:
    index: int  # sample index (0-based) the window ended at
    score: float
    anomaly: bool


class Scorer:
    """Batch scoring of raw ``[n, F]`` series or ``[N, T, F]`` windows with one bundle."""

    def __init__(self, bundle_dir: str | Path, threads: int = 1):
        self.bundle_dir = str(bundle_dir)
        self.threads = int(threads)
        self._manifest, self._model = open_bundle(self.bundle_dir, threads=self.threads)
        self._step = None  # the step model, opened on first stateful use

    # Pickling carries the path, not the session: the receiving process verifies and opens it itself.
    def __getstate__(self) -> dict:
        return {"bundle_dir": self.bundle_dir, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["bundle_dir"], state["threads"])

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def features(self) -> list[str]:
        return list(self._manifest.features)

    @property
    def window(self) -> int:
        return self._manifest.window

    @property
    def stride(self) -> int:
        return self._manifest.stride

    @property
    def threshold(self) -> float:
        return float(self._manifest.score.threshold)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Raw (unscaled) windows ``[N, T, F]`` -> scores ``[N]`` (float64)."""
        windows = np.asarray(windows)
        expected = (self.window, len(self.features))
        if windows.ndim != 3 or windows.shape[1:] != expected:
            raise ValueError(f"expected windows of shape [N, {expected[0]}, {expected[1]}], got {list(windows.shape)}")
        if windows.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return self._run_scaled(self._manifest.scaler.transform(windows))

    def score_series(self, series: np.ndarray, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw series ``[n, F]`` -> (index of the sample each window ends at, score), per the window layout."""
        series = np.asarray(series)
        if series.ndim != 2 or series.shape[1] != len(self.features):
            raise ValueError(f"expected a series of shape [n, {len(self.features)}], got {list(series.shape)}")
        stride = self.stride if stride is None else int(stride)
        scaled = self._manifest.scaler.transform(series)
        ends = window_end_indices(series.shape[0], self.window, stride)
        if len(ends) == 0:
            return ends, np.empty(0, dtype=np.float64)
        return ends, self._run_scaled(sliding_windows(scaled, self.window, stride))

    def is_anomaly(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold

    def stream(self, mode: str = "exact"):
        """A streaming scorer: ``"exact"`` rescores the window (default), ``"stateful"`` runs one GRU step per sample."""
        if mode == "exact":
            return StreamScorer(self)
        if mode == "stateful":
            from .stateful import StatefulStreamScorer

            return StatefulStreamScorer(self, self.step_model())
        raise ValueError(f"unknown streaming mode {mode!r}; expected 'exact' or 'stateful'")

    def step_model(self):
        """The bundle's single-step model (verified and self-tested on first use)."""
        if self._step is None:
            from .stateful import open_step_model

            self._step = open_step_model(self.bundle_dir, self._manifest, threads=self.threads)
        return self._step

    def _run_scaled(self, scaled_windows: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.run(scaled_windows), dtype=np.float64).reshape(scaled_windows.shape[0], -1)[:, 0]


class StreamScorer:
    """Push one raw sample at a time; get a ``ScoreEvent`` whenever a window completes.

    Samples are scaled once on arrival and written twice into a ring of ``2 * window`` rows, so the
    newest window is always the contiguous slice ``ring[pos : pos + window]``: ``push`` does O(1)
    bookkeeping and never copies the window before handing it to the model.
    """

    def __init__(self, scorer: Scorer):
        self._scorer = scorer
        self._window = scorer.window
        self._stride = scorer.stride
        self._threshold = scorer.threshold
        self._scaler = scorer.manifest.scaler
        self._ring = np.zeros((2 * self._window, len(scorer.features)), dtype=np.float32)
        self._count = 0  # samples accepted so far; also the index of the next sample

    @property
    def samples_seen(self) -> int:
        return self._count

    def push(self, sample) -> ScoreEvent | None:
        """Add one raw sample (F values, in the bundle's feature order)."""
        row = np.asarray(sample, dtype=np.float32)
        if row.shape != (self._ring.shape[1],):
            raise ValueError(f"expected {self._ring.shape[1]} values per sample, got shape {list(row.shape)}")
        if not np.all(np.isfinite(row)):
            raise ValueError("sample holds NaN or infinite values")
        window = self.advance(self._scaler.transform(row))
        if window is None:
            return None
        score = float(self._scorer._run_scaled(window[None, :, :])[0])
        return ScoreEvent(index=self._count - 1, score=score, anomaly=score >= self._threshold)

    def advance(self, scaled_row: np.ndarray) -> np.ndarray | None:
        """Take one scaled, checked sample; return the window it completes (a view of the ring, valid until
        the next sample) or None. For callers that batch windows of many streams into one model call."""
        slot = self._count % self._window
        self._ring[slot] = scaled_row
        self._ring[slot + self._window] = scaled_row
        index = self._count
        self._count += 1
        if not is_window_end(index, self._window, self._stride):
            return None
        start = (slot + 1) % self._window
        return self._ring[start : start + self._window]

    def push_many(self, samples) -> list[ScoreEvent]:
        """A burst of raw samples ``[m, F]``: every window it completes is scored in one model call.

        Gives the events ``push`` would give one by one (the same windows through the same model).
        """
        indices, windows = self.append_burst(samples)
        if not indices:
            return []
        scores = self._scorer._run_scaled(windows)
        return [ScoreEvent(index=i, score=float(v), anomaly=bool(v >= self._threshold)) for i, v in zip(indices, scores)]

    def append_burst(self, samples) -> tuple[list[int], np.ndarray]:
        """Take a burst into the ring; return the sample indices that complete a window and those scaled
        windows ``[k, T, F]`` (a copy), unscored, so callers can batch windows of several streams in one call."""
        rows = self._scaler.transform(validate_samples(samples, self._ring.shape[1]))
        w, m, first = self._window, rows.shape[0], self._count
        start = first % w
        kept = min(first, w - 1)  # earlier samples the burst's first windows still need
        history = np.concatenate([self._ring[start + w - kept : start + w], rows]) if kept else rows
        indices = [first + j for j in range(m) if is_window_end(first + j, w, self._stride)]
        # Window ending at sample i starts at history row (i - first + kept) - (w - 1).
        starts = np.array([i - first + kept - (w - 1) for i in indices], dtype=np.int64)
        windows = sliding_windows(history, w, 1)[starts] if indices else np.empty((0, w, rows.shape[1]), np.float32)
        tail = rows[-w:]
        slots = (first + m - len(tail) + np.arange(len(tail))) % w
        self._ring[slots] = tail
        self._ring[slots + w] = tail
        self._count = first + m
        return indices, np.ascontiguousarray(windows, dtype=np.float32)

    def reset(self) -> None:
        self._count = 0


def validate_samples(samples, n_features: int) -> np.ndarray:
    """A burst of raw samples as float32 ``[m, F]``, or a ValueError naming the first bad one.

    Checked before anything is consumed, so a bad burst leaves the stream as it was.
    """
    rows = np.asarray(samples, dtype=np.float32)
    if rows.size == 0:  # an empty burst, however it is shaped
        return np.empty((0, n_features), dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise ValueError(f"expected a burst of samples of shape [m, {n_features}], got shape {list(rows.shape)}")
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise ValueError(f"sample {int(np.argmin(finite))} of the burst holds NaN or infinite values")
    return rows
