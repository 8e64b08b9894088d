"""The training record (``RUN_DIR/train.json``) and the run directory layout.

Export reads a run only through this module, so what training promises and what export relies on
are written down once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..edge_runtime.scaler import StandardScaler

RECORD_VERSION = 1
RECORD_NAME = "train.json"
MODEL_NAME = "model.keras"
# Held-out raw samples kept with the run so export can check parity and pick golden probes
# without the original CSV (which may live elsewhere or be gone).
HOLDOUT_NAME = "holdout.npz"


class RunError(ValueError):
    """A run directory is missing pieces or holds a record this version cannot read."""


@dataclass
class TrainRecord:
    mode: str  # "classifier" or "normal-only"
    features: list
    window: int
    stride: int
    scaler: StandardScaler
    score_kind: str  # manifest ScoreSpec.kind
    threshold: float
    threshold_rule: str  # e.g. "best-f1 on validation"
    units: list
    metrics: dict  # {"validation": {...}, "test": {...}}
    source: str
    split_rows: dict  # part -> [start, stop) rows of the cleaned series
    toolkit_version: str
    created_at: str
    model_file: str = MODEL_NAME
    model_sha256: str = ""
    params: int = 0
    history: dict = field(default_factory=dict)
    cleaning: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    duration_s: float = 0.0
    # Normal-only runs: how forecast errors become the score (gru_edge.train.normal_only.ErrorHead.to_dict():
    # target, smoothing steps, per-feature error offset and scale); empty for the classifier.
    error_head: dict = field(default_factory=dict)
    record_version: int = RECORD_VERSION

    def to_json(self) -> str:
        d = asdict(self)
        d["scaler"] = self.scaler.to_dict()
        return json.dumps(d, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = RECORD_NAME) -> "TrainRecord":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise RunError(f"{source}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
        if not isinstance(d, dict) or d.get("record_version") != RECORD_VERSION:
            got = d.get("record_version") if isinstance(d, dict) else type(d).__name__
            raise RunError(f"{source}: expected record_version {RECORD_VERSION}, got {got!r}")
        try:
            d["scaler"] = StandardScaler.from_dict(d["scaler"])
            return cls(**d)
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{source}: invalid training record: {e}") from e


@dataclass(frozen=True)
class Holdout:
    """Raw (unscaled) held-out series; labels are None when the run had none."""

    validation: np.ndarray
    validation_labels: np.ndarray | None
    test: np.ndarray
    test_labels: np.ndarray | None
    train_tail: np.ndarray  # the last training rows: representative inputs for calibration

    def save(self, path: Path) -> None:
        arrays = {"validation": self.validation, "test": self.test, "train_tail": self.train_tail}
        if self.validation_labels is not None:
            arrays["validation_labels"] = self.validation_labels
        if self.test_labels is not None:
            arrays["test_labels"] = self.test_labels
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> "Holdout":
        with np.load(path, allow_pickle=False) as z:
            return cls(
                validation=z["validation"],
                validation_labels=z["validation_labels"] if "validation_labels" in z else None,
                test=z["test"],
                test_labels=z["test_labels"] if "test_labels" in z else None,
                train_tail=z["train_tail"],
            )


@dataclass(frozen=True)
class Run:
    dir: Path
    record: TrainRecord

    @property
    def model_path(self) -> Path:
        return self.dir / self.record.model_file

    def holdout(self) -> Holdout:
        return Holdout.load(self.dir / HOLDOUT_NAME)

    def load_model(self):
        from .model import load_model

        return load_model(self.model_path)


def open_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    record_path = run_dir / RECORD_NAME
    if not record_path.is_file():
        raise RunError(f"{run_dir}: not a training run (no {RECORD_NAME}); create one with `gru-edge train`")
    record = TrainRecord.from_json(record_path.read_text(encoding="utf-8"), source=str(record_path))
    for name in (record.model_file, HOLDOUT_NAME):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir}: run is incomplete: {name} is missing")
    return Run(run_dir, record)
