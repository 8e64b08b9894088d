"""Keras GRU -> TFLite (LiteRT) flatbuffers: fp32, float16, dynamic-range int8 and full int8.

Why this route: ``TFLiteConverter.from_keras_model`` fails on a Keras GRU ("tf.TensorListReserve op
requires element_shape to be static"). The same architecture rebuilt with ``unroll=True`` and given
the trained weights converts to plain builtin ops (see notes/export-facts.md). The unrolled model is
traced once and frozen (weights become constants): a graph that still reads resource variables breaks
full-int8 calibration, and re-exporting the Keras model per variant made each conversion ~3x slower.

The converter has segfaulted on this machine, so every conversion runs in a child process
(``python -m gru_edge.export.tflite_export``): a crash becomes an error naming the variant instead
of taking the caller down. One child converts all requested variants, writing each file as soon as
it is done, so a crash in the last (full int8) still leaves the others usable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QUANTIZATIONS = ("none", "fp16", "dynamic", "int8")
# Full int8 goes last: it is the conversion that has crashed before.
_ORDER = {q: i for i, q in enumerate(QUANTIZATIONS)}
DEFAULT_TIMEOUT_S = 900
# Calibration windows for full int8: enough to cover the operating range, few enough to stay quick.
REPRESENTATIVE_WINDOWS = 256


class TfliteExportError(RuntimeError):
    """A TFLite conversion failed or crashed; the message names the variant and the converter's last words."""


@dataclass(frozen=True)
class TfliteModel:
    quantization: str
    content: bytes
    input_name: str
    output_name: str


def convert_keras_file(model_path: str | Path, quantizations: list[str] | tuple[str, ...],
                       representative: np.ndarray | None = None,
                       timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, TfliteModel | TfliteExportError]:
    """Convert the saved Keras model at ``model_path`` to each TFLite variant, in a child process.

    ``representative``: scaled float32 windows ``[K, T, F]`` (required for ``int8``).
    Returns quantization -> model, or the error that variant hit (the others still convert).
    """
    wanted = sorted(dict.fromkeys(quantizations), key=lambda q: _ORDER.get(q, -1))
    unknown = [q for q in wanted if q not in QUANTIZATIONS]
    if unknown:
        raise ValueError(f"unknown TFLite quantization {unknown[0]!r}; expected one of {QUANTIZATIONS}")
    if "int8" in wanted and (representative is None or len(representative) == 0):
        raise ValueError("full int8 needs representative windows (scaled training windows) for calibration")
    results: dict[str, TfliteModel | TfliteExportError] = {}
    with tempfile.TemporaryDirectory(prefix="gru-edge-tflite-") as tmp:
        out = Path(tmp)
        cmd = [sys.executable, "-m", __name__, str(model_path), str(out), "--quantize", ",".join(wanted)]
        if representative is not None and "int8" in wanted:
            np.save(out / "representative.npy", np.ascontiguousarray(representative, dtype=np.float32))
            cmd += ["--representative", str(out / "representative.npy")]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
            failure = None if proc.returncode == 0 else _describe_exit(proc.returncode, proc.stderr)
        except subprocess.TimeoutExpired:
            failure = f"converter did not finish within {timeout_s:.0f} s"
        for q in wanted:
            meta = out / f"{q}.json"
            if meta.is_file():
                info = json.loads(meta.read_text())
                if "error" in info:
                    results[q] = TfliteExportError(f"TFLite {q}: {info['error']}")
                else:
                    results[q] = TfliteModel(q, (out / f"{q}.tflite").read_bytes(), info["input_name"],
                                             info["output_name"])
            else:  # the child died while converting this variant (or before reaching it)
                results[q] = TfliteExportError(f"TFLite {q}: {failure or 'converter produced no output'}")
    return results


def _describe_exit(code: int, stderr: str) -> str:
    tail = " | ".join(line for line in stderr.strip().splitlines()[-4:] if line.strip())
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"converter crashed ({name}); last output: {tail or '(none)'}"
    return f"converter exited with status {code}: {tail or '(no output)'}"


# --- the child process: everything below imports TensorFlow ------------------------------------------------


def unrolled_copy(model):
    """The same architecture with every recurrent layer ``unroll=True``, carrying the trained weights."""
    import keras

    def clone(layer):
        config = layer.get_config()
        if "unroll" in config:
            config["unroll"] = True
        return layer.__class__.from_config(config)

    unrolled = keras.models.clone_model(model, clone_function=clone)
    unrolled.set_weights(model.get_weights())
    return unrolled


def _frozen_function(model):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    in_shape = tuple(model.inputs[0].shape)
    spec = tf.TensorSpec((None, *in_shape[1:]), tf.float32, name="windows")

    @tf.function(input_signature=[spec])
    def forward(windows):
        return {"score": model(windows, training=False)}

    return convert_variables_to_constants_v2(forward.get_concrete_function())


def _convert(frozen, quantization: str, representative: np.ndarray | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if quantization in ("fp16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        windows = representative

        def calibration():
            for i in range(len(windows)):
                yield [windows[i : i + 1]]

        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Float input and output: the runtime feeds scaled float windows to every variant alike.
    return converter.convert()


def _io_names(content: bytes) -> tuple[str, str]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=content)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise TfliteExportError(f"expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}")
    return inputs[0]["name"], outputs[0]["name"]


def _child(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("out_dir")
    p.add_argument("--quantize", required=True)
    p.add_argument("--representative", default=None)
    args = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    from ..train.model import load_model

    out = Path(args.out_dir)
    representative = np.load(args.representative) if args.representative else None
    frozen = _frozen_function(unrolled_copy(load_model(args.model)))
    for q in args.quantize.split(","):
        try:
            content = _convert(frozen, q, representative)
            input_name, output_name = _io_names(content)
        except Exception as e:  # a Python-level failure is reported per variant; a crash ends the child
            (out / f"{q}.json").write_text(json.dumps({"error": f"{type(e).__name__}: {str(e)[:500]}"}))
            continue
        (out / f"{q}.tflite").write_bytes(content)
        (out / f"{q}.json").write_text(json.dumps({"input_name": input_name, "output_name": output_name}))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
