"""The gateway install: edge_runtime needs only the standard library, numpy and onnxruntime."""

import ast
import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

ALLOWED = {"numpy", "onnxruntime"} | set(sys.stdlib_module_names)
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "onnx", "click", "tf_keras")


def test_edge_runtime_imports_only_stdlib_numpy_onnxruntime():
    offenders = []
    for path in sorted((REPO / "edge_runtime").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] not in ALLOWED]
    assert not offenders, offenders


def test_runtime_scores_with_heavy_libraries_blocked(tiny_bundle, synth_csv):
    """Every runtime module imports, and edge-score runs, while TensorFlow & co. cannot be imported."""
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        FORBIDDEN = {FORBIDDEN!r}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in FORBIDDEN:
                    raise ImportError("blocked in this test: " + name)
        sys.meta_path.insert(0, Block())
        import gru_edge.edge_runtime as rt
        for m in pkgutil.iter_modules(rt.__path__):
            if m.name not in ("mqtt_io",):  # optional extras import their library lazily, inside functions
                importlib.import_module("gru_edge.edge_runtime." + m.name)
        from gru_edge.edge_runtime.cli import main
        code = main([{str(tiny_bundle)!r}, "--input", {str(synth_csv)!r}, "--quiet"])
        loaded = sorted(n for n in sys.modules if n.split(".")[0] in FORBIDDEN)
        print("LOADED", loaded, file=sys.stderr)
        sys.exit(code or (1 if loaded else 0))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stderr
    assert proc.stdout.count("\n") > 1000


@pytest.mark.slow
def test_gateway_venv_without_tensorflow_matches_keras(tiny_run, tiny_bundle, synth_csv, tmp_path):
    """A real venv with only numpy + onnxruntime + gru-edge (base install) scores like Keras within 1e-5."""
    env_dir = tmp_path / "gateway-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{REPO}"], check=True, timeout=600)  # base dependencies only: numpy, onnxruntime
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert not installed & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "click"}, installed
    assert {"numpy", "onnxruntime", "gru-edge"} <= installed

    proc = subprocess.run([str(env_dir / "bin" / "edge-score"), str(tiny_bundle), "--input", str(synth_csv)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    runtime = np.array([r["score"] for r in rows])
    index = np.array([r["index"] for r in rows])

    from gru_edge.export.parity import windows_ending_at
    from gru_edge.train.data import load_csv
    from gru_edge.train.model import predict_scores

    rec = tiny_run.record
    values = load_csv(synth_csv, features=rec.features).values
    keras_scores = predict_scores(tiny_run.load_model(), windows_ending_at(rec.scaler.transform(values), index, rec.window))
    assert len(runtime) == len(values) - rec.window + 1
    assert np.max(np.abs(runtime - keras_scores)) <= 1e-5
