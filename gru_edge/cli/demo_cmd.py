from __future__ import annotations

import time
from pathlib import Path

import click

from .errors import friendly_errors
from .options import parse_units


@click.command()
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="working directory for data, run and bundles")
@click.option("--rows", default=20000, show_default=True, help="rows of generated data (1 s apart)")
@click.option("--epochs", default=15, show_default=True, help="training epochs (early stopping may end sooner)")
@click.option("--train-stride", default=2, show_default=True,
              help="stride of training windows: 2 halves the epoch time while every fault is still seen")
@click.option("--units", default="128,64", show_default=True, help="GRU stack (the reference model by default)")
@click.option("--seed", default=0, show_default=True)
@friendly_errors
def demo(out: str, rows: int, epochs: int, train_stride: int, units: str, seed: int) -> None:
    """The main job on the embedded data: generate -> train -> export (fp32 + int8) -> parity -> stream-score."""
    from ..edge_runtime.scorer import Scorer
    from ..export.exporter import export
    from ..export.parity import check_parity
    from ..train.data import load_csv
    from ..train.pipeline import TrainConfig, train
    from ..train.synth import generate, write_csv

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    step = _Steps()

    csv_path = root / "pump.csv"
    step("generate", f"{rows} rows of pump-station sensor data -> {csv_path}")
    write_csv(generate(rows=rows, seed=seed), csv_path)

    step("train", "GRU classifier on a 70/15/15 time split")
    run = train(TrainConfig(data=str(csv_path), units=parse_units(units), epochs=epochs, train_stride=train_stride,
                            seed=seed), root / "run",
                log=lambda m: click.echo(f"    {m}"))

    bundles = {}
    for quantize in ("none", "int8"):
        name = "bundle-fp32" if quantize == "none" else f"bundle-{quantize}"
        step("export", f"{name} ({quantize} weights)")
        bundles[quantize] = export(run.dir, root / name, quantize=quantize, cross_check=quantize == "none",
                                   log=lambda m: click.echo(f"    {m}"))

    step("parity", "each bundle through edge_runtime vs the Keras model")
    reports = {q: check_parity(run.dir, b.bundle_dir) for q, b in bundles.items()}
    for r in reports.values():
        click.echo(f"    {r.summary()}")

    step("score", "stream the test part sample by sample through edge_runtime (int8 bundle)")
    test_rows = run.record.split_rows["test"]
    data = load_csv(csv_path, features=run.record.features)
    samples = data.values[test_rows[0] : test_rows[1]]
    stream = Scorer(bundles["int8"].bundle_dir).stream()
    t0 = time.perf_counter()
    events = [e for e in (stream.push(s) for s in samples) if e is not None]
    rate = len(samples) / (time.perf_counter() - t0)
    alarms = sum(e.anomaly for e in events)

    t = run.record.metrics["test"]
    click.echo("")
    click.echo("summary")
    click.echo(f"  test F1 {t['f1']:.3f}  precision {t['precision']:.3f}  recall {t['recall']:.3f}  "
               f"ROC-AUC {t['roc_auc']:.3f}  (threshold {run.record.threshold:.3f})")
    for q, b in bundles.items():
        r = reports[q]
        click.echo(f"  {b.bundle_dir.name:12s} {b.bytes / 1024:7.1f} KB  max |diff| {r.max_abs_diff:.1e}  "
                   f"decisions agree {100 * r.decision_agreement:.2f}%  {'PASS' if r.passed else 'FAIL'}")
    click.echo(f"  streaming: {len(samples)} samples, {len(events)} scored, {alarms} alarms, {rate:,.0f} samples/s")
    click.echo(f"  total {time.perf_counter() - started:.0f} s; try: edge-score {root / 'bundle-int8'} --input {csv_path}")
    if not all(r.passed for r in reports.values()):
        raise SystemExit(1)


class _Steps:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, name: str, what: str) -> None:
        self.n += 1
        click.echo(f"[{self.n}] {name}: {what}")
