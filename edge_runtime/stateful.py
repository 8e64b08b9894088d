"""Stateful streaming: carry each GRU layer's hidden state from sample to sample, one step per push.

Exact mode rescans a whole window per sample; this mode costs one GRU step. It is opt-in because the
score is not the window model's: the state has seen the whole stream, not just the last ``window``
samples (an alarm lingers after an anomaly leaves the window). Export measures that divergence on
validation data and writes it into the manifest (``parity.stateful``) so users choose with numbers.

Step model contract (written by ``export/step_graph.py``): input ``x`` [N, F] (scaled samples) and one
state ``h{i}`` [1, N, u_i] per GRU layer; outputs ``score`` [N] and ``h{i}_next``. States start at zero,
so replaying a window from zero states reproduces the window model's score: that is the self-test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .bundle import BundleError, read_manifest, verify_files
from .manifest import Manifest, ModelSpec
from .model_backend import ort_session
from .scorer import ScoreEvent, validate_samples
from .windows import is_window_end, sliding_windows

STEP_ROLE = "step"


class StepModel:
    """One onnxruntime session of the step model; stateless itself (callers own the states)."""

    def __init__(self, source: str | Path | bytes, spec: ModelSpec | None = None, threads: int = 1):
        self._session = ort_session(source, threads)
        self.input_name = spec.input_name if spec else "x"
        self.output_name = spec.output_name if spec else "score"
        inputs = self._session.get_inputs()
        names = [i.name for i in inputs]
        if self.input_name not in names:
            raise ValueError(f"step model has no input {self.input_name!r} (inputs: {names})")
        states = [i for i in inputs if i.name != self.input_name]
        if not states:
            raise ValueError("step model has no state inputs; it cannot carry a stream")
        self.n_features = int(next(i.shape[-1] for i in inputs if i.name == self.input_name))
        self.state_names = [i.name for i in states]
        self.state_sizes = [int(i.shape[-1]) for i in states]
        outputs = [o.name for o in self._session.get_outputs()]
        self._outputs = [self.output_name] + [f"{n}_next" for n in self.state_names]
        missing = [n for n in self._outputs if n not in outputs]
        if missing:
            raise ValueError(f"step model lacks outputs {missing} (outputs: {outputs})")
        self._run = self._fast_run()

    def _fast_run(self):
        """The session's run without the Python wrapper's per-call input validation (~2.5 us of a ~20 us
        step, measured), when this onnxruntime build offers it; the feeds here are always complete.
        The internal call must give exactly what the public ``run`` gives on a probe, or ``run`` is used."""
        inner = getattr(self._session, "_sess", None)
        if inner is None:
            return self._session.run
        feeds = self.feeds(self.zero_states(1))
        feeds[self.input_name] = np.ones((1, self.n_features), dtype=np.float32)
        try:
            fast = inner.run(self._outputs, feeds, None)
            same = all(np.array_equal(a, b) for a, b in zip(fast, self._session.run(self._outputs, feeds)))
        except Exception:  # an internal API that changed shape: fall back to the public one
            same = False
        return (lambda outputs, feeds: inner.run(outputs, feeds, None)) if same else self._session.run

    def zero_states(self, n: int = 1) -> list[np.ndarray]:
        return [np.zeros((1, n, u), dtype=np.float32) for u in self.state_sizes]

    def step(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Scaled samples ``x`` [N, F] (one per stream) + states -> (scores [N], new states)."""
        feeds = self.feeds(states)
        score = self.advance(feeds, x)
        return score, [feeds[name] for name in self.state_names]

    def feeds(self, states: list[np.ndarray]) -> dict:
        """An input dict holding ``states``, for ``advance`` to update in place step after step."""
        return dict(zip(self.state_names, states))

    def advance(self, feeds: dict, x: np.ndarray) -> np.ndarray:
        """One step: run on ``x`` and the states in ``feeds``, store the new states there, return the scores."""
        feeds[self.input_name] = x
        score, *states = self._run(self._outputs, feeds)
        for name, state in zip(self.state_names, states):
            feeds[name] = state
        return score

    def replay(self, scaled_windows: np.ndarray) -> np.ndarray:
        """Each window ``[N, T, F]`` run from zero states, all N side by side: the window model's scores."""
        windows = np.ascontiguousarray(scaled_windows, dtype=np.float32)
        states = self.zero_states(windows.shape[0])
        score = np.zeros(windows.shape[0], dtype=np.float32)
        for t in range(windows.shape[1]):
            score, states = self.step(np.ascontiguousarray(windows[:, t]), states)
        return np.asarray(score, dtype=np.float64).reshape(windows.shape[0], -1)[:, 0]

    def run_series(self, scaled_series: np.ndarray) -> np.ndarray:
        """One stream from zero states, never reset: the stateful score after every sample ``[n]``."""
        series = np.ascontiguousarray(scaled_series, dtype=np.float32)
        states = self.zero_states(1)
        out = np.empty(series.shape[0], dtype=np.float64)
        for i in range(series.shape[0]):
            score, states = self.step(series[i : i + 1], states)
            out[i] = float(np.ravel(score)[0])
        return out


def step_self_test(manifest: Manifest, model: StepModel) -> float:
    """Largest |replayed - golden| over each probe's windows; replay from zero states must match."""
    worst = 0.0
    for probe in manifest.golden.probes:
        windows = sliding_windows(manifest.scaler.transform(np.asarray(probe.samples, dtype=np.float64)),
                                  manifest.window, 1)
        replayed = model.replay(windows)
        diff = np.abs(replayed - np.asarray(probe.expected_scores, dtype=np.float64))
        worst = max(worst, float(np.max(diff)) if np.all(np.isfinite(diff)) else float("inf"))
    return worst


def open_step_model(bundle_dir: str | Path, manifest: Manifest | None = None, threads: int = 1) -> StepModel:
    """The bundle's step model, after file hashes and the zero-state replay of the golden probes pass."""
    if manifest is None:
        manifest = read_manifest(bundle_dir)
    spec = manifest.models.get(STEP_ROLE)
    if spec is None:
        raise BundleError(
            f"{bundle_dir}: bundle has no step model (models: {sorted(manifest.models)}); stateful mode needs "
            "a bundle exported with one (ONNX format, the default)"
        )
    if spec.format != "onnx":
        raise BundleError(f"{bundle_dir}: step model format {spec.format!r} is not supported (onnx only)")
    verify_files(bundle_dir, manifest)
    try:
        model = StepModel(Path(bundle_dir) / spec.file, spec, threads=threads)
    except Exception as e:  # onnxruntime raises its own error kinds
        raise BundleError(f"{bundle_dir}: step model {spec.file!r} does not load: {e}") from e
    worst = step_self_test(manifest, model)
    if not worst <= manifest.golden.atol:
        raise BundleError(
            f"{bundle_dir}: step model self-test failed: replaying the golden probes from zero state differs by "
            f"{worst:.3g} from the window model (tolerance {manifest.golden.atol:.3g}); refusing stateful mode"
        )
    return model


class StatefulStreamScorer:
    """Push one raw sample at a time; one GRU step each. Emits a ``ScoreEvent`` at the same samples as exact mode.

    The hot path is kept short on purpose: one step of the reference model is ~20 us, so every
    microsecond of Python around it shows in the per-sample cost.
    """

    def __init__(self, scorer, model: StepModel):
        self._model = model
        self._window = scorer.window
        self._stride = scorer.stride
        self._threshold = scorer.threshold
        self._scaler = scorer.manifest.scaler
        self._n_features = len(scorer.features)
        self._count = 0
        self._feeds = model.feeds(model.zero_states(1))
        # One input buffer, scaled into in place: fewer temporaries per sample. The float32 mean and
        # scale give exactly the scaler's (x - mean) / scale, so both modes see the same inputs.
        self._x = np.zeros((1, self._n_features), dtype=np.float32)
        self._x0 = self._x[0]
        self._mean = np.asarray(self._scaler.mean, dtype=np.float32)
        self._scale = np.asarray(self._scaler.scale, dtype=np.float32)
        self._shape = (self._n_features,)

    @property
    def samples_seen(self) -> int:
        return self._count

    def push(self, sample) -> ScoreEvent | None:
        """Add one raw sample (F values, in the bundle's feature order); a ``ScoreEvent`` at window ends."""
        row = np.asarray(sample, dtype=np.float32)
        if row.shape != self._shape:
            raise ValueError(f"expected {self._n_features} values per sample, got shape {list(row.shape)}")
        x = self._x0
        np.subtract(row, self._mean, out=x)
        np.divide(x, self._scale, out=x)
        if not math.isfinite(x.sum()):  # NaN and inf survive scaling and summing; the buffer is rewritten next push
            raise ValueError("sample holds NaN or infinite values")
        return self._step()

    def push_many(self, samples) -> list[ScoreEvent]:
        """A burst of raw samples ``[m, F]``: the events ``push`` would give one by one (steps cannot batch in time)."""
        scaled = self._scaler.transform(validate_samples(samples, self._n_features))
        events = []
        for row in scaled:
            self._x[0] = row
            event = self._step()
            if event is not None:
                events.append(event)
        return events

    def _step(self) -> ScoreEvent | None:
        score = self._model.advance(self._feeds, self._x)
        index = self._count
        self._count = index + 1
        if is_window_end(index, self._window, self._stride):
            value = float(score[0])
            return ScoreEvent(index=index, score=value, anomaly=value >= self._threshold)
        return None

    def reset(self) -> None:
        self._count = 0
        self._feeds = self._model.feeds(self._model.zero_states(1))
