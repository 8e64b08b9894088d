"""Reading the SKAB and NAB corpora from their folders (the layouts in each PROVENANCE.md).

Both go through the training loader (:func:`gru_edge.train.data.load_csv`), so benchmark series are
parsed and cleaned exactly like a user's CSV.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..train.data import load_csv
from .nab_scoring import SeriesLabels

SKAB_GROUPS = ("valve1", "valve2", "other")
SKAB_LABEL = "anomaly"
SKAB_EXCLUDE = ("changepoint",)  # the second label column: as an input it would leak the answer
NAB_WINDOWS = Path("labels") / "combined_windows.json"


class DatasetError(ValueError):
    """The benchmark folder is missing or not laid out as expected."""


@dataclass
class Series:
    name: str  # path relative to the corpus's data folder, '/'-separated
    values: np.ndarray  # [n, F] float64
    labels: np.ndarray  # [n] int8 point labels (SKAB: anomaly column; NAB: 1 inside windows)
    timestamps: list  # [n] str
    feature_names: tuple


def _data_dir(root: str | Path, corpus: str) -> Path:
    root = Path(root)
    for candidate in (root / "data", root):
        if candidate.is_dir() and any(candidate.iterdir()):
            if corpus == "skab" and (candidate / "valve1").is_dir():
                return candidate
            if corpus == "nab" and (candidate / "realKnownCause").is_dir():
                return candidate
    raise DatasetError(
        f"{root}: not a {corpus.upper()} folder (expected data/{'valve1' if corpus == 'skab' else 'realKnownCause'}/ "
        f"inside it, e.g. ../shared/datasets/{corpus})"
    )


def skab_files(root: str | Path) -> list[Path]:
    """The 34 labelled SKAB files in a stable order: valve1, valve2, other; numerically within each."""
    data = _data_dir(root, "skab")
    files = []
    for group in SKAB_GROUPS:
        files += sorted((data / group).glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise DatasetError(f"{data}: no labelled SKAB files under {', '.join(SKAB_GROUPS)}")
    return files


def skab_anomaly_free(root: str | Path) -> Path:
    path = _data_dir(root, "skab") / "anomaly-free" / "anomaly-free.csv"
    if not path.is_file():
        raise DatasetError(f"{path}: missing (the anomaly-free variant needs it)")
    return path


def load_skab(path: Path, root: str | Path | None = None) -> Series:
    ds = load_csv(path, label_column=SKAB_LABEL if _has_column(path, SKAB_LABEL) else None,
                  delimiter=";", exclude=[c for c in SKAB_EXCLUDE if _has_column(path, c)])
    name = _relative(path, root)
    labels = ds.labels if ds.labels is not None else np.zeros(len(ds), dtype=np.int8)
    return Series(name, ds.values, labels, ds.timestamps or [], ds.feature_names)


def nab_files(root: str | Path) -> list[Path]:
    data = _data_dir(root, "nab")
    files = sorted(data.glob("*/*.csv"))
    if not files:
        raise DatasetError(f"{data}: no NAB series (*/*.csv)")
    return files


def nab_windows(root: str | Path) -> dict[str, list]:
    path = Path(root) / NAB_WINDOWS
    if not path.is_file():
        raise DatasetError(f"{path}: missing; NAB is scored against labels/combined_windows.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e


def load_nab(path: Path, root: str | Path, windows: dict[str, list]) -> tuple[Series, SeriesLabels]:
    name = _relative(path, _data_dir(root, "nab"))
    if name not in windows:
        raise DatasetError(f"{path}: no entry {name!r} in {NAB_WINDOWS}")
    ds = load_csv(path, features=["value"], timestamp_column="timestamp")
    stamps = [_parse_time(t, path) for t in ds.timestamps or []]
    rows = []
    for start, end in windows[name]:
        first = _exact_row(stamps, _parse_time(start, path), path)
        last = _exact_row(stamps, _parse_time(end, path), path)
        rows.append((first, last))
    labels = SeriesLabels(name, len(ds), tuple(rows))
    point = np.zeros(len(ds), dtype=np.int8)
    for first, last in rows:
        point[first : last + 1] = 1
    return Series(name, ds.values, point, ds.timestamps or [], ds.feature_names), labels


def _exact_row(stamps: list, moment: datetime, path: Path) -> int:
    """NAB enters and leaves a window on rows whose timestamps equal its limits."""
    i = int(np.searchsorted(np.array(stamps, dtype="datetime64[us]"), np.datetime64(moment, "us")))
    if i >= len(stamps) or stamps[i] != moment:
        raise DatasetError(f"{path}: window limit {moment} is not a row timestamp")
    return i


def _parse_time(text: str, path: Path) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise DatasetError(f"{path}: timestamp {text!r} is not 'YYYY-MM-DD hh:mm:ss[.ffffff]'") from None


def _relative(path: Path, root: str | Path | None) -> str:
    path = Path(path)
    for base in (Path(root) / "data", Path(root)) if root is not None else ():
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return f"{path.parent.name}/{path.name}"


def _has_column(path: Path, name: str) -> bool:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return name in [h.strip() for h in f.readline().rstrip("\r\n").split(";")]
