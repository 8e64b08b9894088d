"""Model backends: one small class per file format, all with ``run(windows) -> scores``.

The ONNX backend is the core (onnxruntime is a base dependency). Other formats are optional and
imported only when a bundle asks for them, with a message saying what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from .manifest import ModelSpec

# Chunk size for batch scoring: large enough to reach GEMM speed, small enough to bound memory.
MAX_BATCH = 256


class ModelBackend(Protocol):
    def run(self, windows: np.ndarray) -> np.ndarray:
        """float32 [N, T, F] scaled windows -> float32 [N] scores (or [N, k] for multi-output heads)."""
        ...


class OnnxBackend:
    def __init__(self, path: Path, spec: ModelSpec, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # Gateways run one scoring loop per model: a fixed, small thread count keeps latency predictable.
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = spec.input_name
        self._output = spec.output_name
        names = [i.name for i in self._session.get_inputs()]
        if self._input not in names:
            raise ValueError(f"model input {self._input!r} not in the graph's inputs {names}")

    def run(self, windows: np.ndarray) -> np.ndarray:
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.shape[0] <= MAX_BATCH:
            return self._session.run([self._output], {self._input: windows})[0]
        parts = [
            self._session.run([self._output], {self._input: windows[i : i + MAX_BATCH]})[0]
            for i in range(0, windows.shape[0], MAX_BATCH)
        ]
        return np.concatenate(parts, axis=0)


def open_backend(path: Path, spec: ModelSpec, threads: int = 1) -> ModelBackend:
    if spec.format == "onnx":
        return OnnxBackend(path, spec, threads=threads)
    raise ValueError(f"model format {spec.format!r} is not supported by this runtime")
