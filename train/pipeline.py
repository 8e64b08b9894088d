"""The training job: CSV -> clean -> time split -> scale (train only) -> windows -> GRU -> threshold -> metrics.

Leakage rules: the split is by time, each part is windowed on its own (no window straddles two
parts), the scaler sees only the training part, and the threshold only the validation part. The
test part is touched once, for the reported metrics.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..edge_runtime.fsutil import sha256_file, staged_directory
from ..edge_runtime.scaler import StandardScaler
from ..edge_runtime.windows import sliding_windows, window_labels
from .data import Dataset, load_csv, time_split
from .metrics import detection_metrics
from .model import REFERENCE_UNITS, build_classifier, predict_scores
from .normal_only import DEFAULT_STEPS
from .record import HOLDOUT_NAME, MODEL_NAME, RECORD_NAME, Holdout, Run, TrainRecord
from .thresholds import best_f1_threshold, far_threshold

# Rows of the training part kept with the run as representative inputs (quantization calibration).
_TRAIN_TAIL_ROWS = 2048


class TrainError(ValueError):
    """The data cannot train the requested model (e.g. no labels, too few rows for the window)."""


@dataclass
class TrainConfig:
    data: str
    features: list | None = None
    label_column: str | None = None
    timestamp_column: str | None = None
    delimiter: str | None = None
    max_gap: int = 5
    window: int = 64
    stride: int = 1  # scoring stride written into the bundle
    train_stride: int = 1  # stride of training windows (>1 trades accuracy for speed on long series)
    split: tuple = (0.7, 0.15, 0.15)
    units: tuple = REFERENCE_UNITS
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 4
    class_weight: bool = True
    threshold: str = "best-f1"  # or "far"
    target_far: float = 0.01
    seed: int = 0
    extra: dict = field(default_factory=dict)
    # "classifier" learns labels; "normal-only" forecasts normal behaviour and scores the error
    # (gru_edge.train.normal_only). The three fields below apply to normal-only only.
    mode: str = "classifier"
    target: str = "delta"  # forecast the next sample's change ("delta") or the sample itself ("next")
    error_steps: int = DEFAULT_STEPS  # forecast errors of the window's last samples averaged into the score
    threshold_factor: float = 1.0  # normal-only quantile rule: factor x the (1 - target_far) quantile


def train(config: TrainConfig, out_dir: str | Path, log: Callable[[str], None] = print) -> Run:
    started = time.perf_counter()
    data = load_csv(
        config.data,
        features=config.features,
        label_column=config.label_column or default_label_column(config.data, config.delimiter),
        timestamp_column=config.timestamp_column,
        delimiter=config.delimiter,
        max_gap=config.max_gap,
    )
    for line in data.report.lines():
        log(f"data: {line}")
    if config.mode == "normal-only":
        from .normal_only_run import fit_normal_only

        return fit_normal_only(config, data.values, data.labels, data.feature_names, _split(data, config), out_dir,
                               log, source=str(config.data), cleaning=data.report.lines())
    if config.mode != "classifier":
        raise TrainError(f"unknown mode {config.mode!r}; expected 'classifier' or 'normal-only'")
    if data.labels is None:
        raise TrainError(
            f"{config.data}: no label column; the classifier needs 0/1 labels: pass --label-column NAME"
        )
    parts = _split(data, config)
    scaler = StandardScaler.fit(data.values[parts["train"]])
    windows = {}
    for name, rows in parts.items():
        stride = config.train_stride if name == "train" else 1
        scaled = scaler.transform(data.values[rows])
        windows[name] = (
            np.ascontiguousarray(sliding_windows(scaled, config.window, stride)),
            window_labels(data.labels[rows], config.window, stride).astype(np.float32),
        )
    x_train, y_train = windows["train"]
    x_val, y_val = windows["validation"]
    x_test, y_test = windows["test"]
    for name, (_, y) in windows.items():
        log(f"{name}: {len(y)} windows, {int(y.sum())} anomalous")
    if y_train.sum() == 0 or y_train.sum() == len(y_train):
        raise TrainError(f"{config.data}: the training part has only one class; a classifier needs both")

    import keras  # heavy: only once the data is known to be usable

    keras.utils.set_random_seed(config.seed)
    model = build_classifier(config.window, len(data.feature_names), tuple(config.units), config.learning_rate)
    class_weight = _balanced_weights(y_train) if config.class_weight else None
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    ]
    fit = model.fit(
        x_train, y_train,
        validation_data=(x_val, y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=class_weight,
        callbacks=callbacks,
        shuffle=True,
        verbose=0,
    )
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    log(f"trained {len(history.get('loss', []))} epochs, best val_loss {min(history.get('val_loss', [np.nan])):.4f}")

    val_scores = predict_scores(model, x_val)
    threshold, rule = _calibrate(config, y_val, val_scores)
    test_scores = predict_scores(model, x_test)
    metrics = {
        "validation": detection_metrics(y_val, val_scores, threshold),
        "test": detection_metrics(y_test, test_scores, threshold),
    }
    t = metrics["test"]
    log(f"threshold {threshold:.4f} ({rule}); test precision {t['precision']:.3f} recall {t['recall']:.3f} f1 {t['f1']:.3f}")

    out_dir = Path(out_dir)
    with staged_directory(out_dir) as stage:
        model.save(stage / MODEL_NAME)
        Holdout(
            validation=data.values[parts["validation"]],
            validation_labels=data.labels[parts["validation"]],
            test=data.values[parts["test"]],
            test_labels=data.labels[parts["test"]],
            train_tail=data.values[parts["train"]][-_TRAIN_TAIL_ROWS:],
        ).save(stage / HOLDOUT_NAME)
        record = TrainRecord(
            mode="classifier",
            features=list(data.feature_names),
            window=config.window,
            stride=config.stride,
            scaler=scaler,
            score_kind="probability",
            threshold=threshold,
            threshold_rule=rule,
            units=[int(u) for u in config.units],
            metrics=metrics,
            source=str(config.data),
            split_rows={k: [v.start, v.stop] for k, v in parts.items()},
            toolkit_version=__version__,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            model_sha256=sha256_file(stage / MODEL_NAME),
            params=int(model.count_params()),
            history=history,
            cleaning=data.report.lines(),
            config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
            duration_s=round(time.perf_counter() - started, 2),
        )
        (stage / RECORD_NAME).write_text(record.to_json(), encoding="utf-8")
    return Run(out_dir, record)


def default_label_column(path: str, delimiter: str | None) -> str | None:
    """Use a column literally named like a label when the user names none (the synth data's `label`)."""
    from ..edge_runtime.csv_input import sniff_delimiter

    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline()
    except OSError:
        return None  # load_csv reports the unreadable file with its own clear error
    names = [h.strip().strip('"') for h in header.rstrip("\r\n").split(delimiter or sniff_delimiter(header))]
    for candidate in ("label", "anomaly", "is_anomaly"):
        for name in names:
            if name.lower() == candidate:
                return name
    return None


def _split(data: Dataset, config: TrainConfig) -> dict[str, slice]:
    train_rows, val_rows, test_rows = time_split(len(data.values), tuple(config.split))
    parts = {"train": train_rows, "validation": val_rows, "test": test_rows}
    for name, rows in parts.items():
        if rows.stop - rows.start < config.window + 1:
            raise TrainError(
                f"{config.data}: the {name} part has {rows.stop - rows.start} rows, fewer than window "
                f"{config.window} + 1; use more data, a smaller --window, or other --split fractions"
            )
    return parts


def _balanced_weights(y: np.ndarray) -> dict[int, float]:
    n, pos = len(y), float(np.sum(y))
    return {0: n / (2.0 * (n - pos)), 1: n / (2.0 * pos)}


def _calibrate(config: TrainConfig, y_val: np.ndarray, val_scores: np.ndarray) -> tuple[float, str]:
    if config.threshold == "far" or not np.any(y_val):
        normal = val_scores[y_val == 0]
        return far_threshold(normal, config.target_far), f"false-alarm rate {config.target_far} on validation"
    if config.threshold != "best-f1":
        raise TrainError(f"unknown threshold rule {config.threshold!r}; expected 'best-f1' or 'far'")
    return best_f1_threshold(y_val, val_scores), "best F1 on validation"
