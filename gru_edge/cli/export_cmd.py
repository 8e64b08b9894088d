from __future__ import annotations

import click

from .errors import friendly_errors
from .options import device_option


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="bundle directory to write")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite"]), default=None,
              help="model format (default: the device profile's, else onnx); tflite needs gru-edge[litert] to score")
@click.option("--quantize", type=click.Choice(["none", "fp16", "dynamic", "int8", "auto"]), default=None,
              help="onnx: none|fp16|int8 weight storage; tflite: none|fp16|dynamic|int8 (full int8, calibrated on "
                   "training windows); auto: the smallest variant passing the device's decision gates "
                   "(default: the device profile's, else none)")
@device_option
@click.option("--no-step", is_flag=True, help="leave out the single-step model used by stateful streaming")
@click.option("--no-cross-check", is_flag=True, help="skip the independent tf2onnx conversion check")
@friendly_errors
def export(run_dir, out, fmt, quantize, device, no_step, no_cross_check) -> None:
    """Export RUN_DIR to an edge bundle (fused-GRU ONNX or TFLite), gated by parity with the Keras model."""
    from ..export.exporter import export as run_export

    result = run_export(run_dir, out, quantize=quantize, device=device, cross_check=not no_cross_check,
                        log=click.echo, format=fmt, step=not no_step)
    click.echo(f"wrote {out}: {result.bytes / 1024:.1f} KB model, {result.parity.summary()}")
