from __future__ import annotations

import click

from .errors import friendly_errors
from .options import device_option, quantize_option


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="bundle directory to write")
@quantize_option
@device_option
@click.option("--no-cross-check", is_flag=True, help="skip the independent tf2onnx conversion check")
@friendly_errors
def export(run_dir, out, quantize, device, no_cross_check) -> None:
    """Export RUN_DIR to a fused-GRU ONNX bundle, gated by parity with the Keras model."""
    from ..export.exporter import export as run_export

    result = run_export(run_dir, out, quantize=quantize, device=device, cross_check=not no_cross_check,
                        log=click.echo)
    click.echo(f"wrote {out}: {result.bytes / 1024:.1f} KB model, {result.parity.summary()}")
