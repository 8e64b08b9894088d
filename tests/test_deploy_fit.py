"""`gru-edge devices check`: storage, memory and latency of a bundle against a device profile."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from click.testing import CliRunner

from gru_edge.edge_runtime.device_profile import load_profile
from gru_edge.edge_runtime.fit_check import bundle_bytes, check_fit
from test_deploy_support import make_bundle

REPO = Path(__file__).resolve().parent.parent

PROFILE = """
name = "tiny-gw"
description = "test gateway"
arch = "aarch64"
cpu = "test"
cores = 2
ram_mb = {ram}
model_storage_budget_kb = {storage}
format = "onnx"
quantization = "none"
threads = 1
latency_budget_ms = {budget}
speed_factor = 10.0

[parity]
max_abs_diff = 0.01
min_decision_agreement = 0.99
max_f1_drop = 0.01
{measured}
"""


def profile(tmp_path, ram=512, storage=256, budget=5.0, measured=""):
    path = tmp_path / "tiny-gw.toml"
    path.write_text(PROFILE.format(ram=ram, storage=storage, budget=budget, measured=measured))
    return load_profile(str(path))


FIGURES = {"runtime_rss_kb": 30_000, "session_rss_kb": 60_000, "end_rss_kb": 64_000, "peak_rss_kb": 65_536,
           "threads": 1, "windows": 300, "latency_ms_p50": 0.2, "latency_ms_p95": 0.3}


def test_each_budget_passes_and_fails_on_its_own(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    size = bundle_bytes(bundle)
    assert size == sum(p.stat().st_size for p in bundle.iterdir())
    ok = check_fit(bundle, profile(tmp_path), measured=FIGURES)
    assert ok.passed and [r.check for r in ok.rows] == ["storage", "memory", "latency", "format"]
    lat = ok.rows[2]
    assert lat.value == "2.000 ms/window" and "x speed_factor 10" in lat.note  # 0.2 ms here x 10
    bad_storage = check_fit(bundle, profile(tmp_path, storage=1), measured=FIGURES)
    assert [r.passed for r in bad_storage.rows] == [size <= 1024, True, True, True]
    bad_memory = check_fit(bundle, profile(tmp_path, ram=128), measured=FIGURES)  # 25% of 128 MB < 64 MB
    assert [r.passed for r in bad_memory.rows] == [True, False, True, True]
    bad_latency = check_fit(bundle, profile(tmp_path, budget=1.5), measured=FIGURES)
    assert [r.passed for r in bad_latency.rows] == [True, True, False, True]
    assert "does NOT fit tiny-gw" in bad_latency.table()


def test_a_measured_figure_replaces_the_estimate(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    measured = '[measured]\nlatency_ms_per_window = 7.5\nmeasured_at = "2026-01-02"\n'
    report = check_fit(bundle, profile(tmp_path, budget=5.0, measured=measured), measured=FIGURES)
    lat = report.rows[2]
    assert lat.value == "7.500 ms/window" and not lat.passed and "measured on the device (2026-01-02)" in lat.note


def test_cli_measures_for_real(tmp_path):
    from gru_edge.cli import cli

    bundle = make_bundle(tmp_path / "b")
    prof = profile(tmp_path)
    r = CliRunner().invoke(cli, ["devices", "check", str(bundle), "--device", prof.path, "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    m = report["measured"]
    assert report["passed"] and 10_000 < m["peak_rss_kb"] < 1_000_000 and 0 < m["latency_ms_p50"] < 50
    assert m["session_rss_kb"] >= m["runtime_rss_kb"] > 0
    r = CliRunner().invoke(cli, ["devices", "check", str(bundle), "--device", prof.path, "--memory-fraction", "0.01"])
    assert r.exit_code == 1 and "FAIL" in r.output and "memory" in r.output


def _unit(text: str) -> dict[str, str]:
    values, key = {}, None
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def test_systemd_unit_runs_the_loop_with_options_edge_score_accepts():
    from gru_edge.edge_runtime.cli import build_parser
    from gru_edge.edge_runtime.watch import wants_loop

    unit = _unit((REPO / "deploy" / "edge-score.service").read_text())
    assert unit["Restart"] == "on-failure" and unit["Type"] == "simple"
    env = dict(item.split("=", 1) for item in shlex.split(unit["Environment"]))
    argv = shlex.split(unit["ExecStart"].replace("${GATEWAY_DIR}", env["GATEWAY_DIR"]))
    assert argv[0].endswith("/edge-score")
    args = build_parser().parse_args(argv[1:])
    assert wants_loop(args) and args.watch == "/var/lib/gru-edge" and args.mqtt_topic and args.health_interval == 60
    assert unit["ReadOnlyPaths"] == env["GATEWAY_DIR"]
