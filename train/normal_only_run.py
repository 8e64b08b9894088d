"""The normal-only training job on an already loaded series: fit -> error head -> threshold -> run directory.

Leakage rules are the classifier's (see :mod:`gru_edge.train.pipeline`): the scaler saw only the training
part; the forecaster learns from training windows that hold no labelled anomaly (every window when
there are no labels); the error scale and the threshold come from the validation part only; the
test part is scored once, for the reported figures.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..edge_runtime.fsutil import sha256_file, staged_directory
from ..edge_runtime.scaler import StandardScaler
from ..edge_runtime.windows import sliding_windows, window_labels
from .metrics import detection_metrics
from .normal_only import (
    DEFAULT_STEPS,
    ErrorHead,
    all_normal,
    build_forecaster,
    check_steps,
    error_scores,
    fit_error_head,
    predict_outputs,
    quantile_threshold,
    training_pairs,
)
from .pipeline import TrainError
from .record import HOLDOUT_NAME, MODEL_NAME, RECORD_NAME, Holdout, Run, TrainRecord
from .thresholds import best_f1_threshold

_TRAIN_TAIL_ROWS = 2048


class NormalOnlyError(TrainError):
    """The data cannot train a normal-only model (too few normal windows for the window size)."""


def fit_normal_only(config, values: np.ndarray, labels: np.ndarray | None, feature_names, parts: dict[str, slice],
                    out_dir: str | Path, log: Callable[[str], None] = print, source: str = "",
                    cleaning: list | None = None, scaler: StandardScaler | None = None) -> Run:
    """Train a normal-only forecaster on ``values[parts["train"]]`` and write a run directory.

    ``config`` is a :class:`gru_edge.train.pipeline.TrainConfig` (``target``, ``error_steps``,
    ``threshold``, ``target_far`` and ``threshold_factor`` are read). ``parts`` maps train / validation /
    test to row slices. ``scaler`` defaults to one fitted on the training part.
    """
    started = time.perf_counter()
    window, steps, target = int(config.window), int(config.error_steps or DEFAULT_STEPS), config.target
    try:
        check_steps(window, steps)
    except ValueError as e:
        raise NormalOnlyError(f"--error-steps: {e}") from None
    values = np.asarray(values, dtype=np.float64)
    scaler = scaler or StandardScaler.fit(values[parts["train"]])
    part = {name: (scaler.transform(values[rows]), None if labels is None else np.asarray(labels)[rows])
            for name, rows in parts.items()}

    x_train, y_train = training_pairs(part["train"][0], window, target, config.train_stride,
                                      normal=None if labels is None else part["train"][1] == 0)
    x_vpair, y_vpair = training_pairs(part["validation"][0], window, target, 1,
                                      normal=None if labels is None else part["validation"][1] == 0)
    if len(x_train) == 0:
        raise NormalOnlyError(f"{source}: no all-normal training window of {window + 1} samples; "
                              "use more data or a smaller --window")
    log(f"normal-only: {len(x_train)} training forecasts ({target}), {len(x_vpair)} validation forecasts")

    import keras

    keras.utils.set_random_seed(config.seed)
    model = build_forecaster(window, len(feature_names), tuple(config.units), config.learning_rate)
    callbacks = []
    validation = None
    if len(x_vpair):
        validation = (x_vpair, y_vpair)
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                       restore_best_weights=True))
    fit = model.fit(x_train, y_train, validation_data=validation, epochs=config.epochs, batch_size=config.batch_size,
                    callbacks=callbacks, shuffle=True, verbose=0)
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    log(f"trained {len(history.get('loss', []))} epochs, final loss {history['loss'][-1]:.4f}")

    windows = {name: np.ascontiguousarray(sliding_windows(scaled, window, 1)) for name, (scaled, _) in part.items()}
    outputs = {name: predict_outputs(model, w) for name, w in windows.items() if name != "train"}
    val_labels = None if labels is None else window_labels(part["validation"][1], window)
    val_normal = all_normal(part["validation"][1], len(part["validation"][0]), window)
    if val_normal.sum() < 2:
        raise NormalOnlyError(f"{source}: the validation part has {int(val_normal.sum())} all-normal windows of "
                              f"{window} samples; at least 2 are needed to standardise errors")
    head = fit_error_head(windows["validation"][val_normal], outputs["validation"][val_normal], target, steps)
    val_scores = error_scores(windows["validation"], outputs["validation"], head)
    threshold, rule = _calibrate(config, val_scores, val_normal, val_labels)
    test_scores = error_scores(windows["test"], outputs["test"], head)
    metrics = {"validation": _metrics(val_labels, val_scores, threshold),
               "test": _metrics(None if labels is None else window_labels(part["test"][1], window), test_scores,
                                threshold)}
    log(f"threshold {threshold:.4f} ({rule}); test {_summary(metrics['test'])}")

    out_dir = Path(out_dir)
    with staged_directory(out_dir) as stage:
        model.save(stage / MODEL_NAME)
        Holdout(
            validation=values[parts["validation"]],
            validation_labels=None if labels is None else np.asarray(labels)[parts["validation"]],
            test=values[parts["test"]],
            test_labels=None if labels is None else np.asarray(labels)[parts["test"]],
            train_tail=values[parts["train"]][-_TRAIN_TAIL_ROWS:],
        ).save(stage / HOLDOUT_NAME)
        record = TrainRecord(
            mode="normal-only",
            features=list(feature_names),
            window=window,
            stride=config.stride,
            scaler=scaler,
            score_kind="forecast_error",
            threshold=threshold,
            threshold_rule=rule,
            units=[int(u) for u in config.units],
            metrics=metrics,
            source=str(source or config.data),
            split_rows={k: [v.start, v.stop] for k, v in parts.items()},
            toolkit_version=__version__,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            model_sha256=sha256_file(stage / MODEL_NAME),
            params=int(model.count_params()),
            history=history,
            cleaning=list(cleaning or []),
            config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
            duration_s=round(time.perf_counter() - started, 2),
            error_head=head.to_dict(),
        )
        (stage / RECORD_NAME).write_text(record.to_json(), encoding="utf-8")
    return Run(out_dir, record)


def _calibrate(config, val_scores: np.ndarray, val_normal: np.ndarray, val_labels: np.ndarray | None) -> tuple[float, str]:
    if config.threshold == "best-f1" and val_labels is not None and np.any(val_labels):
        return best_f1_threshold(val_labels, val_scores), "best F1 on validation"
    if config.threshold not in ("best-f1", "far"):
        raise NormalOnlyError(f"unknown threshold rule {config.threshold!r}; expected 'best-f1' or 'far'")
    q = 1.0 - float(config.target_far)
    factor = float(config.threshold_factor)
    rule = f"{factor:g} x the {q:g} quantile of normal validation scores"
    return quantile_threshold(val_scores[val_normal], q, factor), rule


def _metrics(labels: np.ndarray | None, scores: np.ndarray, threshold: float) -> dict:
    if labels is not None and len(labels):
        return detection_metrics(labels, scores, threshold)
    alarms = scores >= threshold
    return {"threshold": float(threshold), "samples": int(len(scores)), "alarms": int(alarms.sum()),
            "alarm_rate": float(alarms.mean()) if len(scores) else 0.0,
            "score_quantiles": {q: float(np.quantile(scores, float(q))) for q in ("0.5", "0.99")} if len(scores) else {}}


def _summary(m: dict) -> str:
    if "f1" in m:
        return f"precision {m['precision']:.3f} recall {m['recall']:.3f} f1 {m['f1']:.3f} far {m['far']:.3f}"
    return f"alarm rate {m['alarm_rate']:.4f} over {m['samples']} windows (no labels)"
