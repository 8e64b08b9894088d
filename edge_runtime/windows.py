"""The window layout: how a series of samples becomes model inputs.

This is the one definition train, export and the runtime share.

- A series is an array ``[n_samples, n_features]`` in time order.
- Window ``k`` holds samples ``[k*stride, k*stride + window)``; windows are ``[N, window, F]``.
- A window is scored *at its last sample*: its score, and its label when training, belong to
  sample ``k*stride + window - 1``. So an alarm is raised on the sample that completed the window
  and never looks into the future.
- The streaming scorer emits a score at sample ``i`` exactly when
  ``i >= window - 1`` and ``(i - window + 1) % stride == 0``, i.e. at the same samples as batch scoring.
"""

from __future__ import annotations

import numpy as np


def window_count(n_samples: int, window: int, stride: int = 1) -> int:
    """Number of complete windows in a series of ``n_samples``.

    >>> window_count(10, 4, 1), window_count(10, 4, 3), window_count(3, 4, 1)
    (7, 3, 0)
    """
    _check(window, stride)
    if n_samples < window:
        return 0
    return (n_samples - window) // stride + 1


def window_end_indices(n_samples: int, window: int, stride: int = 1) -> np.ndarray:
    """Index of the sample each window is scored at (its last sample).

    >>> window_end_indices(10, 4, 3).tolist()
    [3, 6, 9]
    """
    count = window_count(n_samples, window, stride)
    return window - 1 + stride * np.arange(count, dtype=np.int64)


def is_window_end(index: int, window: int, stride: int = 1) -> bool:
    """Whether sample ``index`` completes a window (the streaming form of ``window_end_indices``)."""
    return index >= window - 1 and (index - window + 1) % stride == 0


def sliding_windows(series: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """``[n, F]`` -> ``[N, window, F]`` windows, as a read-only view (no copy).

    >>> sliding_windows(np.arange(12.0).reshape(6, 2), 4, 2)[:, :, 0].tolist()
    [[0.0, 2.0, 4.0, 6.0], [4.0, 6.0, 8.0, 10.0]]
    """
    _check(window, stride)
    series = np.asarray(series)
    if series.ndim != 2:
        raise ValueError(f"series must be 2-D [samples, features], got shape {series.shape}")
    count = window_count(series.shape[0], window, stride)
    if count == 0:
        return np.empty((0, window, series.shape[1]), dtype=series.dtype)
    view = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)  # [n-w+1, F, w]
    return view[: (count - 1) * stride + 1 : stride].transpose(0, 2, 1)


def window_labels(labels: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Label of each window = label of its last sample.

    >>> window_labels(np.array([0, 0, 0, 1, 0, 0]), 3, 1).tolist()
    [0, 1, 0, 0]
    """
    labels = np.asarray(labels)
    return labels[window_end_indices(labels.shape[0], window, stride)]


def _check(window: int, stride: int) -> None:
    if int(window) < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
