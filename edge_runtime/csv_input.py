"""Reading sensor CSVs: the one parser the gateway loop and the training loader share.

- A header line naming the columns is required (line 1 after any blank lines); rows follow.
- The delimiter is sniffed from the header when not given (``,`` ``;`` tab ``|``).
- Rows are read line by line so a pipe (``sys.stdin``) is scored as it arrives; one line is one
  row, so a quoted field may hold the delimiter but not a newline.
- A bad row is *yielded* as a :class:`RowError`, never raised: the gateway reports it and goes
  on, while the training loader turns it into an :class:`InputError` and stops.

Line numbers are 1-based and count every physical line, the header included, so they match what
an editor shows.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, TextIO

import numpy as np

DEFAULT_DELIMITERS = ",;\t|"
TIMESTAMP_NAMES = ("timestamp", "time", "datetime", "date")
# Cells meaning "no reading". Compared lower-cased; the empty string is the usual one.
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})
_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


class InputError(ValueError):
    """The input cannot be read; the message says where (source, line, column) and why."""


def where(source: str, line: int | None = None, column: str | None = None) -> str:
    """``"data.csv, line 7, column 'temp'"`` -- the prefix every message starts with."""
    parts = [source or "<input>"]
    if line is not None:
        parts.append(f"line {line}")
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Row:
    line: int
    timestamp: str | None  # the raw cell text; None when there is no timestamp column
    values: np.ndarray  # float64 [F], NaN where a cell was missing (allow_missing=True only)
    label: float | None  # None when there is no label column; NaN when missing (allow_missing)


@dataclass(frozen=True)
class RowError:
    """A line that could not be turned into a :class:`Row`; ``message`` is complete and printable."""

    line: int
    message: str
    column: str | None = None

    def to_exception(self) -> InputError:
        return InputError(self.message)


@dataclass(frozen=True)
class ColumnMap:
    header: tuple[str, ...]
    feature_idx: tuple[int, ...]
    feature_names: tuple[str, ...]
    timestamp_idx: int | None
    label_idx: int | None

    @property
    def timestamp_name(self) -> str | None:
        return None if self.timestamp_idx is None else self.header[self.timestamp_idx]

    @property
    def label_name(self) -> str | None:
        return None if self.label_idx is None else self.header[self.label_idx]


def sniff_delimiter(header_line: str, candidates: str = DEFAULT_DELIMITERS) -> str:
    """The candidate that occurs most often in the header (outside quotes); ``,`` if none does.

    The header is the best line to sniff: names rarely contain delimiters, while numbers with a
    decimal comma would fool a count over data rows.

    >>> sniff_delimiter("datetime;Accelerometer1RMS;Current"), sniff_delimiter("a,b"), sniff_delimiter("a")
    (';', ',', ',')
    """
    counts = {c: 0 for c in candidates}
    in_quotes = False
    for ch in header_line:
        if ch == '"':
            in_quotes = not in_quotes
        elif not in_quotes and ch in counts:
            counts[ch] += 1
    best = max(candidates, key=lambda c: counts[c], default=",")  # ties: first candidate wins
    return best if counts.get(best, 0) > 0 else ","


def split_line(line: str, delimiter: str) -> list[str]:
    """One physical line -> stripped fields (quotes honoured; CR/LF dropped)."""
    line = line.rstrip("\r\n")
    fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
    return [f.strip() for f in fields]


def resolve_columns(
    header: Sequence[str],
    features: Sequence[str] | str | None = None,
    timestamp_column: str | None = None,
    label_column: str | None = None,
    source: str = "",
) -> ColumnMap:
    """Map column names to positions.

    ``features``: names in model input order (a str is read as a comma-separated list); ``None``
    takes every named column except timestamp and label (use :func:`infer_numeric_columns` first
    when the file may hold text columns). ``timestamp_column``: a name, ``None`` to auto-detect one
    of ``TIMESTAMP_NAMES`` (case-insensitive), or ``""`` for none.
    """
    header = tuple(h.strip().lstrip("\ufeff") for h in header)
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        # Unnamed columns (a trailing delimiter, a pandas index) may repeat; they are never
        # chosen automatically, so the repeat cannot confuse anything.
        if name and name in seen:
            raise InputError(
                f"{where(source, 1)}: duplicate column name {name!r} (columns {seen[name] + 1} and {i + 1}); "
                "column names must be unique"
            )
        seen[name] = i
    index = {name: i for i, name in enumerate(header) if name}

    def lookup(name: str, role: str) -> int:
        if name not in index:
            raise InputError(f"{where(source, 1)}: no {role} column {name!r}; the header has {_names(header)}")
        return index[name]

    if isinstance(features, str):
        features = [f.strip() for f in features.split(",") if f.strip()]
    wanted = None if features is None else [str(f).strip() for f in features]

    label_idx = lookup(label_column, "label") if label_column else None
    if timestamp_column:
        timestamp_idx: int | None = lookup(timestamp_column, "timestamp")
    elif timestamp_column is None:
        # Auto-detection never takes a column the caller asked for as a feature or label.
        taken = set(wanted or ()) | ({label_column} if label_column else set())
        timestamp_idx = next(
            (i for i, h in enumerate(header) if h.lower() in TIMESTAMP_NAMES and h not in taken), None
        )
    else:
        timestamp_idx = None
    if timestamp_idx is not None and timestamp_idx == label_idx:
        raise InputError(f"{where(source, 1)}: column {header[label_idx]!r} cannot be both timestamp and label")

    if wanted is None:
        feature_idx = [i for i, h in enumerate(header) if h and i not in (timestamp_idx, label_idx)]
    else:
        if not wanted:
            raise InputError(f"{where(source)}: the feature list is empty")
        dupes = sorted({f for f in wanted if wanted.count(f) > 1})
        if dupes:
            raise InputError(f"{where(source)}: feature(s) listed twice: {', '.join(map(repr, dupes))}")
        missing = [f for f in wanted if f not in index]
        if missing:
            raise InputError(
                f"{where(source, 1)}: missing feature column(s) {', '.join(map(repr, missing))}; "
                f"the header has {_names(header)}"
            )
        feature_idx = [index[f] for f in wanted]
        for role, idx in (("label", label_idx), ("timestamp", timestamp_idx)):
            if idx is not None and idx in feature_idx:
                raise InputError(f"{where(source, 1)}: column {header[idx]!r} is the {role} column and cannot also be a feature")
    if not feature_idx:
        raise InputError(f"{where(source, 1)}: no feature columns left; the header has {_names(header)}")
    return ColumnMap(
        header=header,
        feature_idx=tuple(feature_idx),
        feature_names=tuple(header[i] for i in feature_idx),
        timestamp_idx=timestamp_idx,
        label_idx=label_idx,
    )


def infer_numeric_columns(header: Sequence[str], sample_rows: Iterable[Sequence[str]]) -> list[str]:
    """Names of the columns whose non-empty cells in ``sample_rows`` (split fields) all parse as
    finite floats. A column with no value at all in the sample is not called numeric: there is
    no evidence. Rows of the wrong length are skipped (the reader reports them later).

    >>> infer_numeric_columns(["t", "a", "b", "c"], [["x", "1", "ok", ""], ["y", "2.5", "3", ""]])
    ['a']
    """
    header = [h.strip().lstrip("\ufeff") for h in header]
    numeric = [True] * len(header)
    seen_value = [False] * len(header)
    for fields in sample_rows:
        if len(fields) != len(header):
            continue
        for i, cell in enumerate(fields):
            cell = cell.strip()
            if not numeric[i] or cell.lower() in MISSING_TOKENS:
                continue
            seen_value[i] = True
            if _to_float(cell) is None:
                numeric[i] = False
    return [h for h, num, seen in zip(header, numeric, seen_value) if h and num and seen]


def read_header(stream: TextIO, source: str, delimiter: str | None = None) -> tuple[tuple[str, ...], str, int]:
    """Read up to and including the header line: ``(names, delimiter, header_line_number)``."""
    line_no = 0
    for raw in _lines(stream):
        line_no += 1
        text = raw.lstrip("\ufeff").strip()  # a BOM from spreadsheet exports
        if not text:
            continue
        delim = delimiter or sniff_delimiter(text)
        names = tuple(split_line(text, delim))
        if all(_to_float(n) is not None for n in names):
            raise InputError(
                f"{where(source, line_no)}: this looks like data ({text[:60]!r}), not a header; a header line "
                "naming the columns is required as the first line"
            )
        return names, delim, line_no
    raise InputError(f"{where(source)}: empty input; a header line naming the columns is required as the first line")


class CsvRowReader:
    """Streams :class:`Row` / :class:`RowError` from a text stream whose header was already read.

    Build it with :meth:`open`. Iterate once; ``lines_read`` says how far it got.
    """

    def __init__(
        self,
        stream: TextIO,
        source: str,
        columns: ColumnMap,
        delimiter: str,
        header_line: int = 1,
        allow_missing: bool = False,
    ) -> None:
        self.stream = stream
        self.source = source
        self.columns = columns
        self.delimiter = delimiter
        self.allow_missing = allow_missing
        self.lines_read = header_line

    @classmethod
    def open(
        cls,
        stream: TextIO,
        source: str,
        features: Sequence[str] | str | None = None,
        timestamp_column: str | None = None,
        label_column: str | None = None,
        delimiter: str | None = None,
        allow_missing: bool = False,
    ) -> "CsvRowReader":
        """Read the header (sniffing the delimiter when ``None``), resolve columns, ready to stream."""
        header, delim, header_line = read_header(stream, source, delimiter)
        columns = resolve_columns(header, features, timestamp_column, label_column, source)
        return cls(stream, source, columns, delim, header_line, allow_missing)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.columns.feature_names

    def __iter__(self) -> Iterator[Row | RowError]:
        for raw in _lines(self.stream):
            self.lines_read += 1
            if not raw.strip():
                continue
            yield self.parse(raw, self.lines_read)

    def parse(self, raw: str, line: int) -> Row | RowError:
        """One physical line -> a Row, or a RowError saying what is wrong with it."""
        cols = self.columns
        try:
            fields = split_line(raw, self.delimiter)
        except csv.Error as e:  # e.g. a NUL byte
            return RowError(line, f"{where(self.source, line)}: cannot split the line: {e}")
        if len(fields) != len(cols.header):
            hint = "" if self.delimiter in raw else f" (no {self.delimiter!r} in the line: wrong delimiter?)"
            return RowError(
                line,
                f"{where(self.source, line)}: expected {len(cols.header)} fields as in the header, "
                f"got {len(fields)}{hint}",
            )
        values = np.empty(len(cols.feature_idx), dtype=np.float64)
        for k, i in enumerate(cols.feature_idx):
            v = self._number(fields[i], line, cols.header[i])
            if isinstance(v, RowError):
                return v
            values[k] = v
        label = None
        if cols.label_idx is not None:
            label = self._number(fields[cols.label_idx], line, cols.header[cols.label_idx], boolean=True)
            if isinstance(label, RowError):
                return label
        timestamp = None if cols.timestamp_idx is None else fields[cols.timestamp_idx]
        return Row(line, timestamp, values, label)

    def _number(self, cell: str, line: int, column: str, boolean: bool = False) -> float | RowError:
        if cell.lower() in MISSING_TOKENS:
            if self.allow_missing:
                return math.nan
            return RowError(line, f"{where(self.source, line, column)}: expected a number, got {cell!r} (missing value)", column)
        if boolean and cell.lower() in _TRUE:
            return 1.0
        if boolean and cell.lower() in _FALSE:
            return 0.0
        v = _to_float(cell)
        if v is None:
            hint = ""
            if "," in cell and _to_float(cell.replace(",", ".", 1)) is not None:
                hint = " (a decimal comma? use '.' as the decimal point)"
            elif _is_nonfinite(cell):
                hint = " (infinite values are not accepted)"
            return RowError(line, f"{where(self.source, line, column)}: expected a number, got {cell!r}{hint}", column)
        return v


def _lines(stream: TextIO) -> Iterator[str]:
    # readline() rather than iteration: it hands over each line as soon as it arrives on a pipe.
    readline = getattr(stream, "readline", None)
    if readline is None:
        yield from stream
        return
    while True:
        line = readline()
        if not line:
            return
        yield line


def _to_float(text: str) -> float | None:
    """A finite float, or None. Python's float() also takes '1_000' and 'inf'; sensors mean neither."""
    if "_" in text:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _is_nonfinite(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def _names(header: Sequence[str]) -> str:
    shown = ", ".join(repr(h) for h in header[:30])
    more = f", ... ({len(header)} columns)" if len(header) > 30 else ""
    return f"[{shown}{more}]"
