from __future__ import annotations

import json

import click

from .errors import friendly_errors


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", default=None, type=click.Path(exists=True, dir_okay=False),
              help="CSV to compare on (default: the run's held-out test part)")
@click.option("--json", "as_json", is_flag=True, help="print the reports as JSON")
@friendly_errors
def parity(run_dir, bundle_dirs, data, as_json) -> None:
    """Compare each bundle with the Keras model of RUN_DIR; exit 1 when a tolerance is broken."""
    from ..export.parity import check_parity

    reports = [check_parity(run_dir, b, data=data) for b in bundle_dirs]
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=1, default=str))
    else:
        for r in reports:
            click.echo(r.summary())
    if not all(r.passed for r in reports):
        raise SystemExit(1)
