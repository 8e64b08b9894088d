from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from .errors import friendly_errors


@click.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--compare", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="another bundle measured in the same run (repeatable), e.g. the int8 one")
@click.option("--vs-keras", "run_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="also time RUN_DIR's Keras model (predict and direct call) and LiteRT conversions of it")
@click.option("--litert", default="dynamic", show_default=True,
              help="TFLite variants to convert from --vs-keras RUN_DIR and time with the LiteRT interpreter "
                   "(comma-separated among none,fp16,dynamic,int8; '' for none)")
@click.option("--threads", default=1, show_default=True, help="threads for every runtime (the targets assume 1)")
@click.option("--budget", default=1.0, show_default=True, help="seconds per measurement")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="write the report as JSON")
@click.option("--markdown", "markdown_out", default=None, type=click.Path(dir_okay=False),
              help="write the markdown tables")
@friendly_errors
def bench(bundle_dir, compare, run_dir, litert, threads, budget, json_out, markdown_out) -> None:
    """Latency, throughput, streaming cost, cold start, RSS and size of BUNDLE_DIR, side by side with Keras and LiteRT.

    Each runtime is measured in a child process of its own: the bundles by the runtime alone (as
    `edge-score bench` on a gateway), Keras with TensorFlow pinned to one thread.
    """
    from ..edge_runtime.bench import write_outputs

    lite = tuple(q.strip() for q in litert.split(",") if q.strip())
    report = run_bench([bundle_dir, *compare], run_dir, lite, threads, budget,
                       log=lambda m: click.echo(m, err=True))
    write_outputs(report, json_out, markdown_out)


def run_bench(bundles: list[str], run_dir: str | None = None, litert: tuple[str, ...] = ("dynamic",),
              threads: int = 1, budget: float = 1.0, log=print) -> dict:
    """The whole side-by-side report (also used by benchmarks/bench_export.py)."""
    from ..edge_runtime.bench import add_compute_bound, evaluate_targets

    bundles = [str(b) for b in bundles]
    with tempfile.TemporaryDirectory(prefix="gru-edge-bench-") as tmp:
        if run_dir:
            from ..export.exporter import export

            for q in litert:
                out = Path(tmp) / f"litert-{q}"
                log(f"exporting a TFLite {q} bundle from {run_dir} for the LiteRT side ...")
                export(run_dir, out, quantize=q, format="tflite", cross_check=False, step=False,
                       log=lambda m: log(f"    {m}"))
                bundles.append(str(out))
        report = _child_json([sys.executable, "-m", "gru_edge.edge_runtime.bench", *bundles, "--json", "-",
                              "--threads", str(threads), "--budget", str(budget)], "runtime benchmark")
    if run_dir:
        log("timing the Keras model ...")
        report["keras"] = _child_json([sys.executable, "-m", "gru_edge.export.keras_bench", str(run_dir),
                                       str(budget)], "Keras benchmark")
    add_compute_bound(report)
    report["targets"] = evaluate_targets(report)
    return report


def _child_json(cmd: list[str], what: str) -> dict:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
    if proc.returncode != 0:
        raise click.ClickException(f"{what} failed (exit {proc.returncode}); see the messages above")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise click.ClickException(f"{what} printed something that is not its JSON report: {e}") from e
