"""One benchmark series end to end: train a normal-only GRU, export fp32 and int8 bundles, score every
row from ``score_from`` on with the Keras model and with each bundle through ``edge_runtime``.

What counts is what the gateway decides, so the bundles are scored by :class:`~gru_edge.edge_runtime.scorer.Scorer`
(the runtime's own load path: hashes, golden self-test, scaler, windows), not by the exporter's copies.
A window's score belongs to its last row, so the row ``i`` score only ever sees rows ``i - T + 1 .. i``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VARIANTS = ("keras", "onnx-fp32", "onnx-int8")
_QUANTIZE = {"onnx-fp32": "none", "onnx-int8": "int8"}


@dataclass
class SeriesScores:
    name: str
    start: int  # scores[k] is the score of row start + k
    scores: dict  # variant -> float64 [n - start]
    threshold: float  # the run's own threshold (from its normal validation data)
    seconds: dict = field(default_factory=dict)  # train / export / score wall time
    notes: list = field(default_factory=list)  # e.g. a variant whose export was refused, and why

    def detections(self, variant: str, threshold: float | None = None) -> np.ndarray:
        return self.scores[variant] >= (self.threshold if threshold is None else threshold)


def score_series(name: str, values: np.ndarray, parts: dict[str, slice], score_from: int, config,
                 variants: tuple[str, ...] = VARIANTS, keep_dir: str | Path | None = None,
                 feature_names: tuple | None = None) -> SeriesScores:
    """Train on ``parts`` (no labels: the protocols forbid them), export, and score rows ``score_from..n-1``."""
    from ..edge_runtime.scorer import Scorer
    from ..edge_runtime.windows import sliding_windows
    from ..export.exporter import ExportError, export
    from ..train.normal_only import reference_scores
    from ..train.normal_only_run import fit_normal_only

    values = np.asarray(values, dtype=np.float64)
    window = int(config.window)
    if score_from < window - 1:
        raise ValueError(f"{name}: rows before {window - 1} have no complete window; score_from={score_from}")
    names = feature_names or tuple(f"x{j}" for j in range(values.shape[1]))
    work = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="gru-edge-eval-"))
    seconds, notes, scores = {}, [], {}
    quiet = lambda _msg: None  # noqa: E731 - per-series chatter would drown the benchmark's progress lines
    try:
        t0 = time.perf_counter()
        run = fit_normal_only(config, values, None, names, parts, work / "run", log=quiet, source=name)
        seconds["train"] = time.perf_counter() - t0
        context = values[score_from - window + 1 :]  # the rows each scored row's window reaches back to
        if "keras" in variants:
            t0 = time.perf_counter()
            windows = np.ascontiguousarray(sliding_windows(run.record.scaler.transform(context), window, 1))
            scores["keras"] = reference_scores(run.record, run.load_model(), windows)
            seconds["keras"] = time.perf_counter() - t0
        for variant in variants:
            if variant == "keras":
                continue
            t0 = time.perf_counter()
            bundle = work / variant
            try:
                export(run.dir, bundle, quantize=_QUANTIZE[variant], cross_check=False, step=False, log=quiet)
            except ExportError as e:
                # The parity gate refused this bundle; the gateway would never run it. Say so, and score
                # what the refused weights would have decided so the corpus figure stays complete.
                notes.append(f"{variant}: export gate refused the bundle: {e}")
                export(run.dir, bundle, quantize=_QUANTIZE[variant], cross_check=False, step=False, log=quiet,
                       **_ungated(work))
            _, scores[variant] = Scorer(bundle).score_series(context, stride=1)
            seconds[variant] = time.perf_counter() - t0
        return SeriesScores(name, score_from, scores, float(run.record.threshold), seconds, notes)
    finally:
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)


_UNGATED_PROFILE = """# Written by gru-edge evaluate: accepts any decision change, so a variant the export gate refused
# can still be measured. Never used for a bundle that ships.
name = "benchmark-ungated"
description = "benchmark measurement only"
arch = "x86_64"
cpu = "any"
cores = 1
ram_mb = 1024
model_storage_budget_kb = 1048576
format = "onnx"
quantization = "none"
threads = 1
latency_budget_ms = 1000.0
speed_factor = 1.0

[parity]
max_abs_diff = 1e30
min_decision_agreement = 1e-9
max_f1_drop = 1.0
"""


def _ungated(work: Path) -> dict:
    """Export options that accept any decision change (used only to measure a refused variant)."""
    path = work / "benchmark-ungated.toml"
    path.write_text(_UNGATED_PROFILE, encoding="utf-8")
    return {"device": str(path)}


def spread(items: list, limit: int | None) -> list:
    """``limit`` items evenly spaced over ``items`` (all of them when ``limit`` is falsy), order kept, so a
    quick ``--limit`` run still covers every group of a corpus.

    >>> spread(list(range(10)), 3)
    [0, 4, 9]
    """
    if not limit or limit >= len(items):
        return list(items)
    picks = np.unique(np.round(np.linspace(0, len(items) - 1, int(limit))).astype(int))
    return [items[i] for i in picks]


def configure_worker(threads: int = 1) -> None:
    """Pin TensorFlow to ``threads`` per process: small GRUs train faster as parallel single-thread jobs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran something in this process: keep its settings
        pass


def run_jobs(fn, args: list[tuple], jobs: int, variants: tuple[str, ...]):
    """``fn(*a, variants)`` for each ``a``, in order, over ``jobs`` single-threaded worker processes."""
    if jobs <= 1:  # in this process, with whatever threading the caller set up
        for a in args:
            yield fn(*a, variants)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=configure_worker, initargs=(1,)) as pool:
        futures = [pool.submit(fn, *a, variants) for a in args]
        for f in futures:
            yield f.result()
