"""Shared fixtures: one small dataset, one tiny trained run and its bundles per test session.

Training is the slow part, so it happens once here and every end-to-end test reuses it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
TINY_UNITS = (16, 8)


@pytest.fixture(scope="session")
def synth_csv(tmp_path_factory) -> Path:
    from gru_edge.train.synth import generate, write_csv

    path = tmp_path_factory.mktemp("data") / "pump.csv"
    write_csv(generate(rows=3000, seed=1), path)
    return path


@pytest.fixture(scope="session")
def tiny_run(synth_csv, tmp_path_factory):
    """A classifier trained for a few epochs: good enough to have real, varied scores."""
    from gru_edge.train.pipeline import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train(TrainConfig(data=str(synth_csv), units=TINY_UNITS, epochs=3, window=32, seed=0), out,
                 log=lambda m: None)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    from gru_edge.export.exporter import export

    out = tmp_path_factory.mktemp("bundles") / "tiny-fp32"
    export(tiny_run.dir, out, quantize="none", cross_check=True, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def tiny_bundle_int8(tiny_run, tmp_path_factory) -> Path:
    from gru_edge.export.exporter import export

    out = tmp_path_factory.mktemp("bundles") / "tiny-int8"
    export(tiny_run.dir, out, quantize="int8", cross_check=False, log=lambda m: None)
    return out
