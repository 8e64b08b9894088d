"""Independent cross-check of the hand-written fused-GRU mapping: convert the same Keras model with tf2onnx.

tf2onnx yields a ``Loop`` graph for a Keras 3 GRU (slow, never shipped) whose scores match Keras to ~1e-6;
agreement with the fused graph shows the weight mapping in ``onnx_graph`` is right on data the caller picks.
tf2onnx and TensorFlow are imported inside the function: they are only needed when the check runs.
"""

from __future__ import annotations

import numpy as np


def tf2onnx_onnx_bytes(model, opset: int = 17) -> bytes:
    """Serialized tf2onnx conversion of ``model`` (batch dimension left open)."""
    import tensorflow as tf
    import tf2onnx

    in_shape = tuple(model.inputs[0].shape)
    spec = (tf.TensorSpec((None, *in_shape[1:]), tf.float32, name="windows"),)

    # Keras 3 models have no Keras-2 graph for tf2onnx.from_keras to walk; tracing a tf.function works.
    @tf.function(input_signature=spec)
    def forward(windows):
        return model(windows, training=False)

    onnx_model, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=opset)
    return onnx_model.SerializeToString()


def tf2onnx_scores(model, windows: np.ndarray) -> np.ndarray:
    """Scores of ``windows`` (float32 [N, T, F]) from the tf2onnx conversion of ``model`` run by onnxruntime,
    shaped like the fused graph's output ([N] for a one-unit head, [N, k] otherwise)."""
    import onnxruntime as ort

    windows = np.ascontiguousarray(windows, dtype=np.float32)
    if windows.ndim != 3:
        raise ValueError(f"windows: expected shape [N, T, F], got {windows.shape}")
    session = ort.InferenceSession(tf2onnx_onnx_bytes(model), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    scores = np.asarray(session.run(None, {input_name: windows})[0], dtype=np.float32)
    scores = scores.reshape(windows.shape[0], -1)
    return scores[:, 0] if scores.shape[1] == 1 else scores
