"""Helpers for the deployment tests: tiny bundles built without TensorFlow, and real servers.

A deployment test is about copying, verifying, switching and scoring -- not about the GRU. So the
bundles here hold a three-node ONNX graph (score = sigmoid(gain * mean(window) + bias)) with a real
manifest, real hashes and real golden probes: everything the runtime checks, built in milliseconds.
Different ``bias`` values give different model files, hence different versions.

Also here: starting a throwaway sshd / mosquitto on 127.0.0.1 for the SSH and MQTT tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

FEATURES = ("a", "b", "c")


def make_model_bytes(window: int, n_features: int, gain: float = 4.0, bias: float = 0.0) -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("windows", TensorProto.FLOAT, ["N", window, n_features])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    nodes = [
        helper.make_node("ReduceMean", ["windows"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["m", "gain"], ["g"]),
        helper.make_node("Add", ["g", "bias"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["score"]),
    ]
    inits = [helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
             helper.make_tensor("bias", TensorProto.FLOAT, [], [bias])]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="gru-edge-tests")
    model.ir_version = 8
    return model.SerializeToString()


def model_scores(windows: np.ndarray, gain: float, bias: float) -> np.ndarray:
    z = gain * windows.astype(np.float32).mean(axis=(1, 2)) + bias
    return 1.0 / (1.0 + np.exp(-z))


def make_bundle(path: str | Path, name: str = "pump", window: int = 8, stride: int = 1, bias: float = 0.0,
                gain: float = 4.0, features=FEATURES, alarm: dict | None = None, threshold: float = 0.6,
                seed: int = 0) -> Path:
    """A complete, valid bundle directory (manifest, model, golden probes computed with onnxruntime)."""
    import onnxruntime as ort

    from gru_edge.edge_runtime.windows import sliding_windows

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = make_model_bytes(window, len(features), gain, bias)
    (path / "model.onnx").write_bytes(model)
    rng = np.random.default_rng(seed)
    samples = rng.normal(0, 1, (window + 5, len(features))).round(4)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"windows": sliding_windows(samples, window, 1).astype(np.float32)})[0]
    manifest = {
        "schema_version": 1, "name": name, "toolkit_version": "test", "created_at": "2026-01-01T00:00:00+00:00",
        "features": list(features), "window": window, "stride": stride,
        "scaler": {"kind": "standard", "mean": [0.0] * len(features), "scale": [1.0] * len(features)},
        "score": {"kind": "probability", "threshold": threshold, "description": "test"},
        "models": {"window": {"file": "model.onnx", "format": "onnx", "input_name": "windows",
                              "input_shape": [None, window, len(features)], "output_name": "score",
                              "quantization": "none", "graph": "test"}},
        "files": [{"path": "model.onnx", "sha256": hashlib.sha256(model).hexdigest(), "bytes": len(model)}],
        "golden": {"probes": [{"samples": samples.tolist(), "expected_scores": [float(v) for v in expected]}],
                   "atol": 1e-5},
        "notes": {"bias": bias},
        "alarm": alarm or {},
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def rewrite_manifest(bundle: Path, **changes) -> None:
    d = json.loads((bundle / "manifest.json").read_text())
    d.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(d, indent=1) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def find_binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def in_ci_as_root() -> bool:
    # CI runs `python3 dev.py test` as root with apt-get, which installs these: there they must run.
    return bool(os.environ.get("CI")) and os.name == "posix" and os.geteuid() == 0


def require(name: str) -> str:
    path = find_binary(name)
    if path is None:
        reason = f"{name} is not installed (`python3 dev.py test` installs it with apt-get when run as root)"
        if in_ci_as_root():
            pytest.fail(reason + "; in CI this test must run")
        pytest.skip(reason)
    return path


def require_module(name: str):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        reason = f"{name} is not importable (pip install 'gru-edge[mqtt]'; `python3 dev.py test` installs it)"
        if in_ci_as_root():
            pytest.fail(reason + "; in CI this test must run")
        pytest.skip(reason)


def test_support_bundle_verifies_and_versions_differ(tmp_path):
    from gru_edge.edge_runtime.bundle import open_bundle

    a = make_bundle(tmp_path / "a", bias=0.0)
    b = make_bundle(tmp_path / "b", bias=0.5)
    manifest, model = open_bundle(a)
    assert manifest.window == 8
    open_bundle(b)
    assert (a / "model.onnx").read_bytes() != (b / "model.onnx").read_bytes()
    w = np.random.default_rng(1).normal(size=(4, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(model.run(w), model_scores(w, 4.0, 0.0), atol=1e-6)
