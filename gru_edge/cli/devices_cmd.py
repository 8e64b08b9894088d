from __future__ import annotations

import click

from .errors import friendly_errors


@click.group(invoke_without_command=True)
@click.pass_context
@friendly_errors
def devices(ctx: click.Context) -> None:
    """List the gateway profiles export and the runtime read."""
    if ctx.invoked_subcommand is not None:
        return
    from ..edge_runtime.device_profile import list_profiles

    rows = [("name", "arch", "cores", "RAM MB", "budget KB", "format", "quant", "threads", "latency ms")]
    for p in list_profiles():
        rows.append((p.name, p.arch, str(p.cores), str(p.ram_mb), str(p.model_storage_budget_kb), p.format,
                     p.quantization, str(p.threads), f"{p.latency_budget_ms:g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@devices.command("check")
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--device", required=True, help="device profile name (see `gru-edge devices`) or .toml path")
@click.option("--memory-fraction", type=click.FloatRange(0, 1, min_open=True), default=0.25, show_default=True,
              help="share of the device's RAM the scoring loop may use")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@friendly_errors
def check(bundle_dir, device, memory_fraction, as_json) -> None:
    """Will BUNDLE_DIR fit DEVICE? Storage, memory and latency against the profile; exit 1 if not."""
    import json

    from ..edge_runtime.device_profile import load_profile
    from ..edge_runtime.fit_check import FitError, check_fit

    try:
        report = check_fit(bundle_dir, load_profile(device), memory_fraction=memory_fraction)
    except FitError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(report.to_dict(), indent=1) if as_json else report.table())
    if not report.passed:
        raise SystemExit(1)
