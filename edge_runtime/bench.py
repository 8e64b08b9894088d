"""``edge-score bench``: how fast and how big a bundle is on this machine, measured by the runtime alone.

Per bundle: single-window latency (p50/p99), windows/s at batch 1/32/256, streaming us/sample (exact,
exact in bursts, stateful, and 64 streams per call in both modes), cold start (process start to first
score, in a fresh process), peak RSS of that process, file sizes, and the compute bound: FLOPs per
window / single-core sgemm GFLOP/s, measured here by numpy in a child pinned to one BLAS thread.

Timings vary 20-40 % run to run on shared machines: compare variants side by side within one report.
No TensorFlow is needed (``gru-edge bench`` adds Keras and LiteRT conversions on a workstation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .bundle import BundleError, read_manifest
from .manifest import MANIFEST_NAME

BATCHES = (1, 32, 256)
STREAMS = 64  # streams per call in the many-streams measurement
BURST = 64  # samples per push_many call in the burst measurement
_LABELS = {"none": "fp32"}


def timings(fn: Callable[[], object], budget_s: float, min_runs: int = 5, max_runs: int = 100_000,
            warmup: int = 3) -> np.ndarray:
    """Seconds per call of ``fn``: warm-up calls first, then calls until ``budget_s`` is spent (at least ``min_runs``)."""
    for _ in range(warmup):
        fn()
    out = []
    deadline = time.perf_counter() + budget_s
    while len(out) < max_runs and (len(out) < min_runs or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return np.asarray(out)


def best_rate(seconds: np.ndarray, items: int) -> float:
    """Items per second of the fastest call: on a shared machine the minimum is the code's own speed, the
    median partly other processes' (latency percentiles keep the whole distribution instead)."""
    return float(items / np.min(seconds))


def latency_summary(seconds: np.ndarray) -> dict:
    us = seconds * 1e6
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)), "mean": float(us.mean()),
            "runs": int(len(us))}


def bench_bundle(bundle_dir: str | Path, threads: int = 1, budget_s: float = 1.0, cold_start: bool = True) -> dict:
    """Every runtime measurement of one bundle (in this process, except cold start and RSS)."""
    from .multistream import MultiStreamScorer
    from .scorer import Scorer

    scorer = Scorer(bundle_dir, threads=threads)
    m = scorer.manifest
    spec = m.window_model
    model = scorer._model
    rng = np.random.default_rng(0)
    n_features, window = len(m.features), m.window
    scaled = rng.standard_normal((256, window, n_features)).astype(np.float32)
    flops = (m.notes.get("model") or {}).get("flops_per_window")
    result = {
        "name": m.name,
        "label": variant_label(spec.format, spec.quantization),
        "bundle_dir": str(bundle_dir),
        "format": spec.format,
        "quantization": spec.quantization,
        "model_bytes": m.file_entry(spec.file).bytes,
        "bundle_bytes": sum(f.bytes for f in m.files) + (Path(bundle_dir) / MANIFEST_NAME).stat().st_size,
        "step_model": "step" in m.models,
        "flops_per_window": flops,
        "decision_agreement": ((m.parity or {}).get("bundle") or {}).get("decision_agreement"),
        "threads": threads,
    }
    one = scaled[:1]
    result["latency_us"] = latency_summary(timings(lambda: model.run(one), budget_s, min_runs=50))
    result["windows_per_s"] = {}
    for b in BATCHES:
        x = scaled[:b]
        result["windows_per_s"][str(b)] = best_rate(timings(lambda: model.run(x), budget_s, min_runs=5), b)

    # A raw series whose scaled values are standard normal: the GRU's cost does not depend on the values.
    mean, scale = np.asarray(m.scaler.mean), np.asarray(m.scaler.scale)
    series = rng.standard_normal((window + 4000, n_features)) * scale + mean
    streaming = {"exact": _per_sample(lambda: scorer.stream("exact"), series, window, budget_s)}
    streaming["exact_burst_64"] = _per_sample_burst(scorer.stream("exact"), series, window, budget_s)
    if "step" in m.models:
        streaming["stateful"] = _per_sample(lambda: scorer.stream("stateful"), series, window, budget_s)
    for mode in ("exact", "stateful") if "step" in m.models else ("exact",):
        streaming[f"multistream_{STREAMS}_{mode}"] = _per_sample_multi(MultiStreamScorer(scorer, mode), series,
                                                                       window, budget_s)
    result["stream_us_per_sample"] = streaming
    if cold_start:
        result.update(cold_start_and_rss(bundle_dir, threads))
    return result


def _best_chunk(step: Callable[[int], int], chunks: int, budget_s: float) -> float:
    """us per sample of the fastest of several chunks (at least 3, more while the budget lasts); ``step(i)``
    processes chunk ``i`` and returns how many samples it took. Short chunks fit between the scheduler's
    interruptions on a busy machine, so the fastest one measures the code rather than the neighbours."""
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    for i in range(chunks):
        t0 = time.perf_counter()
        n = step(i)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
        if i >= 2 and time.perf_counter() > deadline:
            break
    return best


def _per_sample(make_stream, series: np.ndarray, window: int, budget_s: float, chunk: int = 16) -> float:
    """us per pushed sample once windows complete (the warm-up fills the first window)."""
    stream = make_stream()
    for row in series[:window]:
        stream.push(row)
    rows = series[window:]

    def step(i):
        for row in rows[i * chunk : (i + 1) * chunk]:
            stream.push(row)
        return chunk

    return _best_chunk(step, len(rows) // chunk, budget_s)


def _per_sample_burst(stream, series: np.ndarray, window: int, budget_s: float) -> float:
    stream.push_many(series[:window])
    rows = series[window:]

    def step(i):
        stream.push_many(rows[i * BURST : (i + 1) * BURST])
        return BURST

    return _best_chunk(step, len(rows) // BURST, budget_s)


def _per_sample_multi(multi, series: np.ndarray, window: int, budget_s: float) -> float:
    """One sample of each of ``STREAMS`` streams per call; us per sample (= per stream and tick)."""
    ids = list(range(STREAMS))
    offsets = np.arange(STREAMS) * 7  # streams see different samples, like different pumps
    ticks = len(series) - int(offsets[-1])

    def tick(i):
        multi.push_many(list(zip(ids, series[offsets + i])))
        return STREAMS

    for i in range(window):
        tick(i)
    return _best_chunk(lambda i: tick(window + i), ticks - window, budget_s)


_COLD_START = textwrap.dedent("""
    import sys
    from gru_edge.edge_runtime.scorer import Scorer
    import numpy as np
    bundle, threads = sys.argv[1], int(sys.argv[2])
    scorer = Scorer(bundle, threads=threads)
    samples = np.asarray(scorer.manifest.golden.probes[0].samples, dtype=np.float64)
    scorer.score_windows(samples[None, : scorer.window])
    print("SCORED", flush=True)

    def peak_kb():
        # VmHWM is this process image's own peak; ru_maxrss also counts the parent's memory at fork (Linux
        # keeps the larger of the two across exec), which would charge the benchmark's footprint to the runtime.
        try:
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        except (OSError, StopIteration):
            import resource
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # The gateway's working set: streaming in both modes. Then batch scoring, whose buffers are larger.
    stream = scorer.stream()
    for row in np.tile(samples, (4, 1)):
        stream.push(row)
    if "step" in scorer.manifest.models:
        live = scorer.stream("stateful")
        for row in samples:
            live.push(row)
    print("RSS_KB", peak_kb(), flush=True)
    scorer.score_windows(np.repeat(samples[None, : scorer.window], 256, axis=0))
    print("RSS_BATCH_KB", peak_kb(), flush=True)
""")


def cold_start_and_rss(bundle_dir: str | Path, threads: int = 1, repeats: int = 3) -> dict:
    """Process start -> first score, in a fresh Python process (median of ``repeats``), and its peak RSS: while
    streaming (the gateway's load), and after a batch of 256 windows (onnxruntime keeps those buffers)."""
    starts, rss, rss_batch = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _COLD_START, str(bundle_dir), str(threads)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        elapsed = time.perf_counter() - t0
        rest, err = proc.communicate(timeout=300)
        if proc.returncode != 0 or not first.startswith("SCORED"):
            raise RuntimeError(f"cold-start child failed ({proc.returncode}): {err.strip()[-500:]}")
        starts.append(elapsed)
        for line in rest.splitlines():
            key, _, value = line.partition(" ")
            {"RSS_KB": rss, "RSS_BATCH_KB": rss_batch}.get(key, []).append(int(value))
    return {"cold_start_s": float(np.median(starts)), "cold_start_runs_s": [round(s, 4) for s in starts],
            "peak_rss_mb": float(max(rss) / 1024) if rss else None,
            "peak_rss_batch256_mb": float(max(rss_batch) / 1024) if rss_batch else None}


_SGEMM = textwrap.dedent("""
    import sys, time
    import numpy as np
    n = int(sys.argv[1])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(40):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    print(2.0 * n ** 3 / best / 1e9)
""")


def sgemm_gflops(size: int = 512) -> float:
    """Single-core float32 GEMM throughput (GFLOP/s, best of 40) from numpy's BLAS in a one-thread child.

    512 x 512 already runs at the BLAS's peak here (measured: 105 GFLOP/s, as 768 and 1024) and one product
    takes ~3 ms, short enough for the best of 40 to dodge other processes on a shared machine."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               BLIS_NUM_THREADS="1", VECLIB_MAXIMUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _SGEMM, str(size)], capture_output=True, text=True, env=env,
                         timeout=300, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def variant_label(fmt: str, quantization: str) -> str:
    """``onnx int8``, ``tflite fp32``: what tables, reports and manifests call a variant."""
    return f"{fmt} {_LABELS.get(quantization, quantization)}"


def machine_info() -> dict:
    import onnxruntime

    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        from importlib.metadata import version

        info["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # not installed: TFLite bundles cannot be benchmarked here
        info["ai_edge_litert"] = None
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def add_compute_bound(report: dict) -> None:
    """Each model's batch-256 throughput as a fraction of FLOPs/window over the measured sgemm rate."""
    gflops = report.get("sgemm_gflops")
    for r in report.get("models", []):
        flops = r.get("flops_per_window")
        if gflops and flops:
            bound = gflops * 1e9 / flops
            r["compute_bound_windows_per_s"] = bound
            r["compute_bound_fraction"] = r["windows_per_s"]["256"] / bound


def run_benchmarks(bundle_dirs: list[str | Path], threads: int = 1, budget_s: float = 1.0,
                   log: Callable[[str], None] = lambda m: None) -> dict:
    report = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(), "threads": threads,
              "load_average_before": _load()}
    log("measuring single-core sgemm ...")
    report["sgemm_gflops"] = sgemm_gflops()
    report["models"] = []
    for b in bundle_dirs:
        log(f"benchmarking {b} ...")
        report["models"].append(bench_bundle(b, threads=threads, budget_s=budget_s))
    report["load_average_after"] = _load()
    add_compute_bound(report)
    report["targets"] = evaluate_targets(report)
    return report


def _load() -> list[float] | None:
    """1/5/15-minute load averages: how busy the machine was (other processes skew timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --- targets (the numbers, reference model, 1 thread) -------------------------------------------------


def _find(report: dict, label: str) -> dict | None:
    return next((r for r in report.get("models", []) if r.get("label") == label), None)


def _target(name: str, measured, goal: str, ok: bool | None, miss: str = "", why: str = "") -> dict:
    return {"target": name, "measured": measured, "goal": goal,
            "status": "n/a" if ok is None else ("met" if ok else "missed"), "miss": "" if ok else miss, "why": why}


def evaluate_targets(report: dict) -> list[dict]:
    """The issue's targets, each met / missed (with by how much) / n/a when the report lacks a side."""
    out = []
    fp32, int8 = _find(report, "onnx fp32"), _find(report, "onnx int8")
    litert = _find(report, "tflite dynamic")
    keras = report.get("keras") or {}
    if fp32 and keras.get("predict_latency_us"):
        ratio = keras["predict_latency_us"]["p50"] / fp32["latency_us"]["p50"]
        out.append(_target("ONNX fp32 single window vs Keras predict", f"{ratio:.0f}x lower", ">= 50x lower",
                           ratio >= 50, f"{50 / ratio:.2f}x short"))
    else:
        out.append(_target("ONNX fp32 single window vs Keras predict", None, ">= 50x lower", None))
    if fp32 and litert:
        a, b = fp32["latency_us"]["p50"], litert["latency_us"]["p50"]
        out.append(_target("ONNX fp32 single window vs LiteRT dynamic", f"{a:.0f} us vs {b:.0f} us", "no slower",
                           a <= b, f"{100 * (a / b - 1):.0f} % slower",
                           "one window is T matrix-vector steps per layer in onnxruntime's float GRU kernel; LiteRT's "
                           "dynamic-range model multiplies int8 weights (XNNPACK), and onnxruntime has no int8 GRU "
                           "kernel to match it"))
    else:
        out.append(_target("ONNX fp32 single window vs LiteRT dynamic", None, "no slower", None))
    if fp32 and fp32.get("compute_bound_fraction") is not None:
        f = fp32["compute_bound_fraction"]
        out.append(_target("batch-256 throughput vs compute bound",
                           f"{100 * f:.0f} % ({fp32['windows_per_s']['256']:.0f} of {fp32['compute_bound_windows_per_s']:.0f} windows/s)",
                           ">= 70 %", f >= 0.70, f"{100 * (0.70 - f):.0f} points short",
                           "a GRU is T small dependent GEMMs (batch x u by u x 3u) per layer with the gates' "
                           "sigmoid/tanh between them; a large square sgemm sets the bound"))
    if fp32 and "stateful" in fp32["stream_us_per_sample"]:
        s = fp32["stream_us_per_sample"]
        ratio = s["exact"] / s["stateful"]
        out.append(_target("stateful vs exact streaming", f"{ratio:.1f}x fewer us/sample "
                           f"({s['stateful']:.1f} vs {s['exact']:.1f})", ">= 10x", ratio >= 10,
                           f"{10 / ratio:.2f}x short",
                           "one step is a few hundred kFLOP (~2 us of arithmetic): onnxruntime's per-call cost and the "
                           "Python bookkeeping around it make up most of the stateful figure"))
    if fp32 and int8:
        share = int8["bundle_bytes"] / fp32["bundle_bytes"]
        agree = int8.get("decision_agreement")
        ok = share <= 0.35 and agree is not None and agree >= 0.995
        out.append(_target("int8-weight ONNX bundle size and agreement",
                           f"{100 * share:.1f} % of fp32 bytes, agreement {100 * (agree or 0):.2f} %",
                           "<= 35 %, >= 99.5 %", ok,
                           f"{100 * (share - 0.35):.1f} points over" if share > 0.35 else "agreement below 99.5 %",
                           "biases, scales and the manifest stay full size" if share > 0.35 else ""))
    if fp32 and fp32.get("cold_start_s") is not None:
        c = fp32["cold_start_s"]
        out.append(_target("runtime cold start", f"{c:.3f} s", "<= 0.5 s", c <= 0.5, f"{c - 0.5:.3f} s over",
                           "interpreter start + numpy/onnxruntime import + bundle hashing and self-test"))
        rss, batch = fp32.get("peak_rss_mb"), fp32.get("peak_rss_batch256_mb")
        out.append(_target("runtime peak RSS (streaming)", f"{rss:.0f} MB (after a batch of 256: {batch:.0f} MB)",
                           "<= 100 MB", rss <= 100, f"{rss - 100:.0f} MB over"))
    return out


# --- output --------------------------------------------------------------------------------------------------


def to_markdown(report: dict) -> str:
    lines = []
    mi = report.get("machine", {})
    busy = (report.get("load_average_before") or [0])[0] > (mi.get("cores") or 1)
    lines.append(f"Machine: {mi.get('cpu')} ({mi.get('cores')} cores), Python {mi.get('python')}, "
                 f"onnxruntime {mi.get('onnxruntime')}, numpy {mi.get('numpy')}, ai-edge-litert "
                 f"{mi.get('ai_edge_litert') or 'not installed'}; {report.get('threads', 1)} thread(s); "
                 f"single-core sgemm {report.get('sgemm_gflops', 0):.0f} GFLOP/s; load average "
                 f"{report.get('load_average_before')} before, {report.get('load_average_after')} after. "
                 "Throughputs are the best of repeated runs, latencies the distribution."
                 + (" The machine was busy (load above its core count): p99 latencies and cross-run comparisons "
                    "suffer most." if busy else ""))
    lines.append("")
    head = ["model", "file KB", "bundle KB", "latency p50 / p99 us", "win/s b=1", "b=32", "b=256", "% of bound",
            "exact us/sample", "burst-64 us/sample", "stateful us/sample", f"{STREAMS} streams exact / stateful us/sample",
            "cold start s", "peak RSS MB stream / +b=256"]
    rows = [head, ["---"] * len(head)]
    for r in report.get("models", []):
        s = r["stream_us_per_sample"]
        multi = f"{_num(s.get(f'multistream_{STREAMS}_exact'))} / {_num(s.get(f'multistream_{STREAMS}_stateful'))}"
        rows.append([
            r["label"], f"{r['model_bytes'] / 1024:.1f}", f"{r['bundle_bytes'] / 1024:.1f}",
            f"{r['latency_us']['p50']:.0f} / {r['latency_us']['p99']:.0f}",
            *(f"{r['windows_per_s'][str(b)]:.0f}" for b in BATCHES),
            "-" if r.get("compute_bound_fraction") is None else f"{100 * r['compute_bound_fraction']:.0f} %",
            _num(s.get("exact")), _num(s.get("exact_burst_64")), _num(s.get("stateful")), multi,
            "-" if r.get("cold_start_s") is None else f"{r['cold_start_s']:.3f}",
            "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f} / {_num(r.get('peak_rss_batch256_mb'))}",
        ])
    keras = report.get("keras")
    if keras:
        for kind, name in (("predict", "Keras model.predict"), ("call", "Keras model(x)")):
            lat = keras.get(f"{kind}_latency_us")
            wps = keras.get(f"{kind}_windows_per_s") or {}
            if not lat:
                continue
            rows.append([name, f"{keras['model_bytes'] / 1024:.1f}", "-", f"{lat['p50']:.0f} / {lat['p99']:.0f}",
                         *(f"{wps[str(b)]:.0f}" if str(b) in wps else "-" for b in BATCHES),
                         "-", "-", "-", "-", "-", "-", "-"])
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    targets = report.get("targets") or []
    if targets:
        lines += ["", "| target | goal | measured | status |", "| --- | --- | --- | --- |"]
        for t in targets:
            status = t["status"] + (f": {t['miss']}" if t["status"] == "missed" and t["miss"] else "")
            if t["status"] == "missed" and t["why"]:
                status += f" ({t['why']})"
            lines.append(f"| {t['target']} | {t['goal']} | {t['measured'] if t['measured'] is not None else '-'} | {status} |")
    return "\n".join(lines) + "\n"


def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-score bench",
                                description="Benchmark bundles with the runtime alone: latency, throughput, "
                                            "streaming, cold start, peak RSS, size, compute bound.")
    p.add_argument("bundles", nargs="+", help="bundle directories (compared side by side in one run)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1, as the targets assume)")
    p.add_argument("--budget", type=float, default=1.0, help="seconds spent per measurement (default 1.0)")
    p.add_argument("--json", dest="json_out", default=None, help="write the report as JSON ('-' for stdout)")
    p.add_argument("--markdown", dest="markdown_out", default=None, help="write the markdown table ('-' for stdout)")
    p.add_argument("--write-profile", default=None, metavar="PROFILE.toml",
                   help="run on the gateway itself: record the first bundle's p50 window latency as the "
                        "profile's [measured] table, which fit checks then use instead of the speed-factor estimate")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for b in args.bundles:
        try:
            read_manifest(b)
        except BundleError as e:
            print(f"edge-score bench: {e}", file=sys.stderr)
            return 2
    report = run_benchmarks(args.bundles, threads=args.threads, budget_s=args.budget,
                            log=lambda m: print(m, file=sys.stderr))
    write_outputs(report, args.json_out, args.markdown_out)
    if args.write_profile:
        from .device_profile import ProfileError, write_measured

        first = report["models"][0]
        latency_ms = first["latency_us"]["p50"] / 1000.0
        try:
            write_measured(args.write_profile, latency_ms, runtime=_runtime_label(),
                           notes=f"{first['label']}, {args.threads} thread(s), p50 of single-window calls")
        except (OSError, ProfileError) as e:
            print(f"edge-score bench: cannot update {args.write_profile}: {e}", file=sys.stderr)
            return 2
        print(f"wrote [measured] latency_ms_per_window = {latency_ms:.4g} into {args.write_profile}", file=sys.stderr)
    return 0


def _runtime_label() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}, {platform.machine()}"


def write_outputs(report: dict, json_out: str | None, markdown_out: str | None) -> None:
    text = json.dumps(report, indent=1, default=float)
    if json_out == "-":
        print(text)
    elif json_out:
        Path(json_out).write_text(text + "\n", encoding="utf-8")
    md = to_markdown(report)
    if markdown_out and markdown_out != "-":
        Path(markdown_out).write_text(md, encoding="utf-8")
    if json_out != "-":  # stdout shows the table unless it carries the JSON
        print(md, end="")


if __name__ == "__main__":
    sys.exit(main())
