"""The feature scaler: fitted on the training part only, applied everywhere else.

Stored as plain numbers (in ``train.json`` and in the bundle manifest), never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A column whose spread is below this is treated as constant: dividing by ~0 would turn
# sensor noise into huge inputs on the gateway.
_MIN_SCALE = 1e-8


@dataclass(frozen=True)
class StandardScaler:
    """``(x - mean) / scale`` per feature."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.scale):
            raise ValueError(f"scaler has {len(self.mean)} means but {len(self.scale)} scales")
        if not all(np.isfinite(self.mean)) or not all(np.isfinite(self.scale)):
            raise ValueError("scaler holds non-finite numbers")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scaler scales must be > 0")
        # Cached float32 copies: transform() runs once per sample in the streaming loop.
        object.__setattr__(self, "_mean32", np.asarray(self.mean, dtype=np.float32))
        object.__setattr__(self, "_scale32", np.asarray(self.scale, dtype=np.float32))

    @classmethod
    def fit(cls, x: np.ndarray) -> "StandardScaler":
        """Fit on ``[n, F]`` training samples (NaNs ignored).

        >>> StandardScaler.fit(np.array([[0.0, 5.0], [2.0, 5.0]]))
        StandardScaler(mean=(1.0, 5.0), scale=(1.0, 1.0))
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"need a non-empty [samples, features] array, got shape {x.shape}")
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        std = np.where(std < _MIN_SCALE, 1.0, std)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    @property
    def n_features(self) -> int:
        return len(self.mean)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale ``[..., F]`` to float32 (the model's input type)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {x.shape[-1]}")
        return (x - self._mean32) / self._scale32

    def to_dict(self) -> dict:
        return {"kind": "standard", "mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "StandardScaler":
        if not isinstance(d, dict) or d.get("kind") != "standard":
            raise ValueError(f"unknown scaler {d!r}: expected {{'kind': 'standard', 'mean': [...], 'scale': [...]}}")
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["scale"]))
