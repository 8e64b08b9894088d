"""Normal-only detection: a GRU forecaster trained on normal data; the score is how badly it forecasts.

The model reads a window ``[T, F]`` and, at every step ``t``, forecasts sample ``t + 1`` (as the change
from sample ``t`` for ``target="delta"``, or directly for ``target="next"``). The score of a window is the
mean over its last ``steps`` samples and over features of the squared forecast error standardised per
feature on normal validation data, as a root mean square: ``sqrt(mean(((x - x_hat - offset) / scale) ** 2))``
(in units of the normal error's spread; the root keeps score differences proportional to forecast
differences, so parity tolerances mean the same for small and large errors). Everything it needs
lies inside the window, so one window gives one score that belongs to its last sample (the layout
contract of :mod:`gru_edge.edge_runtime.windows`), and streaming equals batch scoring exactly.

:func:`error_scores` is the one definition of that score on the training side: training, the
threshold, export parity and the benchmarks all call it; the exported ONNX graph computes the same
expression in-graph. TensorFlow is imported only inside the functions that build or run a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..edge_runtime.windows import sliding_windows

TARGETS = ("delta", "next")
# Per-feature error scales below this (in scaled units, i.e. a fraction of the feature's training
# spread) are raised to it: a feature the model forecasts almost perfectly (a smooth or synthetic
# signal) would otherwise turn float32 rounding into large standardised errors, alarms, and parity
# failures, and dominate the mean. 5 % of a feature's spread is below any deviation worth an alarm.
MIN_ERROR_SCALE = 5e-2
DEFAULT_STEPS = 8
# Lowest threshold the quantile rule gives. A perfectly forecast series (a flat line) has normal scores
# of exactly 0, and a threshold of 0 would alarm on every window (score >= 0); 0.1 is a tenth of the
# normal error spread.
MIN_THRESHOLD = 0.1


@dataclass(frozen=True)
class ErrorHead:
    """How a window's forecast errors become one score (stored in train.json as ``error_head``)."""

    target: str  # "delta": forecast x[t+1] - x[t]; "next": forecast x[t+1]
    steps: int  # errors of the window's last `steps` samples are averaged (smoothing inside the window)
    offset: tuple  # [F] mean forecast error on normal validation windows (scaled units)
    scale: tuple  # [F] spread of the forecast error on normal validation windows

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"error head target {self.target!r} is not one of {TARGETS}")
        if int(self.steps) < 1:
            raise ValueError(f"error head steps must be >= 1, got {self.steps}")
        if len(self.offset) != len(self.scale):
            raise ValueError(f"error head has {len(self.offset)} offsets but {len(self.scale)} scales")
        if not (np.all(np.isfinite(self.offset)) and np.all(np.isfinite(self.scale)) and min(self.scale) > 0):
            raise ValueError("error head offsets must be finite and scales finite and > 0")

    @property
    def n_features(self) -> int:
        return len(self.scale)

    def to_dict(self) -> dict:
        return {"target": self.target, "steps": int(self.steps), "offset": [float(v) for v in self.offset],
                "scale": [float(v) for v in self.scale],
                "score": "sqrt(mean over the last `steps` samples and the features of ((x - forecast - offset) / scale)^2)"}

    @classmethod
    def from_dict(cls, d: dict) -> "ErrorHead":
        if not isinstance(d, dict) or not {"target", "steps", "offset", "scale"} <= set(d):
            raise ValueError(f"not an error head (needs target, steps, offset, scale): {d!r}")
        return cls(str(d["target"]), int(d["steps"]), tuple(float(v) for v in d["offset"]),
                   tuple(float(v) for v in d["scale"]))


def check_steps(window: int, steps: int) -> None:
    """The first forecast of a window is made at its first sample, so at most ``window - 1`` samples are scored."""
    if not 1 <= steps <= window - 1:
        raise ValueError(f"error steps must be between 1 and window - 1 = {window - 1}, got {steps}")


def forecast_errors(windows: np.ndarray, outputs: np.ndarray, target: str, steps: int) -> np.ndarray:
    """Raw forecast errors ``x - x_hat`` of each window's last ``steps`` samples: ``[N, steps, F]`` (float32).

    ``outputs[:, t]`` is the model's forecast made at step ``t`` for sample ``t + 1``, so the last
    ``steps`` samples are forecast by outputs ``T - steps - 1 .. T - 2``; the output at ``T - 1``
    forecasts a sample beyond the window and is never used.

    The arithmetic is float32, step for step as the exported graph does it: an input far outside the
    training range (NAB reaches 200 standard deviations) makes ``x`` and ``x_hat`` large while their
    difference is small, and float64 here against float32 there would differ by float32's rounding of
    ``x_hat`` (1e-5 at 200), i.e. by model-independent noise the parity check would blame on the model.
    """
    w = np.asarray(windows, dtype=np.float32)
    o = np.asarray(outputs, dtype=np.float32)
    if w.ndim != 3 or o.shape != w.shape:
        raise ValueError(f"windows {w.shape} and model outputs {o.shape} must both be [N, T, F]")
    check_steps(w.shape[1], steps)
    forecast = o[:, -steps - 1 : -1]
    if target == "delta":
        forecast = forecast + w[:, -steps - 1 : -1]
    elif target != "next":
        raise ValueError(f"target {target!r} is not one of {TARGETS}")
    return w[:, -steps:] - forecast


def error_scores(windows: np.ndarray, outputs: np.ndarray, head: ErrorHead) -> np.ndarray:
    """The anomaly score of each window, float64 ``[N]`` (see the module docstring)."""
    errors = forecast_errors(windows, outputs, head.target, head.steps)
    z = (errors - np.asarray(head.offset, dtype=np.float32)) / np.asarray(head.scale, dtype=np.float32)
    return np.sqrt(np.mean(z * z, axis=(1, 2), dtype=np.float64))


def fit_error_head(windows: np.ndarray, outputs: np.ndarray, target: str, steps: int) -> ErrorHead:
    """Per-feature offset and scale of the forecast errors on normal windows."""
    errors = forecast_errors(windows, outputs, target, steps).reshape(-1, np.shape(windows)[2]).astype(np.float64)
    if errors.shape[0] < 2:
        raise ValueError("need at least two normal validation forecasts to standardise errors")
    scale = np.maximum(errors.std(axis=0), MIN_ERROR_SCALE)
    return ErrorHead(target, int(steps), tuple(float(v) for v in errors.mean(axis=0)), tuple(float(v) for v in scale))


def training_pairs(scaled: np.ndarray, window: int, target: str, stride: int = 1,
                   normal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(inputs ``[N, T, F]``, targets ``[N, T, F]``) from windows of ``T + 1`` samples.

    The inputs are samples ``0..T-1`` and the targets what the model should output at each of them:
    the next sample, or its change from the current one. ``normal`` (``[n]`` bool) keeps only the
    pairs whose ``T + 1`` samples are all normal.
    """
    w = sliding_windows(np.asarray(scaled, dtype=np.float32), window + 1, stride)
    if normal is not None:
        bad = sliding_windows(~np.asarray(normal, dtype=bool)[:, None], window + 1, stride)
        w = w[~bad.any(axis=(1, 2))]
    x = np.ascontiguousarray(w[:, :-1])
    y = w[:, 1:] - w[:, :-1] if target == "delta" else w[:, 1:]
    return x, np.ascontiguousarray(y, dtype=np.float32)


def all_normal(labels: np.ndarray | None, n: int, window: int) -> np.ndarray:
    """``[N]`` bool per stride-1 window: no anomalous sample inside (all True without labels)."""
    count = max(n - window + 1, 0)
    if labels is None:
        return np.ones(count, dtype=bool)
    bad = sliding_windows(np.asarray(labels, dtype=bool)[:, None], window, 1)
    return ~bad.any(axis=(1, 2))


def build_forecaster(window: int, n_features: int, units: tuple[int, ...], learning_rate: float = 3e-3):
    """GRU(u1, seq) -> ... -> GRU(un, seq) -> Dense(F, linear) per step, MSE, Adam.

    Every GRU returns sequences (the Dense forecasts at every step); the GRUs are causal, so the
    forecast at step t sees samples 0..t only. Keras defaults are kept: export maps them exactly.
    """
    import keras
    from keras import layers

    if not units or any(int(u) < 1 for u in units):
        raise ValueError(f"units must be one or more positive integers, got {units}")
    model = keras.Sequential(name="gru_forecaster")
    model.add(keras.Input(shape=(window, n_features), name="windows"))
    for i, u in enumerate(units):
        model.add(layers.GRU(int(u), return_sequences=True, name=f"gru_{i}"))
    model.add(layers.Dense(n_features, activation="linear", name="forecast"))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def predict_outputs(model, windows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Model outputs ``[N, T, F]`` in chunks (direct calls avoid predict()'s per-call overhead)."""
    windows = np.asarray(windows, dtype=np.float32)
    if len(windows) == 0:
        return np.empty(windows.shape, dtype=np.float32)
    return np.concatenate(
        [np.asarray(model(windows[i : i + batch_size], training=False)) for i in range(0, len(windows), batch_size)]
    )


def keras_error_scores(model, windows: np.ndarray, head: ErrorHead, batch_size: int = 1024) -> np.ndarray:
    """Scores of scaled windows by a Keras forecaster (the reference the exported graph must match)."""
    windows = np.asarray(windows, dtype=np.float32)
    if len(windows) == 0:
        return np.empty(0, dtype=np.float64)
    return error_scores(windows, predict_outputs(model, windows, batch_size), head)


# A threshold keeps at least this relative distance from every normal score it is set on: a periodic or
# synthetic signal repeats the same windows, whose scores then differ only by float rounding (~1e-7), and
# a threshold inside such a cluster flips decisions between Keras and the exported graph.
THRESHOLD_MARGIN = 1e-4


def quantile_threshold(normal_scores: np.ndarray, quantile: float, factor: float = 1.0) -> float:
    """``factor`` x the ``quantile`` of normal scores (the factor leaves headroom for unseen normal behaviour),
    and at least ``MIN_THRESHOLD``.

    The quantile is the lowest cut that leaves at most ``1 - quantile`` of the normal scores at or above it,
    placed in the middle of a gap of at least ``THRESHOLD_MARGIN`` (relative) between sorted scores, never
    on a score or inside a cluster of nearly equal ones.

    >>> quantile_threshold(np.array([1.0, 1.0, 1.0, 2.0]), 0.75)
    1.5
    >>> round(quantile_threshold(np.array([1.0, 1.0 + 1e-7, 1.0 + 2e-7, 2.0]), 0.5), 6)  # not inside the cluster
    1.5
    """
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))[::-1]
    if s.size == 0:
        raise ValueError("no normal validation windows to take a threshold quantile from")
    if not 0 < quantile <= 1 or factor <= 0:
        raise ValueError(f"need 0 < quantile <= 1 and factor > 0, got {quantile} and {factor}")
    allowed = int(np.floor(round(1.0 - quantile, 12) * s.size))  # normal scores that may lie above (1 - 0.9 != 0.1)
    gaps = s[:-1] - s[1:]  # cutting in gap i flags the i + 1 highest scores
    wide = gaps >= THRESHOLD_MARGIN * np.maximum(1.0, np.abs(s[:-1]))
    ok = np.flatnonzero(wide & (np.arange(1, s.size) <= allowed))
    if ok.size:
        cut = float((s[ok[-1]] + s[ok[-1] + 1]) / 2.0)
    else:
        cut = float(s[0] + THRESHOLD_MARGIN * max(1.0, abs(s[0])))  # above every normal score, with the margin
    return float(max(cut * factor, MIN_THRESHOLD))


# ---------------------------------------------------------------- any run's Keras-side score


def run_error_head(record) -> ErrorHead | None:
    """The error head of a normal-only training record, None for a classifier's."""
    if getattr(record, "mode", "classifier") != "normal-only":
        return None
    try:
        return ErrorHead.from_dict(record.error_head)
    except ValueError as e:
        raise ValueError(f"normal-only training record has no usable error_head: {e}") from None


def scores_from_outputs(record, windows: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """A run's scores from its Keras model's raw outputs (however they were computed: Keras, tf2onnx, ...)."""
    head = run_error_head(record)
    outputs = np.asarray(outputs)
    if head is None:
        return outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64)
    return error_scores(windows, outputs.reshape(np.shape(windows)), head)


def reference_scores(record, model, windows: np.ndarray) -> np.ndarray:
    """The Keras-side scores of scaled windows for any run: what export parity and benchmarks compare with."""
    head = run_error_head(record)
    if head is None:
        from .model import predict_scores

        return predict_scores(model, windows)
    return keras_error_scores(model, windows, head)
