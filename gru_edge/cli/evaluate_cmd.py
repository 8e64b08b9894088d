from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .errors import friendly_errors as _friendly_errors

_VARIANTS = "keras,onnx-fp32,onnx-int8"


def friendly_errors(fn):
    """The toolkit's errors plus the benchmark ones (missing corpus, missing matplotlib) as one clean line."""
    import functools

    inner = _friendly_errors(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..evaluate.datasets import DatasetError
        from ..evaluate.report import ReportError

        try:
            return inner(*args, **kwargs)
        except (DatasetError, ReportError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def _variants(text: str) -> tuple[str, ...]:
    from ..evaluate.series_run import VARIANTS

    chosen = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in chosen if v not in VARIANTS]
    if not chosen or unknown:
        raise click.BadParameter(f"expected a comma-separated subset of {','.join(VARIANTS)}, got {text!r}",
                                 param_hint="--variants")
    return chosen


def _common(fn):
    fn = click.option("--variants", default=_VARIANTS, show_default=True,
                      help="what scores: the Keras model, and the fp32 / int8 bundles through edge_runtime")(fn)
    fn = click.option("--jobs", default=min(2, os.cpu_count() or 1), show_default=True,
                      help="series trained in parallel (one single-threaded process each)")(fn)
    fn = click.option("--report", "report_dir", default=None, type=click.Path(file_okay=False),
                      help="write a PNG per series and index.md here (needs the 'plots' extra)")(fn)
    fn = click.option("--limit", default=None, type=int, help="evaluate only N series, spread over the corpus")(fn)
    fn = click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
                      help="write the summary (per variant and per series) as JSON")(fn)
    return click.argument("path", type=click.Path(exists=True, file_okay=False))(fn)


@click.group()
def evaluate() -> None:
    """Detection quality on public benchmarks (SKAB, NAB) and score reports of a run."""


@evaluate.command()
@_common
@friendly_errors
def skab(path, json_out, limit, report_dir, jobs, variants) -> None:
    """SKAB outlier detection under its protocol (e.g. PATH = ../shared/datasets/skab)."""
    from ..evaluate.leaderboards import skab_table
    from ..evaluate.skab import run_skab

    if report_dir:
        _check_plots()
    result = run_skab(path, limit=limit, jobs=jobs, variants=_variants(variants), log=click.echo)
    click.echo("")
    for v, m in result.variants.items():
        click.echo(f"{v:10s} F1 {m['f1']:.3f}  FAR {m['far']:.2f} %  MAR {m['mar']:.2f} %")
    click.echo(f"{len(result.series)} series in {result.seconds:.0f} s\n")
    click.echo(skab_table({f"gru-edge ({v})": m for v, m in result.variants.items()}))
    _finish(result, json_out, report_dir, "skab", path)


@evaluate.command()
@_common
@friendly_errors
def nab(path, json_out, limit, report_dir, jobs, variants) -> None:
    """NAB with its scoring rule and per-profile corpus thresholds (e.g. PATH = ../shared/datasets/nab)."""
    from ..evaluate.leaderboards import nab_table
    from ..evaluate.nab import run_nab

    if report_dir:
        _check_plots()
    result = run_nab(path, limit=limit, jobs=jobs, variants=_variants(variants), log=click.echo)
    click.echo("")
    for v, m in result.variants.items():
        p = m["plain"]
        click.echo(f"{v:10s} standard {m['standard']:.2f}  low FP {m['low_fp']:.2f}  low FN {m['low_fn']:.2f}   "
                   f"(plain score / own threshold: {p['standard']:.2f}, {p['low_fp']:.2f}, {p['low_fn']:.2f})")
    click.echo(f"{len(result.series)} series in {result.seconds:.0f} s\n")
    click.echo(nab_table({f"gru-edge ({v})": m for v, m in result.variants.items()}))
    _finish(result, json_out, report_dir, "nab", path)


@evaluate.command("run")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--report", "report_dir", default=None, type=click.Path(file_okay=False),
              help="where to write the report (default: RUN_DIR/report)")
@friendly_errors
def run_report(run_dir, bundle_dirs, report_dir) -> None:
    """Score distributions of normal vs anomalous held-out windows and the threshold, for RUN_DIR's Keras
    model and each exported bundle (scored through edge_runtime)."""
    from ..evaluate.report import training_report

    _check_plots()
    click.echo(f"report: {training_report(run_dir, list(bundle_dirs), report_dir)}")


def _check_plots() -> None:
    from ..evaluate.report import ReportError, pyplot

    try:
        pyplot()
    except ReportError as e:
        raise click.ClickException(str(e)) from None


def _finish(result, json_out, report_dir, benchmark: str, path) -> None:
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result.to_dict(), indent=1, allow_nan=False, default=_jsonable) + "\n",
                                  encoding="utf-8")
        click.echo(f"\nwrote {json_out}")
    if report_dir:
        from ..evaluate.report import nab_report, skab_report

        page = (skab_report if benchmark == "skab" else nab_report)(result, path, report_dir)
        click.echo(f"report: {page}")


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float):
        return None
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
