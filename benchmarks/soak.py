#!/usr/bin/env python3
"""Soak: stream 1,000,000 samples through `edge-score --watch` and watch its memory and error counters.

    python benchmarks/soak.py [--samples 1000000] [--bundle DIR] [--reloads 2] [--out soak.json]

What it does:
1. Gets a small bundle: ``--bundle`` or, by default, trains and exports a tiny GRU (16,8 units,
   window 32, one epoch on the embedded synthetic data; ~20 s).
2. Flashes it into a fresh gateway directory and starts the real loop as a separate process
   (``edge-score --watch GW --health-interval 2``), stdout to /dev/null.
3. Writes the samples into its stdin as CSV (the synthetic plant series, repeated), with one
   malformed line every 100,000 samples (so the error path is exercised and its counter must
   equal the number injected), and flashes the same bundle again ``--reloads`` times during the
   run (each one a new version the loop must verify, load beside the live one and swap to).
4. Reports RSS after warm-up (first health line past 20,000 samples) and at the end (the summary),
   the growth (target: < 5 MB), samples/s and every error counter; exits 1 when a target is missed.

A benchmark, not a test: it takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WARMUP_SAMPLES = 20_000
BAD_EVERY = 100_000
RSS_GROWTH_TARGET_MB = 5.0


def tiny_bundle(work: Path) -> Path:
    from gru_edge.export.exporter import export
    from gru_edge.train.pipeline import TrainConfig, train
    from gru_edge.train.synth import generate, write_csv

    data = work / "train.csv"
    write_csv(generate(rows=4000, seed=1), data)
    run = train(TrainConfig(data=str(data), units=(16, 8), epochs=1, window=32, seed=0), work / "run",
                log=lambda m: None)
    out = work / "soak-gru"
    export(run.dir, out, quantize="none", cross_check=False, log=lambda m: None)
    return out


def sample_lines(features: list[str], rows: int = 20_000) -> list[str]:
    from gru_edge.train.synth import generate

    series = generate(rows=rows, seed=7)
    cols = [list(series.feature_names).index(f) for f in features]
    return [",".join(f"{v:.5g}" for v in row[cols]) + "\n" for row in series.features]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--bundle", default=None, help="bundle to soak (default: train+export a tiny GRU)")
    ap.add_argument("--reloads", type=int, default=2, help="re-flashes during the run (hot reloads)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args()

    from gru_edge.edge_runtime import deploy
    from gru_edge.edge_runtime.bundle import read_manifest

    with tempfile.TemporaryDirectory(prefix="gru-edge-soak-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        bundle = Path(args.bundle) if args.bundle else tiny_bundle(work)
        manifest = read_manifest(bundle)
        print(f"bundle {bundle.name}: window {manifest.window}, {len(manifest.features)} features "
              f"({time.perf_counter() - t0:.1f} s to prepare)", flush=True)
        gw = work / "gw"
        deploy.flash_local(bundle, gw)
        lines = sample_lines(list(manifest.features))

        proc = subprocess.Popen(
            [sys.executable, "-m", "gru_edge.edge_runtime.cli", "--watch", str(gw), "--health-interval", "2",
             "--reload-interval", "0.5"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1 << 16)
        logs: list[dict] = []
        other: list[str] = []

        def read_stderr() -> None:
            for line in proc.stderr:
                try:
                    logs.append(json.loads(line))
                except json.JSONDecodeError:
                    other.append(line.rstrip())

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        reload_at = {args.samples * (k + 1) // (args.reloads + 1) for k in range(args.reloads)}
        injected = 0
        started = time.perf_counter()
        proc.stdin.write(",".join(manifest.features) + "\n")
        chunk: list[str] = []
        for i in range(args.samples):
            chunk.append(lines[i % len(lines)])
            if i % BAD_EVERY == BAD_EVERY - 1:
                chunk.append("oops,not,a,number,row\n")
                injected += 1
            if len(chunk) >= 2000:
                proc.stdin.write("".join(chunk))
                chunk = []
            if i in reload_at:
                deploy.flash_local(bundle, gw)
        proc.stdin.write("".join(chunk))
        proc.stdin.close()
        code = proc.wait()
        seconds = time.perf_counter() - started
        reader.join(10)

    health = [e["health"] for e in logs if "health" in e]
    summary = next((e["summary"] for e in logs if "summary" in e), None)
    if code != 0 or summary is None:
        print(f"edge-score exited {code}; stderr: {other[-5:]}", file=sys.stderr)
        return 1
    warm = next((h for h in health if h["samples"] >= WARMUP_SAMPLES), health[0] if health else None)
    rss_start = warm["rss_mb"] if warm else float("nan")
    rss_end = summary["rss_mb"]
    rss_max = max([h["rss_mb"] for h in health] + [rss_end])
    swaps = [e for e in logs if e.get("event") == "model_swapped"]
    figures = {
        "samples": summary["samples"], "scored": summary["scored"], "seconds": round(seconds, 1),
        "samples_per_s": round(summary["samples"] / seconds),
        "rss_mb_start": rss_start, "rss_mb_end": rss_end, "rss_mb_max": rss_max,
        "rss_growth_mb": round(rss_end - rss_start, 1),
        "errors": summary["errors"], "bad_input": summary["bad_input"], "bad_input_injected": injected,
        "scoring_errors": summary["scoring_errors"], "output_errors": summary["output_errors"],
        "reload_refused": summary["reload_refused"], "reloads": summary["reloads"], "reloads_requested": args.reloads,
        "health_lines": len(health), "rss_trace_mb": [h["rss_mb"] for h in health][:: max(1, len(health) // 20)],
    }
    for k, v in figures.items():
        print(f"{k:>20}: {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    ok = (figures["samples"] == args.samples and figures["rss_growth_mb"] < RSS_GROWTH_TARGET_MB
          and figures["bad_input"] == injected and figures["errors"] == injected and len(swaps) == args.reloads)
    print("PASS" if ok else "FAIL", f"(targets: all samples, RSS growth < {RSS_GROWTH_TARGET_MB} MB, "
          "errors == injected bad lines, every reload swapped)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
