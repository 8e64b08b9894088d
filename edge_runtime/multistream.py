"""Many streams (several pumps on one gateway) scored together: one model call per burst, not per stream.

``MultiStreamScorer.push_many([(stream_id, sample), ...])`` takes samples of any streams in arrival
order. Exact mode stacks every window the burst completes, across streams, into one batch; stateful
mode advances every stream that got a sample in one step call (a stream with several samples in the
burst takes one step per round). Events come back in the order of the samples that produced them and
equal what one ``StreamScorer`` per stream would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Iterator

import numpy as np

from .csv_input import CsvRowReader, InputError, Row, RowError, split_line, where
from .scorer import Scorer, StreamScorer


@dataclass(frozen=True)
class StreamEvent:
    stream: Hashable
    index: int  # sample index within its stream (0-based) the window ended at
    score: float
    anomaly: bool


class MultiStreamScorer:
    """Keyed streaming: one exact ring or one set of GRU states per stream id, batched model calls."""

    def __init__(self, scorer: Scorer, mode: str = "exact"):
        if mode not in ("exact", "stateful"):
            raise ValueError(f"unknown streaming mode {mode!r}; expected 'exact' or 'stateful'")
        self._scorer = scorer
        self.mode = mode
        self._threshold = scorer.threshold
        self._n_features = len(scorer.features)
        self._slots: dict[Hashable, int] = {}  # stream id -> row in the per-stream arrays
        self._rings: list[StreamScorer] = []  # exact mode
        self._counts = np.zeros(0, dtype=np.int64)  # stateful mode: samples seen per slot
        self._states: list[np.ndarray] = []  # stateful mode: per layer [1, slots, u]
        self._model = scorer.step_model() if mode == "stateful" else None

    @property
    def streams(self) -> list:
        return list(self._slots)

    def samples_seen(self, stream: Hashable) -> int:
        slot = self._slots.get(stream)
        if slot is None:
            return 0
        return self._rings[slot].samples_seen if self.mode == "exact" else int(self._counts[slot])

    def push(self, stream: Hashable, sample) -> StreamEvent | None:
        events = self.push_many([(stream, sample)])
        return events[0] if events else None

    def push_many(self, items: Iterable[tuple[Hashable, object]]) -> list[StreamEvent]:
        """Samples ``(stream_id, F values)`` in arrival order -> the events they complete, in that order.

        Every sample is checked first: a bad one raises ValueError naming its stream and nothing is consumed.
        """
        items = list(items)
        if not items:
            return []
        streams = [stream for stream, _ in items]
        rows = self._checked([sample for _, sample in items], streams)
        scaled = self._scorer.manifest.scaler.transform(rows)
        slots = np.fromiter((self._slot(stream) for stream in streams), dtype=np.int64, count=len(streams))
        if self.mode == "exact":
            return self._exact(streams, slots, scaled)
        return self._stateful(streams, slots, scaled)

    def reset(self, stream: Hashable | None = None) -> None:
        """Forget one stream's past (or every stream's)."""
        slots = list(self._slots.values()) if stream is None else [self._slots[stream]]
        for slot in slots:
            if self.mode == "exact":
                self._rings[slot].reset()
            else:
                self._counts[slot] = 0
                for s in self._states:
                    s[:, slot] = 0.0

    def _checked(self, samples: list, streams: list) -> np.ndarray:
        try:
            rows = np.asarray(samples, dtype=np.float32)
        except ValueError:  # ragged: some sample has the wrong number of values
            rows = None
        if rows is None or rows.ndim != 2 or rows.shape[1] != self._n_features:
            for stream, sample in zip(streams, samples):
                shape = np.shape(sample)
                if shape != (self._n_features,):
                    raise ValueError(f"stream {stream!r}: expected {self._n_features} values per sample, "
                                     f"got shape {list(shape)}")
            raise ValueError(f"samples must each be {self._n_features} numbers")
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            raise ValueError(f"stream {streams[int(np.argmin(finite))]!r}: sample holds NaN or infinite values")
        return rows

    def _slot(self, stream: Hashable) -> int:
        slot = self._slots.get(stream)
        if slot is not None:
            return slot
        slot = len(self._slots)
        self._slots[stream] = slot
        if self.mode == "exact":
            self._rings.append(StreamScorer(self._scorer))
        elif slot >= len(self._counts):  # grow by doubling: streams appear one by one
            grow = max(8, len(self._counts))
            self._counts = np.concatenate([self._counts, np.zeros(grow, np.int64)])
            extra = self._model.zero_states(grow)
            self._states = extra if not self._states else [
                np.concatenate([old, new], axis=1) for old, new in zip(self._states, extra)
            ]
        return slot

    def _exact(self, streams: list, slots: np.ndarray, scaled: np.ndarray) -> list[StreamEvent]:
        # Windows are copied out as they complete: a stream with several samples in the burst moves its ring on.
        batch = np.empty((len(streams), self._scorer.window, self._n_features), dtype=np.float32)
        found = []  # (position in the burst, sample index in its stream)
        for pos, slot in enumerate(slots):
            ring = self._rings[slot]
            window = ring.advance(scaled[pos])
            if window is not None:
                batch[len(found)] = window
                found.append((pos, ring.samples_seen - 1))
        if not found:
            return []
        scores = self._scorer._run_scaled(batch[: len(found)])
        return [StreamEvent(streams[pos], index, float(v), bool(v >= self._threshold))
                for (pos, index), v in zip(found, scores)]

    def _stateful(self, streams: list, slots: np.ndarray, scaled: np.ndarray) -> list[StreamEvent]:
        window, stride = self._scorer.window, self._scorer.stride
        # Round r holds each stream's r-th sample of the burst: one step call advances them all.
        rounds = np.empty(len(slots), dtype=np.int64)
        seen: dict[int, int] = {}
        for pos, slot in enumerate(slots):
            rounds[pos] = seen.get(slot, 0)
            seen[slot] = rounds[pos] + 1
        found = []
        for r in range(int(rounds.max()) + 1):
            pos = np.flatnonzero(rounds == r) if len(seen) < len(slots) else np.arange(len(slots))
            idx = slots[pos]
            score, new_states = self._model.step(np.ascontiguousarray(scaled[pos]), [s[:, idx] for s in self._states])
            for layer, new in zip(self._states, new_states):
                layer[:, idx] = new
            index = self._counts[idx].copy()
            self._counts[idx] += 1
            ends = (index >= window - 1) & ((index - (window - 1)) % stride == 0)
            score = np.ravel(score)
            for j in np.flatnonzero(ends):
                v = float(score[j])
                found.append((int(pos[j]), StreamEvent(streams[pos[j]], int(index[j]), v, v >= self._threshold)))
        found.sort(key=lambda pe: pe[0])
        return [event for _, event in found]


def rows_with_stream(reader: CsvRowReader, column: str) -> Iterator[tuple[str | None, Row | RowError]]:
    """``(stream id, row)`` for each data line of ``reader``; the id is the raw cell of ``column``."""
    header = reader.columns.header
    if column not in header:
        raise InputError(f"{where(reader.source, 1)}: no stream column {column!r}; the header has {list(header)}")
    if column in reader.columns.feature_names:
        raise InputError(f"{where(reader.source, 1)}: stream column {column!r} is one of the model's features")
    idx = header.index(column)
    for raw in _lines(reader.stream):
        reader.lines_read += 1
        if not raw.strip():
            continue
        row = reader.parse(raw, reader.lines_read)
        if isinstance(row, RowError):
            yield None, row
            continue
        stream = split_line(raw, reader.delimiter)[idx]
        if not stream:
            yield None, RowError(row.line, f"{where(reader.source, row.line, column)}: empty stream id", column)
            continue
        yield stream, row


def _lines(stream) -> Iterator[str]:
    # readline() hands over each line as soon as it arrives on a pipe (as CsvRowReader does).
    while True:
        line = stream.readline()
        if not line:
            return
        yield line
