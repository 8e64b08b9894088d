"""The two commands as users run them: gru-edge (workstation) and edge-score (gateway)."""

import json
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from gru_edge.cli import cli
from gru_edge.edge_runtime.cli import main as edge_score


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_help_starts_fast_without_tensorflow():
    code = "import sys, time; t=time.time(); from gru_edge.cli import cli; print('tensorflow' in sys.modules)"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert time.perf_counter() - started < 5  # generous: the point is no TensorFlow import (~2-4 s alone)


def test_devices_lists_profiles():
    code, out = _run("devices")
    assert code == 0
    for name in ("rpi4", "rpi-zero2w", "x86-gateway", "jetson-orin-nano-cpu"):
        assert name in out


def test_synth_is_deterministic(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert _run("data", "synth", "--out", a, "--rows", 1000, "--seed", 3)[0] == 0
    assert _run("data", "synth", "--out", b, "--rows", 1000, "--seed", 3)[0] == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_text().splitlines()[0].startswith("timestamp,")


def test_exported_graph_is_fused_gru_without_loop(tiny_bundle):
    ops = {n.op_type for n in onnx.load(str(tiny_bundle / "model.onnx")).graph.node}
    assert "GRU" in ops and "Loop" not in ops and "Scan" not in ops


def test_parity_command_passes_for_fp32_and_int8(tiny_run, tiny_bundle, tiny_bundle_int8):
    code, out = _run("parity", tiny_run.dir, tiny_bundle, tiny_bundle_int8)
    assert code == 0, out
    assert out.count("PASS") == 2


def test_parity_command_fails_on_a_foreign_bundle(tiny_run, tiny_bundle, tmp_path):
    """A bundle whose threshold was moved decides differently: parity must exit non-zero."""
    import shutil

    other = tmp_path / "moved"
    shutil.copytree(tiny_bundle, other)
    m = json.loads((other / "manifest.json").read_text())
    m["score"]["threshold"] = 0.0  # every window flagged
    (other / "manifest.json").write_text(json.dumps(m))
    result = CliRunner().invoke(cli, ["parity", str(tiny_run.dir), str(other)])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output


def test_edge_score_reports_bad_lines_and_keeps_going(tiny_bundle, synth_csv, tmp_path, capsys):
    lines = synth_csv.read_text().splitlines()
    header, rows = lines[0], lines[1:200]
    rows.insert(80, rows[80].replace(rows[80].split(",")[2], "abc", 1))  # line 82: non-numeric pressure
    rows.insert(120, "2026-01-01T00:00:00Z,1,2")  # line 122: too few fields
    rows.insert(150, rows[150].replace(rows[150].split(",")[3], "nan", 1))  # line 152: missing flow
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([header, *rows]) + "\n")
    assert edge_score([str(tiny_bundle), "--input", str(bad)]) == 0
    captured = capsys.readouterr()
    assert "line 82, column 'pressure': expected a number, got 'abc'" in captured.err
    assert "line 122: expected 7 fields" in captured.err
    assert "line 152, column 'flow'" in captured.err
    summary = json.loads(captured.err.strip().splitlines()[-1])["summary"]
    assert summary["bad_lines"] == 3 and summary["samples"] == 199
    out = [json.loads(l) for l in captured.out.splitlines()]
    assert [r["index"] for r in out] == list(range(31, 199))  # window 32: first score at sample 31, no gaps
    assert {"index", "line", "timestamp", "score", "anomaly"} <= set(out[0])


def test_edge_score_refuses_a_tampered_bundle(tiny_bundle, synth_csv, tmp_path, capsys):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    assert edge_score([str(copy), "--input", str(synth_csv)]) == 2
    assert "refusing bundle" in capsys.readouterr().err


def test_edge_score_input_missing_a_feature_column(tiny_bundle, tmp_path, capsys):
    bad = tmp_path / "cols.csv"
    bad.write_text("timestamp,pump_current,pressure\n2026,1,2\n")
    assert edge_score([str(tiny_bundle), "--input", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "flow" in err and "missing" in err.lower()


def test_edge_score_reads_stdin_as_a_pipe(tiny_bundle, synth_csv):
    text = "\n".join(synth_csv.read_text().splitlines()[:101]) + "\n"
    proc = subprocess.run([sys.executable, "-m", "gru_edge.edge_runtime.cli", str(tiny_bundle), "--input", "-"],
                          input=text, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 100 - 32 + 1


@pytest.mark.parametrize("content,message", [
    ("timestamp,a,b,label\n1,1.0,2.0,0\n2,x,2.0,0\n", "line 3, column 'a': expected a number, got 'x'"),
    ("timestamp,a,b,label\n1,1.0,2.0,0\n2,1.0,2.0,7\n", "line 3, column 'label'"),
    ("timestamp,a,b,label\n1,1.0,2.0\n", "line 2: expected 4 fields"),
    ("", "empty"),
])
def test_train_reports_bad_csv_with_line_and_column(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, out = _run("train", path, "--out", tmp_path / "run", "--label-column", "label", "--features", "a,b")
    assert code != 0
    assert message in out
    assert "Traceback" not in out
    assert not (tmp_path / "run").exists()


def test_train_missing_feature_column_is_named(synth_csv, tmp_path):
    code, out = _run("train", synth_csv, "--out", tmp_path / "run", "--features", "flow,torque")
    assert code != 0 and "torque" in out


def test_failed_export_leaves_the_existing_bundle_untouched(tiny_run, tiny_bundle, tmp_path):
    import shutil

    from conftest import REPO

    target = tmp_path / "live"
    shutil.copytree(tiny_bundle, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    tiny_gateway = tmp_path / "tiny-gateway.toml"
    text = (REPO / "devices" / "rpi4.toml").read_text()
    tiny_gateway.write_text(text.replace("model_storage_budget_kb = 8192", "model_storage_budget_kb = 1"))
    code, out = _run("export", tiny_run.dir, "--out", target, "--device", tiny_gateway, "--no-cross-check")
    assert code != 0 and "allows 1 KB" in out, out
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live", "tiny-gateway.toml"]  # no staging litter
