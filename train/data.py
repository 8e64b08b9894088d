"""Loading a training CSV into a clean ``[n, F]`` series, and splitting it in time.

Parsing is the runtime's (:mod:`gru_edge.edge_runtime.csv_input`), so training and the gateway read
files the same way. Training is strict where the gateway is lenient: any bad line is an error,
since a model fitted around silently skipped rows would not be the model you think it is.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..edge_runtime.csv_input import (
    CsvRowReader,
    InputError,
    RowError,
    infer_numeric_columns,
    read_header,
    resolve_columns,
    split_line,
    where,
)

# Rows looked at to decide which columns are numeric when features are not named.
INFER_ROWS = 200
ON_LONG_GAP = ("error", "drop")


@dataclass
class CleaningReport:
    interpolated: dict[str, int] = field(default_factory=dict)  # column -> cells filled
    long_gaps: list[tuple[str, int, int]] = field(default_factory=list)  # (column, first_line, last_line)
    constant_columns: list[str] = field(default_factory=list)
    dropped_rows: int = 0
    # Columns left out of the automatic feature choice because they hold text.
    skipped_columns: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.skipped_columns:
            out.append(f"ignored non-numeric column(s): {', '.join(self.skipped_columns)}")
        filled = {k: v for k, v in self.interpolated.items() if v}
        if filled:
            detail = ", ".join(f"{k} ({v})" for k, v in filled.items())
            out.append(f"interpolated {sum(filled.values())} missing cell(s): {detail}")
        for col, first, last in self.long_gaps:
            out.append(f"long gap in {col}: lines {first}-{last} ({last - first + 1} lines)")
        if self.dropped_rows:
            out.append(f"dropped {self.dropped_rows} row(s) inside long gaps")
        if self.constant_columns:
            out.append(f"constant column(s) (carry no information): {', '.join(self.constant_columns)}")
        return out or ["clean: no missing values, no constant columns"]


@dataclass
class Dataset:
    source: str
    feature_names: tuple[str, ...]
    values: np.ndarray  # [n, F] float64, no NaN
    labels: np.ndarray | None  # [n] int8 (0/1)
    timestamps: list[str] | None
    lines: np.ndarray  # [n] int64, source line of each row
    report: CleaningReport

    def __len__(self) -> int:
        return int(self.values.shape[0])


def load_csv(
    path: str | os.PathLike,
    features: Sequence[str] | str | None = None,
    label_column: str | None = None,
    timestamp_column: str | None = None,
    delimiter: str | None = None,
    max_gap: int = 5,
    on_long_gap: str = "error",
    exclude: Sequence[str] = (),
) -> Dataset:
    """Read, validate and clean a training CSV.

    ``features=None`` takes every numeric column (judged on the first ``INFER_ROWS`` rows)
    except the timestamp and label. Missing cells in runs of at most ``max_gap`` rows are
    interpolated linearly per column (by row position: the samples are taken as evenly spaced);
    longer runs raise (``on_long_gap="error"``) or have their rows dropped (``"drop"``).
    ``exclude`` names columns never chosen automatically, e.g. SKAB's second label column
    ``changepoint``, which would otherwise leak the answer into the inputs.
    """
    source = str(path)
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 0:
        raise ValueError(f"max_gap must be an integer >= 0, got {max_gap!r}")
    if on_long_gap not in ON_LONG_GAP:
        raise ValueError(f"on_long_gap must be one of {ON_LONG_GAP}, got {on_long_gap!r}")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{source}: no such file")
    if p.is_dir():
        raise InputError(f"{source}: is a directory, expected a CSV file")

    report = CleaningReport()
    try:
        with open(p, encoding="utf-8-sig", newline="") as stream:
            if features is None:
                features, report.skipped_columns = _numeric_features(
                    stream, source, timestamp_column, label_column, delimiter, exclude
                )
                stream.seek(0)
            reader = CsvRowReader.open(
                stream, source, features, timestamp_column, label_column, delimiter, allow_missing=True
            )
            cols = reader.columns
            rows = []
            for item in reader:
                if isinstance(item, RowError):
                    raise item.to_exception()
                rows.append(item)
    except UnicodeDecodeError as e:
        raise InputError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{source}: cannot read: {e.strerror or e}") from None

    if len(rows) < 2:
        raise InputError(f"{source}: needs at least 2 data rows, got {len(rows)}")

    names = cols.feature_names
    values = np.stack([r.values for r in rows])
    lines = np.array([r.line for r in rows], dtype=np.int64)
    timestamps = [r.timestamp or "" for r in rows] if cols.timestamp_idx is not None else None
    labels = _labels(rows, source, cols.label_name) if cols.label_idx is not None else None

    for j, name in enumerate(names):
        if np.isnan(values[:, j]).all():
            raise InputError(f"{source}, column {name!r}: has no values at all (every cell is missing)")

    long_rows = np.zeros(len(rows), dtype=bool)
    for j, name in enumerate(names):
        for start, stop in _nan_runs(values[:, j]):
            if stop - start > max_gap:
                report.long_gaps.append((name, int(lines[start]), int(lines[stop - 1])))
                long_rows[start:stop] = True
    if report.long_gaps and on_long_gap == "error":
        shown = "; ".join(f"column {c!r}, lines {a}-{b} ({_count(lines, a, b)} rows)" for c, a, b in report.long_gaps[:5])
        more = f"; and {len(report.long_gaps) - 5} more" if len(report.long_gaps) > 5 else ""
        raise InputError(
            f"{source}: missing values longer than max_gap={max_gap} rows: {shown}{more}. "
            "Fix the data, raise max_gap (interpolates longer runs), or use on_long_gap='drop' to drop those rows"
        )
    if long_rows.any():
        # Dropping rows joins the series across the gap: windows spanning the join see two
        # stretches of time glued together. Acceptable for rare gaps; a file full of them needs
        # splitting into separate series instead.
        keep = ~long_rows
        report.dropped_rows = int(long_rows.sum())
        values, lines = values[keep], lines[keep]
        labels = None if labels is None else labels[keep]
        timestamps = None if timestamps is None else list(itertools.compress(timestamps, keep))
        if values.shape[0] < 2:
            raise InputError(f"{source}: needs at least 2 data rows, got {values.shape[0]} after dropping long gaps")

    for j, name in enumerate(names):
        report.interpolated[name] = _interpolate(values[:, j])

    # Exact zero spread: the scaler will not divide by it, but the column is worth a warning.
    report.constant_columns = [name for j, name in enumerate(names) if np.ptp(values[:, j]) == 0]

    return Dataset(source, names, values, labels, timestamps, lines, report)


def time_split(n: int, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> tuple[slice, slice, slice]:
    """Contiguous train/validation/test slices in time order (no shuffling: later data must not
    leak into training).

    >>> time_split(20)
    (slice(0, 14, None), slice(14, 17, None), slice(17, 20, None))
    """
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3:
        raise ValueError(f"need 3 fractions (train, validation, test), got {len(fr)}")
    if not all(math.isfinite(f) and f > 0 for f in fr):
        raise ValueError(f"every fraction must be > 0, got {fr}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fr} (sum {sum(fr):.6g})")
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    n = int(n)
    a = int(round(n * fr[0]))
    b = int(round(n * (fr[0] + fr[1])))
    sizes = (a, b - a, n - b)
    if min(sizes) < 1:
        raise ValueError(f"{n} rows are too few to split by {fr}: the parts would have {sizes[0]}, {sizes[1]}, {sizes[2]} rows")
    return slice(0, a), slice(a, b), slice(b, n)


def _numeric_features(stream, source, timestamp_column, label_column, delimiter, exclude) -> tuple[list[str], list[str]]:
    header, delim, _ = read_header(stream, source, delimiter)
    cols = resolve_columns(header, None, timestamp_column, label_column, source)
    sample = []
    for raw in itertools.islice((ln for ln in stream if ln.strip()), INFER_ROWS):
        sample.append(split_line(raw, delim))
    numeric = set(infer_numeric_columns(header, sample))
    unknown = [e for e in exclude if e not in cols.header]
    if unknown:
        raise InputError(f"{where(source, 1)}: cannot exclude missing column(s) {', '.join(map(repr, unknown))}")
    numeric -= set(exclude)
    chosen = [n for n in cols.feature_names if n in numeric]
    skipped = [n for n in cols.feature_names if n not in numeric and n not in exclude]
    if not chosen:
        raise InputError(
            f"{where(source, 1)}: no numeric feature columns found in the first {INFER_ROWS} rows "
            f"(columns: {', '.join(map(repr, header))}); name the features explicitly"
        )
    return chosen, skipped


def _labels(rows, source: str, column: str) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.int8)
    for k, r in enumerate(rows):
        v = r.label
        if v is None or math.isnan(v):
            raise InputError(f"{where(source, r.line, column)}: missing label; every row needs 0 or 1")
        if v not in (0.0, 1.0):
            raise InputError(f"{where(source, r.line, column)}: expected a label 0 or 1 (or true/false), got {v:g}")
        out[k] = int(v)
    return out


def _nan_runs(col: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every maximal run of NaN."""
    isnan = np.concatenate([[False], np.isnan(col), [False]])
    edges = np.flatnonzero(np.diff(isnan.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _interpolate(col: np.ndarray) -> int:
    """Fill NaNs in place: linear between neighbours, nearest value at the edges. Returns the count."""
    nan = np.isnan(col)
    count = int(nan.sum())
    if count:
        idx = np.arange(col.shape[0])
        col[nan] = np.interp(idx[nan], idx[~nan], col[~nan])  # np.interp clamps outside = nearest edge
    return count


def _count(lines: np.ndarray, first: int, last: int) -> int:
    return int(((lines >= first) & (lines <= last)).sum())
