"""Model backends: one small class per file format, all with ``run(windows) -> scores``.

The ONNX backend is the core (onnxruntime is a base dependency). Other formats are optional and
imported only when a bundle asks for them, with a message saying what to install.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from .manifest import ModelSpec

# Chunk size for batch scoring: large enough to reach GEMM speed, small enough that a GRU layer's
# intermediates stay in cache. Measured on the reference model (T=64, 1 thread): 256 windows scored
# in chunks of 32 run ~20 % faster than in one call of 256 (whose gate buffers alone are ~25 MB),
# and peak memory drops by as much.
MAX_BATCH = 32


class ModelBackend(Protocol):
    def run(self, windows: np.ndarray) -> np.ndarray:
        """float32 [N, T, F] scaled windows -> float32 [N] scores (or [N, k] for multi-output heads)."""
        ...


def fold_weight_storage(opts) -> None:
    """Let onnxruntime constant-fold compressed weights (int8 ``DequantizeLinear``, fp16 ``Cast``) at load.

    Bundles use int8 only as weight *storage*; with its QDQ optimisations on, onnxruntime keeps each
    DequantizeLinear as a node and runs it on every call (measured: int8 step model 36 us vs 20 us fp32,
    window model +20 %). Folded, an int8 bundle scores as fast as an fp32 one, with identical results.
    """
    opts.add_session_config_entry("session.disable_quant_qdq", "1")


def ort_session(source: str | Path | bytes, threads: int = 1):
    """The one way gru-edge opens an onnxruntime session (bundle models, step models, export checks)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Gateways run one scoring loop per model: a fixed, small thread count keeps latency predictable.
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    fold_weight_storage(opts)
    model = source if isinstance(source, bytes) else str(source)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxBackend:
    def __init__(self, path: Path, spec: ModelSpec, threads: int = 1):
        self._session = ort_session(path, threads)
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


class BackendUnavailable(ImportError):
    """The bundle's model format needs an optional package that is not installed here."""


def _litert_interpreter_class():
    # Imported by name, never by an import statement: the runtime's import contract (stdlib, numpy,
    # onnxruntime) is checked statically, and LiteRT is an optional extra a gateway may not have.
    try:
        return importlib.import_module("ai_edge_litert.interpreter").Interpreter
    except ImportError as e:
        raise BackendUnavailable(
            f"this bundle holds a TFLite model, which needs the LiteRT interpreter: "
            f"pip install 'gru-edge[litert]' (ai-edge-litert) on this machine, or export an ONNX bundle ({e})"
        ) from e


class TfliteBackend:
    """LiteRT interpreter for an unrolled-GRU TFLite model with a resizable batch dimension.

    ``content`` scores an in-memory flatbuffer (export-time parity) instead of ``path``.
    """

    def __init__(self, path: Path | None, spec: ModelSpec | None, threads: int = 1, content: bytes | None = None):
        interpreter_class = _litert_interpreter_class()
        if content is not None:
            self._interpreter = interpreter_class(model_content=content, num_threads=max(1, int(threads)))
        else:
            self._interpreter = interpreter_class(model_path=str(path), num_threads=max(1, int(threads)))
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        self._input = _pick(inputs, spec.input_name if spec else None, "input")
        self._output = _pick(outputs, spec.output_name if spec else None, "output")
        self._batch = None  # batch size the interpreter's tensors are allocated for

    def run(self, windows: np.ndarray) -> np.ndarray:
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.shape[0] <= MAX_BATCH:
            return self._run(windows)
        return np.concatenate([self._run(windows[i : i + MAX_BATCH]) for i in range(0, windows.shape[0], MAX_BATCH)])

    def _run(self, windows: np.ndarray) -> np.ndarray:
        n = windows.shape[0]
        if n != self._batch:
            # Resizing re-plans every tensor: a stream (batch 1) pays it once, not per call.
            self._interpreter.resize_tensor_input(self._input, list(windows.shape))
            self._interpreter.allocate_tensors()
            self._batch = n
        self._interpreter.set_tensor(self._input, windows)
        self._interpreter.invoke()
        out = self._interpreter.get_tensor(self._output)  # a copy: the interpreter reuses its buffers
        return out.reshape(n) if out.size == n else out.reshape(n, -1)


def _pick(details: list, name: str | None, what: str) -> int:
    if name is None:
        if len(details) != 1:
            raise ValueError(f"model has {len(details)} {what}s; expected exactly 1")
        return details[0]["index"]
    for d in details:
        if d["name"] == name:
            return d["index"]
    raise ValueError(f"model {what} {name!r} not in the model's {what}s {[d['name'] for d in details]}")


def open_backend(path: Path, spec: ModelSpec, threads: int = 1) -> ModelBackend:
    if spec.format == "onnx":
        return OnnxBackend(path, spec, threads=threads)
    if spec.format == "tflite":
        return TfliteBackend(path, spec, threads=threads)
    raise ValueError(f"model format {spec.format!r} is not supported by this runtime")
