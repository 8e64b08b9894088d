"""Reports: a PNG per series (signal, score, threshold, labelled anomalies, detections) and a markdown page.

matplotlib is an optional extra (``pip install 'gru-edge[plots]'``); it is imported only here, inside the
functions, behind :func:`pyplot` which says what to install when it is missing. Markdown pages are written
even without it when there is nothing to draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Rows drawn per series at most: longer series are reduced to per-bucket max (spikes stay visible).
_MAX_POINTS = 4000
_DPI = 80


class ReportError(RuntimeError):
    """A report cannot be drawn (matplotlib missing)."""


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or a clear error naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("reports draw PNGs with matplotlib, which is not installed: "
                          "pip install 'gru-edge[plots]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _reduce(x: np.ndarray, keep_max: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(row index, values) with at most ``_MAX_POINTS`` points; buckets keep their max (or mean)."""
    n = len(x)
    if n <= _MAX_POINTS:
        return np.arange(n), x
    edges = np.linspace(0, n, _MAX_POINTS + 1).astype(int)
    with np.errstate(all="ignore"):
        f = np.fmax.reduceat if keep_max else np.add.reduceat
        vals = f(x, edges[:-1], axis=0)
        if not keep_max:
            vals = vals / np.diff(edges).reshape((-1,) + (1,) * (x.ndim - 1))
    return edges[:-1], vals


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(edges[::2].tolist(), (edges[1::2] - 1).tolist()))


def series_png(path: str | Path, title: str, signal: np.ndarray, feature_names, score: np.ndarray,
               threshold: float, labels: np.ndarray | None = None, detections: np.ndarray | None = None,
               first_row: int = 0) -> Path:
    """Two panels over the rows of one series: the signals (standardised, so they share an axis) with the
    labelled anomalies shaded, and the score with the threshold line and the detections marked.

    ``score`` has one value per row, NaN where a row is not scored; ``detections`` is bool per row.
    ``first_row`` is the series row number of the first value (for the x axis).
    """
    plt = pyplot()
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    spread = signal.std(axis=0)
    z = (signal - signal.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    x, zr = _reduce(z, keep_max=False)
    x = x + first_row
    for j in range(z.shape[1]):
        ax1.plot(x, zr[:, j], lw=0.6, label=str(feature_names[j]) if feature_names is not None else None)
    if labels is not None:
        for a, b in _spans(labels):
            for ax in (ax1, ax2):
                ax.axvspan(a + first_row, b + first_row, color="tab:red", alpha=0.12, lw=0)
    if feature_names is not None and len(feature_names) <= 10:
        ax1.legend(fontsize=6, ncol=min(5, len(feature_names)), loc="upper left")
    ax1.set_ylabel("signal (z)")
    ax1.set_title(title, fontsize=9)
    xs, sr = _reduce(np.asarray(score, dtype=np.float64))
    ax2.plot(xs + first_row, sr, lw=0.7, color="black", label="score")
    ax2.axhline(threshold, color="tab:orange", lw=1, ls="--", label=f"threshold {threshold:.3g}")
    if detections is not None and np.any(detections):
        rows = np.flatnonzero(detections) + first_row
        ax2.plot(rows, np.full(rows.shape, threshold), "|", color="tab:blue", ms=6, label="detection")
    ax2.set_ylabel("score")
    ax2.set_xlabel("row")
    ax2.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def distribution_png(path: str | Path, title: str, groups: dict[str, np.ndarray], threshold: float) -> Path:
    """Histograms of scores per group (e.g. normal vs anomalous windows) on shared bins, with the threshold."""
    plt = pyplot()
    values = [np.asarray(v, dtype=np.float64) for v in groups.values() if len(v)]
    finite = np.concatenate(values) if values else np.array([threshold])
    finite = finite[np.isfinite(finite)]
    lo, hi = float(np.min(finite, initial=threshold)), float(np.max(finite, initial=threshold))
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 60)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, v in groups.items():
        if len(v):
            ax.hist(np.clip(v, lo, hi), bins=bins, alpha=0.55, density=True, label=f"{name} ({len(v)})")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _slug(name: str) -> str:
    return name.replace("/", "_").replace(".csv", "")


# ---------------------------------------------------------------- benchmark reports


def skab_report(result, root: str | Path, out_dir: str | Path, variant: str = "onnx-int8") -> Path:
    """``out_dir/index.md`` (leaderboard, per-variant and per-file figures) and one PNG per file."""
    from .datasets import load_skab, skab_files
    from .leaderboards import skab_table

    out = Path(out_dir)
    variant = variant if variant in result.variants else next(iter(result.variants))
    files = {p.relative_to(Path(root) / "data").as_posix() if (Path(root) / "data").is_dir() else p.name: p
             for p in skab_files(root)}
    lines = ["# SKAB: gru-edge normal-only GRU", "", result.to_dict()["protocol"], "", "```",
             skab_table({f"gru-edge ({v})": m for v, m in result.variants.items()}), "```", "",
             f"Per file ({variant}); plots show the scored rows (from row 400 on), labelled anomalies shaded.", ""]
    rows = []
    for scores, labels in zip(result.scores, result.labels):
        m = next(s for s in result.series if s["name"] == scores.name)[variant]
        png = f"{_slug(scores.name)}.png"
        series = load_skab(files[scores.name], root)
        start = scores.start
        series_png(out / png, f"SKAB {scores.name} ({variant}): F1 {m['f1']:.3f}, FAR {m['far']:.1f} %, "
                   f"MAR {m['mar']:.1f} %", series.values[start:], series.feature_names, scores.scores[variant],
                   scores.threshold, labels, scores.detections(variant), first_row=start)
        rows.append([scores.name, f"{m['f1']:.3f}", f"{m['far']:.1f}", f"{m['mar']:.1f}", f"![{scores.name}]({png})"])
    lines += [markdown_table(["file", "F1", "FAR %", "MAR %", "plot"], rows), ""]
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.md"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return page


def nab_report(result, root: str | Path, out_dir: str | Path, variant: str = "onnx-int8",
               profile: str = "standard") -> Path:
    """``out_dir/index.md`` (scoreboard, per-file raw scores) and one PNG per file at the corpus threshold."""
    from .datasets import load_nab, nab_files, nab_windows
    from .leaderboards import nab_table
    from .nab_scoring import probationary_rows
    from .nab import adapted_detector_output

    out = Path(out_dir)
    variant = variant if variant in result.variants else next(iter(result.variants))
    threshold = result.variants[variant]["thresholds"][profile]
    threshold = np.inf if threshold is None else threshold
    windows = nab_windows(root)
    paths = {p.parent.name + "/" + p.name: p for p in nab_files(root)}
    lines = ["# NAB: gru-edge normal-only GRU", "", result.to_dict()["protocol"], "", "```",
             nab_table({f"gru-edge ({v})": m for v, m in result.variants.items()}), "```", "",
             f"Per file ({variant}, {profile} profile): the adapted detector output (z-score of each bundle score "
             f"against the file's previous {result.config.history} scores, a new maximum over {result.config.hold} "
             f"rows) and the corpus threshold {threshold:.3g}; probationary rows blank, NAB windows shaded.", ""]
    rows = []
    for scores, labels in zip(result.scores, result.labels):
        info = next(s for s in result.series if s["name"] == labels.name)[variant][profile]
        series, _ = load_nab(paths[labels.name], root, windows)
        output = adapted_detector_output(scores, labels.n_rows, variant, result.config)
        output[: probationary_rows(labels.n_rows)] = np.nan
        png = f"{_slug(labels.name)}.png"
        series_png(out / png, f"NAB {labels.name} ({variant}): raw {info['raw']:+.2f}, {info['detected']} of "
                   f"{len(labels.windows)} windows, {info['false_positives']} FP rows", series.values,
                   series.feature_names, output, threshold, series.labels, np.nan_to_num(output) >= threshold)
        rows.append([labels.name, f"{info['raw']:+.2f}", f"{info['detected']}/{len(labels.windows)}",
                     info["false_positives"], f"![{labels.name}]({png})"])
    lines += [markdown_table(["file", "raw score", "windows detected", "FP rows", "plot"], rows), ""]
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.md"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return page


# ---------------------------------------------------------------- training / export reports


def training_report(run_dir: str | Path, bundles: list | None = None, out_dir: str | Path | None = None) -> Path:
    """Score distributions of normal vs anomalous held-out windows with the threshold, for the run's Keras
    model and for each bundle (scored through ``edge_runtime``). Written to ``RUN_DIR/report/`` by default.
    Without labels all windows are one group."""
    from ..edge_runtime.windows import sliding_windows, window_labels
    from ..train.normal_only import reference_scores
    from ..train.record import open_run

    run = open_run(run_dir)
    out = Path(out_dir) if out_dir else run.dir / "report"
    holdout = run.holdout()
    w = run.record.window
    model = run.load_model()
    lines = [f"# Training report: {run.dir.name}", "",
             f"mode {run.record.mode}, score {run.record.score_kind}, threshold {run.record.threshold:.4g} "
             f"({run.record.threshold_rule}); held-out windows of {w} samples, each scored at its last sample.", ""]
    parts = [("validation", holdout.validation, holdout.validation_labels), ("test", holdout.test, holdout.test_labels)]
    scorers = [("keras", None)] + [(Path(b).name, b) for b in (bundles or [])]
    rows = []
    for who, bundle in scorers:
        groups: dict[str, np.ndarray] = {}
        for part, raw, labels in parts:
            if len(raw) < w:
                continue
            if bundle is None:
                windows = np.ascontiguousarray(sliding_windows(run.record.scaler.transform(raw), w, 1))
                scores = reference_scores(run.record, model, windows)
            else:
                from ..edge_runtime.scorer import Scorer

                _, scores = Scorer(bundle).score_series(raw, stride=1)
            y = None if labels is None else window_labels(labels, w).astype(bool)
            if y is None:
                groups[f"{part}"] = scores
            else:
                groups[f"{part} normal"] = scores[~y]
                groups[f"{part} anomalous"] = scores[y]
            alarms = scores >= run.record.threshold
            rows.append([who, part, len(scores), f"{alarms.mean():.4f}",
                         "-" if y is None or not y.any() else f"{alarms[y].mean():.3f}",
                         "-" if y is None or y.all() else f"{alarms[~y].mean():.4f}"])
        png = f"scores-{who}.png"
        distribution_png(out / png, f"{run.dir.name}: {who} scores vs threshold", groups, run.record.threshold)
        lines += [f"## {who}", "", f"![{who}]({png})", ""]
    lines += [markdown_table(["model", "part", "windows", "alarm rate", "recall", "false-alarm rate"], rows), ""]
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.md"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return page
