from __future__ import annotations

import click

from .errors import friendly_errors


@click.group()
def data() -> None:
    """Datasets: generate the embedded demo data."""


@data.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="CSV file to write")
@click.option("--rows", default=8000, show_default=True, help="samples (1 s apart)")
@click.option("--seed", default=0, show_default=True, help="random seed (same seed, same file)")
@friendly_errors
def synth(out: str, rows: int, seed: int) -> None:
    """Generate labelled pump-station sensor data with six kinds of anomalies."""
    from ..train.synth import generate, write_csv

    series = generate(rows=rows, seed=seed)
    write_csv(series, out)
    kinds = sorted({k for k, _, _ in series.kinds})
    click.echo(
        f"wrote {out}: {rows} rows, {len(series.feature_names)} channels ({', '.join(series.feature_names)}), "
        f"{int(series.labels.sum())} anomalous samples in {len(series.kinds)} events ({', '.join(kinds)})"
    )
