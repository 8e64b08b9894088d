"""Published results we compare with (from ../shared/notes/benchmarks.md), and our rows printed inside them."""

from __future__ import annotations

# SKAB outlier detection, point-wise (F1, FAR %, MAR %), best first.
SKAB = [
    ("Conv-AE", 0.78, 13.55, 28.02),
    ("MSET", 0.78, 39.73, 14.13),
    ("T-squared+Q (PCA)", 0.76, 26.62, 24.92),
    ("LSTM-AE", 0.74, 29.96, 25.92),
    ("T-squared", 0.66, 19.21, 42.6),
    ("LSTM-VAE", 0.56, 9.13, 55.03),
    ("Vanilla LSTM", 0.54, 12.54, 59.53),
    ("Vanilla AE", 0.39, 2.59, 75.15),
    ("MSCRED", 0.36, 49.94, 69.88),
    ("Isolation forest", 0.29, 2.56, 82.89),
]

# NAB v1.1 scoreboard (standard, reward low FP, reward low FN), best first.
NAB = [
    ("ARTime", 74.85, 65.15, 80.36),
    ("Numenta HTM", 70.10, 63.12, 74.32),
    ("CAD OSE", 69.90, 66.98, 73.18),
    ("earthgecko Skyline", 58.20, 46.20, 63.80),
    ("KNN CAD", 57.99, 43.41, 64.81),
    ("Relative Entropy", 54.64, 47.60, 58.84),
    ("Random Cut Forest", 51.72, 38.36, 59.75),
    ("Twitter ADVec", 47.06, 33.61, 53.50),
    ("Windowed Gaussian", 39.65, 20.87, 47.41),
    ("random", 16.83, 5.76, 25.88),
    ("null", 0.0, 0.0, 0.0),
]


def skab_table(ours: dict[str, dict]) -> str:
    """The SKAB leaderboard with ``ours`` (label -> {"f1", "far", "mar"}) placed by F1; ours marked ``>``."""
    rows = [(False, name, f1, far, mar) for name, f1, far, mar in SKAB]
    rows += [(True, label, m["f1"], m["far"], m["mar"]) for label, m in ours.items()]
    rows.sort(key=lambda r: (-r[2], r[3]))  # published F1s have 2 decimals: 0.759 ranks below 0.76
    return _table(("algorithm", "F1", "FAR %", "MAR %"), [(mark, name, f"{f1:.3f}" if mark else f"{f1:.2f}",
                                                          f"{far:.2f}", f"{mar:.2f}") for mark, name, f1, far, mar in rows])


def nab_table(ours: dict[str, dict]) -> str:
    """The NAB scoreboard with ``ours`` (label -> {"standard", "low_fp", "low_fn"}) placed by standard score."""
    rows = [(False, name, s, lfp, lfn) for name, s, lfp, lfn in NAB]
    rows += [(True, label, m["standard"], m["low_fp"], m["low_fn"]) for label, m in ours.items()]
    rows.sort(key=lambda r: -r[2])
    return _table(("detector", "standard", "low FP", "low FN"),
                  [(mark, name, f"{s:.2f}", f"{lfp:.2f}", f"{lfn:.2f}") for mark, name, s, lfp, lfn in rows])


def _table(header: tuple, rows: list[tuple]) -> str:
    body = [("", *header)] + [(">" if mark else "", *cells) for mark, *cells in rows]
    widths = [max(len(r[i]) for r in body) for i in range(len(body[0]))]
    lines = []
    for r in body:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])] + [c.rjust(w) for c, w in zip(r[2:], widths[2:])]
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines)
