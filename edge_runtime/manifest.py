"""The bundle manifest: the one schema export writes and the runtime reads.

A bundle is a directory holding model file(s) and ``manifest.json``. The manifest lists every file
with its sha256, says how samples become model inputs (features, window, stride, scaler), what the
score means and where the threshold is, and carries golden probes: raw sample segments with the
scores the exported model gave them at export time, which the runtime replays before going live.

Versioning: ``SCHEMA_VERSION`` grows when the layout changes. ``upgrade`` turns an older manifest
dict into the current layout (pure, one step per version); a manifest from a newer schema is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .scaler import StandardScaler

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

SCORE_KINDS = ("probability", "forecast_error")
MODEL_FORMATS = ("onnx", "tflite")
# Roles of model files in a bundle: the window model (always) and, later, a single-step model.
MODEL_ROLES = ("window", "step")


class ManifestError(ValueError):
    """The manifest is missing, malformed, or from a schema this runtime cannot read."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the bundle directory, '/'-separated
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ModelSpec:
    file: str
    format: str  # one of MODEL_FORMATS
    input_name: str
    input_shape: list  # e.g. [None, 64, 5]; None = any batch size
    output_name: str
    quantization: str  # "none", "fp16", "int8", ...
    graph: str = ""  # how the graph was built, e.g. "fused-gru"


@dataclass(frozen=True)
class ScoreSpec:
    kind: str  # one of SCORE_KINDS
    threshold: float
    description: str = ""
    # A sample is anomalous when score >= threshold.


@dataclass(frozen=True)
class GoldenProbe:
    """A raw (unscaled) segment of samples and the score of every stride-1 window in it."""

    samples: list  # [L, F] raw values
    expected_scores: list  # [L - window + 1]


@dataclass(frozen=True)
class Golden:
    probes: list  # list[GoldenProbe]
    atol: float


@dataclass(frozen=True)
class Manifest:
    name: str
    toolkit_version: str
    created_at: str  # ISO 8601 UTC
    features: list  # feature names, in model input order
    window: int
    stride: int
    scaler: StandardScaler
    score: ScoreSpec
    models: dict  # role -> ModelSpec
    files: list  # list[FileEntry]: every file of the bundle except the manifest itself
    golden: Golden
    source_model_sha256: str = ""
    training_metrics: dict = field(default_factory=dict)
    parity: dict = field(default_factory=dict)
    device: str | None = None
    notes: dict = field(default_factory=dict)  # free-form provenance (e.g. why a quantization was chosen)
    # Alarm rules the gateway loop applies on top of per-sample decisions, e.g.
    # {"min_consecutive": 3, "suppress_samples": 600}; empty = every anomalous sample is an alarm.
    alarm: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def window_model(self) -> ModelSpec:
        return self.models["window"]

    def file_entry(self, path: str) -> FileEntry:
        for entry in self.files:
            if entry.path == path:
                return entry
        raise ManifestError(f"manifest lists no file {path!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scaler"] = self.scaler.to_dict()
        return {"schema_version": d.pop("schema_version"), **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        d = upgrade(d)
        try:
            return _build(d)
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"invalid manifest: {_describe(e)}") from e

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> "Manifest":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{source}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
        try:
            return cls.from_dict(d)
        except ManifestError as e:
            raise ManifestError(f"{source}: {e}") from e


def upgrade(d: Any) -> dict:
    """Bring a manifest dict from an older schema to ``SCHEMA_VERSION`` (pure; raises on newer)."""
    if not isinstance(d, dict):
        raise ManifestError(f"manifest must be a JSON object, got {type(d).__name__}")
    version = d.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ManifestError(f"manifest has no integer schema_version (got {version!r})")
    if version > SCHEMA_VERSION:
        raise ManifestError(
            f"manifest schema_version {version} is newer than this runtime understands "
            f"(up to {SCHEMA_VERSION}); upgrade gru-edge on this machine"
        )
    if version < 1:
        raise ManifestError(f"manifest schema_version {version} is not a gru-edge schema")
    # Version 1 is the first; later versions add one step each here: `if version == 1: d = _v1_to_v2(d)`.
    return d


_TOP_KEYS = {f for f in Manifest.__dataclass_fields__}


def _build(d: dict) -> Manifest:
    unknown = set(d) - _TOP_KEYS
    if unknown:
        raise ManifestError(f"unknown manifest keys {sorted(unknown)}")
    missing = {"name", "features", "window", "stride", "scaler", "score", "models", "files", "golden"} - set(d)
    if missing:
        raise ManifestError(f"manifest lacks keys {sorted(missing)}")
    features = [str(f) for f in _typed(d["features"], list, "features")]
    window = _positive_int(d["window"], "window")
    stride = _positive_int(d["stride"], "stride")
    scaler = StandardScaler.from_dict(d["scaler"])
    if scaler.n_features != len(features):
        raise ManifestError(f"scaler has {scaler.n_features} features but features lists {len(features)}")
    score = ScoreSpec(**_typed(d["score"], dict, "score"))
    if score.kind not in SCORE_KINDS:
        raise ManifestError(f"score.kind {score.kind!r} is not one of {SCORE_KINDS}")
    if not isinstance(score.threshold, (int, float)) or not math.isfinite(score.threshold):
        raise ManifestError(f"score.threshold must be a finite number, got {score.threshold!r}")
    models = {}
    for role, spec in _typed(d["models"], dict, "models").items():
        if role not in MODEL_ROLES:
            raise ManifestError(f"unknown model role {role!r}; expected one of {MODEL_ROLES}")
        models[role] = ModelSpec(**_typed(spec, dict, f"models.{role}"))
        if models[role].format not in MODEL_FORMATS:
            raise ManifestError(f"models.{role}.format {models[role].format!r} is not one of {MODEL_FORMATS}")
    if "window" not in models:
        raise ManifestError("manifest has no window model (models.window)")
    files = [FileEntry(**_typed(f, dict, "files[]")) for f in _typed(d["files"], list, "files")]
    listed = {f.path for f in files}
    for f in files:
        _check_relative_path(f.path)
    for role, spec in models.items():
        if spec.file not in listed:
            raise ManifestError(f"models.{role}.file {spec.file!r} is not listed in files")
    g = _typed(d["golden"], dict, "golden")
    probes = [GoldenProbe(**_typed(p, dict, "golden.probes[]")) for p in _typed(g["probes"], list, "golden.probes")]
    if not probes:
        raise ManifestError("golden.probes is empty: a bundle must carry probes to self-test")
    for i, p in enumerate(probes):
        rows = len(p.samples)
        if any(len(r) != len(features) for r in p.samples):
            raise ManifestError(f"golden.probes[{i}] rows must have {len(features)} values")
        if len(p.expected_scores) != rows - window + 1:
            raise ManifestError(
                f"golden.probes[{i}] has {rows} samples so needs {rows - window + 1} expected scores, "
                f"got {len(p.expected_scores)}"
            )
    golden = Golden(probes=probes, atol=float(g["atol"]))
    rest = {k: d[k] for k in ("name", "toolkit_version", "created_at", "source_model_sha256",
                              "training_metrics", "parity", "device", "notes", "alarm", "schema_version") if k in d}
    return Manifest(features=features, window=window, stride=stride, scaler=scaler, score=score,
                    models=models, files=files, golden=golden, **rest)


def _check_relative_path(path: str) -> None:
    """A bundle may only name files inside itself (no absolute paths, no '..')."""
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise ManifestError(f"file path {path!r} points outside the bundle")


def _typed(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind):
        raise ManifestError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ManifestError(f"{name} must be a positive integer, got {value!r}")
    return value


def _describe(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"missing key {e}"
    return str(e)
