"""Option parsing shared by several commands, written once."""

from __future__ import annotations

import click


def parse_units(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(u) for u in text.split(","))
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers like 128,64, got {text!r}",
                                 param_hint="--units")
    return units


device_option = click.option("--device", default=None, help="device profile name (see `gru-edge devices`) or .toml path")
