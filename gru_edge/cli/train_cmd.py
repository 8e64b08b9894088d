from __future__ import annotations

import click

from .errors import friendly_errors
from .options import parse_units


@click.command()
@click.argument("data_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory to write")
@click.option("--label-column", default=None, help="0/1 label column (default: a column named 'label')")
@click.option("--features", default=None, help="comma-separated feature columns (default: every numeric column)")
@click.option("--timestamp-column", default=None, help="timestamp column (default: auto-detected by name)")
@click.option("--delimiter", default=None, help="CSV delimiter (default: sniffed; ';' works)")
@click.option("--window", default=64, show_default=True, help="samples per window")
@click.option("--stride", default=1, show_default=True, help="scoring stride written into the bundle")
@click.option("--train-stride", default=1, show_default=True, help="stride of training windows")
@click.option("--split", default="0.7,0.15,0.15", show_default=True, help="train,validation,test fractions (time order)")
@click.option("--units", default="128,64", show_default=True, help="GRU stack, e.g. 32,16 for small gateways")
@click.option("--epochs", default=20, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--learning-rate", default=1e-3, show_default=True)
@click.option("--patience", default=4, show_default=True, help="early-stopping patience (epochs)")
@click.option("--threshold", type=click.Choice(["best-f1", "far"]), default="best-f1", show_default=True,
              help="best F1 on validation, or a target false-alarm rate")
@click.option("--target-far", default=0.01, show_default=True, help="false-alarm rate for --threshold far")
@click.option("--max-gap", default=5, show_default=True, help="longest NaN gap (samples) interpolated")
@click.option("--seed", default=0, show_default=True)
@click.option("--mode", type=click.Choice(["classifier", "normal-only"]), default="classifier", show_default=True,
              help="classifier: learn 0/1 labels; normal-only: forecast normal data (label-0 rows, or all rows "
                   "without labels) and score the standardised forecast error")
@click.option("--target", type=click.Choice(["delta", "next"]), default="delta", show_default=True,
              help="normal-only: forecast the next sample's change (delta) or the sample itself")
@click.option("--error-steps", default=None, type=int,
              help="normal-only: forecast errors of the window's last N samples averaged into one score "
                   "[default: 16, at most window - 1]")
@click.option("--threshold-factor", default=1.0, show_default=True,
              help="normal-only without validation labels: threshold = factor x the (1 - target-far) quantile "
                   "of normal validation scores")
@click.option("--report", "report", is_flag=True,
              help="write report/ into the run: score distribution of normal vs anomalous windows and the "
                   "threshold (PNG needs the 'plots' extra)")
@friendly_errors
def train(data_csv, out, label_column, features, timestamp_column, delimiter, window, stride, train_stride, split,
          units, epochs, batch_size, learning_rate, patience, threshold, target_far, max_gap, seed, mode, target,
          error_steps, threshold_factor, report) -> None:
    """Train the GRU detector on DATA_CSV; writes the Keras model and train.json into --out."""
    from ..train.pipeline import TrainConfig, train as run_training

    config = TrainConfig(
        data=data_csv, label_column=label_column,
        features=[f.strip() for f in features.split(",")] if features else None,
        timestamp_column=timestamp_column, delimiter=delimiter, window=window, stride=stride,
        train_stride=train_stride, split=_fractions(split), units=parse_units(units), epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, patience=patience, threshold=threshold,
        target_far=target_far, max_gap=max_gap, seed=seed, mode=mode, target=target,
        threshold_factor=threshold_factor,
    )
    # The default smoothing fits any window; an explicit value is checked (and refused) by training.
    config.error_steps = error_steps if error_steps is not None else min(config.error_steps, max(window - 1, 1))
    run = run_training(config, out, log=click.echo)
    t = run.record.metrics["test"]
    if "f1" in t:
        click.echo(f"wrote {out}: test F1 {t['f1']:.3f} (precision {t['precision']:.3f}, recall {t['recall']:.3f})")
    else:
        click.echo(f"wrote {out}: test alarm rate {t['alarm_rate']:.4f} (no labels)")
    if report:
        from ..evaluate.report import training_report

        page = training_report(run.dir)
        click.echo(f"report: {page}")


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three comma-separated fractions, got {text!r}", param_hint="--split")
    if len(parts) != 3:
        raise click.BadParameter(f"expected three fractions (train,validation,test), got {text!r}", param_hint="--split")
    return parts
