"""Keras model builders. TensorFlow is imported here and only here on the training side."""

from __future__ import annotations

REFERENCE_UNITS = (128, 64)


def build_classifier(window: int, n_features: int, units: tuple[int, ...] = REFERENCE_UNITS,
                     learning_rate: float = 1e-3):
    """The reference detector: GRU(128, seq) -> GRU(64) -> Dense(1, sigmoid), BCE, Adam.

    ``units`` sets the GRU stack (e.g. (32, 16) for small gateways); every GRU but the last returns
    sequences. Layers keep Keras defaults (reset_after=True, tanh/sigmoid), which export maps exactly.
    """
    import keras
    from keras import layers

    if not units or any(int(u) < 1 for u in units):
        raise ValueError(f"units must be one or more positive integers, got {units}")
    model = keras.Sequential(name="gru_classifier")
    model.add(keras.Input(shape=(window, n_features), name="windows"))
    for i, u in enumerate(units):
        model.add(layers.GRU(int(u), return_sequences=i < len(units) - 1, name=f"gru_{i}"))
    model.add(layers.Dense(1, activation="sigmoid", name="score"))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(curve="PR", name="pr_auc")],
    )
    return model


def load_model(path):
    import keras

    return keras.models.load_model(path, compile=False)


def predict_scores(model, windows, batch_size: int = 512):
    """Scores as float64 [N]; direct calls in chunks avoid predict()'s per-call overhead on small inputs."""
    import numpy as np

    windows = np.asarray(windows, dtype=np.float32)
    if len(windows) == 0:
        return np.empty(0, dtype=np.float64)
    out = [np.asarray(model(windows[i : i + batch_size], training=False)) for i in range(0, len(windows), batch_size)]
    return np.concatenate(out, axis=0).reshape(len(windows), -1)[:, 0].astype(np.float64)
