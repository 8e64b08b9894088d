"""The ``gru-edge`` command. Each command group lives in its own module and imports its heavy
dependencies (TensorFlow, tf2onnx) inside the command, so ``gru-edge --help`` starts instantly."""

from __future__ import annotations

import os

import click

from .. import __version__
from .bench_cmd import bench
from .data_cmd import data
from .demo_cmd import demo
from .deploy_cmd import flash, rollback, sign, versions
from .devices_cmd import devices
from .evaluate_cmd import evaluate
from .export_cmd import export
from .parity_cmd import parity
from .train_cmd import train

# TensorFlow's C++ start-up chatter hides the useful output; users can still raise it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gru-edge")
def cli() -> None:
    """Train a GRU anomaly detector, export it to an edge bundle, check parity, score streams."""


for command in (data, train, export, parity, devices, demo):
    cli.add_command(command)

# Speed and size of bundles against Keras and LiteRT.
cli.add_command(bench)

# Detection quality on SKAB and NAB against their leaderboards; score reports of a run.
cli.add_command(evaluate)


# Gateway deployment: flash, roll back, list versions, sign bundles.
for command in (flash, rollback, versions, sign):
    cli.add_command(command)


def main() -> None:
    cli()
