"""The window layout and the scaler: the contracts train, export and runtime share."""

import numpy as np
import pytest

from gru_edge.edge_runtime.scaler import StandardScaler
from gru_edge.edge_runtime.windows import (
    is_window_end, sliding_windows, window_count, window_end_indices, window_labels,
)


@pytest.mark.parametrize("n,window,stride", [(10, 4, 1), (10, 4, 3), (64, 64, 1), (100, 7, 5), (5, 8, 1)])
def test_windows_match_a_plain_loop(n, window, stride):
    x = np.arange(n * 3, dtype=float).reshape(n, 3)
    expected = [x[s : s + window] for s in range(0, n - window + 1, stride)]
    got = sliding_windows(x, window, stride)
    assert got.shape == (len(expected), window, 3)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert window_count(n, window, stride) == len(expected)


def test_each_window_is_scored_at_its_last_sample():
    n, window, stride = 50, 8, 3
    x = np.arange(n, dtype=float)[:, None]
    ends = window_end_indices(n, window, stride)
    np.testing.assert_array_equal(sliding_windows(x, window, stride)[:, -1, 0], ends)
    streaming = [i for i in range(n) if is_window_end(i, window, stride)]
    assert streaming == ends.tolist()


def test_window_label_is_label_of_last_sample():
    labels = np.zeros(20, dtype=int)
    labels[10] = 1
    wl = window_labels(labels, 5, 1)
    assert wl.tolist().index(1) == 10 - 4 and wl.sum() == 1  # the window ending at 10, not those containing it


def test_windows_reject_bad_arguments():
    with pytest.raises(ValueError, match="window"):
        sliding_windows(np.zeros((5, 2)), 0)
    with pytest.raises(ValueError, match="stride"):
        window_count(5, 2, 0)
    with pytest.raises(ValueError, match="2-D"):
        sliding_windows(np.zeros(5), 2)


def test_scaler_fits_train_only_and_round_trips():
    rng = np.random.default_rng(0)
    train = rng.normal([10, -3, 7], [2, 0.5, 0], size=(500, 3))
    s = StandardScaler.fit(train)
    z = s.transform(train)
    np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-4)
    assert s.scale[2] == 1.0  # a constant column is centred, not blown up by a ~0 divisor
    assert z.dtype == np.float32
    assert StandardScaler.from_dict(s.to_dict()) == s


def test_scaler_rejects_bad_input():
    s = StandardScaler((0.0, 1.0), (1.0, 2.0))
    with pytest.raises(ValueError, match="expected 2 features, got 3"):
        s.transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="unknown scaler"):
        StandardScaler.from_dict({"kind": "minmax"})
    with pytest.raises(ValueError, match="> 0"):
        StandardScaler((0.0,), (0.0,))
