"""Turning the toolkit's own errors into one clean line and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools

import click


def _expected_errors() -> tuple[type[BaseException], ...]:
    from ..edge_runtime.bundle import BundleError
    from ..edge_runtime.csv_input import InputError
    from ..edge_runtime.device_profile import ProfileError
    from ..edge_runtime.manifest import ManifestError
    from ..train.record import RunError

    errors: list[type[BaseException]] = [BundleError, InputError, ProfileError, ManifestError, RunError]
    try:
        from ..train.pipeline import TrainError
        from ..export.exporter import ExportError

        errors += [TrainError, ExportError]
    except ImportError:  # a runtime-only install has no training side
        pass
    return tuple(errors)


def friendly_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _expected_errors() as e:
            raise click.ClickException(str(e)) from e

    return wrapper
