from __future__ import annotations

import json

import click

from .errors import friendly_errors
from .options import device_option


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--data", default=None, type=click.Path(exists=True, dir_okay=False),
              help="CSV to compare bundles on (default: the run's held-out test part)")
@click.option("--matrix", is_flag=True,
              help="build every variant in memory (ONNX fp32/fp16/int8, TFLite fp32/fp16/dynamic/int8) and compare "
                   "each with Keras; the default when no BUNDLE_DIRS are given")
@click.option("--formats", default="onnx,tflite", show_default=True, help="formats in the matrix")
@device_option
@click.option("--json", "as_json", is_flag=True, help="print the reports as JSON")
@friendly_errors
def parity(run_dir, bundle_dirs, data, matrix, formats, device, as_json) -> None:
    """Compare bundles (or every export variant) with the Keras model of RUN_DIR.

    Reports size, max and mean |diff|, decision agreement, F1 and its delta, and alarm-onset shift.
    Exits 1 when a bundle breaks its tolerance (the matrix only reports: failing variants are expected).
    """
    from ..export.parity import check_parity

    reports = [check_parity(run_dir, b, data=data) for b in bundle_dirs]
    results = []
    if matrix or not bundle_dirs:
        if data is not None:
            raise click.UsageError("--data applies to bundles; the matrix compares on the run's test part")
        from ..edge_runtime.device_profile import load_profile
        from ..export.variants import FORMATS, quantization_matrix

        wanted = tuple(f.strip() for f in formats.split(",") if f.strip())
        unknown = [f for f in wanted if f not in FORMATS]
        if unknown or not wanted:
            raise click.BadParameter(f"expected formats among {FORMATS}, got {formats!r}", param_hint="--formats")
        profile = load_profile(device) if device else None
        log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
        results = quantization_matrix(run_dir, wanted, profile=profile, log=log)
    if as_json:
        click.echo(json.dumps({"bundles": [r.to_dict() for r in reports], "matrix": [r.to_dict() for r in results]},
                              indent=1, default=str))
    else:
        for r in reports:
            click.echo(r.summary())
        if results:
            gate = f"device {device!r} decision gates" if device else "default tolerance per quantization"
            click.echo(f"quantization matrix vs Keras on the run's test windows ({gate}):")
            from ..export.variants import matrix_table

            click.echo(matrix_table(results))
    if not all(r.passed for r in reports):
        raise SystemExit(1)
