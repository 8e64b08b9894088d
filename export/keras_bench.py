"""The Keras side of ``gru-edge bench``: the same latency and throughput figures for the run's own model.

TensorFlow is pinned to one intra-op and one inter-op thread (as the runtime measurements are) when this
process has not started TensorFlow yet; the report says whether that held.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..edge_runtime.bench import BATCHES, best_rate, latency_summary, timings


def keras_bench(run_dir: str | Path, budget_s: float = 1.0) -> dict:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        pinned = True
    except RuntimeError:  # TensorFlow already initialised in this process: its thread pools are fixed
        pinned = False
    from ..train.record import open_run

    run = open_run(run_dir)
    model = run.load_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, run.record.window, len(run.record.features))).astype(np.float32)
    one = x[:1]
    out = {"model_bytes": run.model_path.stat().st_size, "one_thread": pinned, "tensorflow": tf.__version__}
    out["predict_latency_us"] = latency_summary(timings(lambda: model.predict(one, verbose=0), budget_s, min_runs=20))
    out["call_latency_us"] = latency_summary(timings(lambda: model(one, training=False), budget_s, min_runs=20))
    out["predict_windows_per_s"], out["call_windows_per_s"] = {}, {}
    for b in BATCHES:
        xb = x[:b]
        t = timings(lambda: model.predict(xb, batch_size=b, verbose=0), budget_s, min_runs=3, warmup=1)
        out["predict_windows_per_s"][str(b)] = best_rate(t, b)
        t = timings(lambda: model(xb, training=False), budget_s, min_runs=3, warmup=1)
        out["call_windows_per_s"][str(b)] = best_rate(t, b)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m gru_edge.export.keras_bench RUN_DIR [BUDGET_S]``: the figures as JSON on stdout.

    ``gru-edge bench`` runs this in a child of its own so TensorFlow starts there with one thread, whatever
    the calling process has already done with TensorFlow.
    """
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(keras_bench(args[0], float(args[1]) if len(args) > 1 else 1.0)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
