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
