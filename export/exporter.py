"""RUN_DIR -> BUNDLE_DIR: fused-GRU ONNX, optional compressed weights, parity gate, golden probes.

A bundle is written only after every check passes, into a staging directory that is opened with the
edge runtime itself before it replaces anything, so a failed export never touches an existing bundle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..edge_runtime.bundle import open_bundle
from ..edge_runtime.device_profile import DeviceProfile, load_profile
from ..edge_runtime.fsutil import sha256_file, staged_directory
from ..edge_runtime.manifest import MANIFEST_NAME, FileEntry, Golden, GoldenProbe, Manifest, ModelSpec, ScoreSpec
from ..edge_runtime.windows import sliding_windows
from ..train.record import Run, open_run
from .parity import DEFAULT_TOLERANCE, ParityReport, compare_scores

QUANTIZATIONS = ("none", "fp16", "int8")
MODEL_FILE = "model.onnx"
# Parity windows: enough to see rare decision flips, few enough to keep export quick.
_PARITY_WINDOWS = 4096
_CROSS_CHECK_WINDOWS = 64
_PROBE_EXTRA = 15  # samples beyond one window per golden probe, so the probe also exercises windowing
_GOLDEN_ATOL = 1e-4  # same model file, same runtime: only CPU kernel differences remain


class ExportError(RuntimeError):
    """The model cannot be exported faithfully or the result breaks a tolerance or budget."""


@dataclass
class ExportResult:
    bundle_dir: Path
    manifest: Manifest
    parity: ParityReport
    bytes: int


def export(run_dir: str | Path, out_dir: str | Path, quantize: str | None = None, device: str | None = None,
           cross_check: bool = True, log: Callable[[str], None] = print) -> ExportResult:
    run = open_run(run_dir)
    profile = load_profile(device) if device else None
    quantize = quantize or (profile.quantization if profile else "none")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; expected one of {QUANTIZATIONS}")

    from .onnx_graph import INPUT_NAME, OPSET, OUTPUT_NAME, UnsupportedModelError, keras_to_fused_onnx

    model = run.load_model()
    try:
        fp32 = keras_to_fused_onnx(model, name=Path(out_dir).name)
    except UnsupportedModelError as e:
        raise ExportError(f"{run.model_path}: {e}") from e

    windows, labels = _parity_windows(run)
    from ..train.model import predict_scores

    keras_scores = predict_scores(model, windows)
    fp32_scores = _onnx_scores(fp32, windows)
    exact = compare_scores(keras_scores, fp32_scores, run.record.threshold, DEFAULT_TOLERANCE["none"], labels,
                           variant="onnx fp32")
    log(f"parity {exact.summary()}")
    if not exact.passed:
        raise ExportError(f"the fused ONNX graph does not reproduce the Keras model: {exact.summary()}")
    if cross_check:
        _tf2onnx_cross_check(model, windows[:_CROSS_CHECK_WINDOWS], fp32_scores[:_CROSS_CHECK_WINDOWS], log)

    onnx_model = _quantized(fp32, quantize)
    scores = fp32_scores if quantize == "none" else _onnx_scores(onnx_model, windows)
    tolerance = _tolerance(quantize, profile)
    report = compare_scores(keras_scores, scores, run.record.threshold, tolerance, labels,
                            variant=f"onnx {quantize}")
    if quantize != "none":
        log(f"parity {report.summary()}")
    if not report.passed:
        raise ExportError(f"{quantize} weights change decisions beyond tolerance: {report.summary()}")

    model_bytes = onnx_model.SerializeToString()
    if profile and len(model_bytes) > profile.model_storage_budget_kb * 1024:
        raise ExportError(
            f"model is {len(model_bytes) / 1024:.1f} KB but device {profile.name!r} allows "
            f"{profile.model_storage_budget_kb} KB; try --quantize int8 or smaller --units when training"
        )

    out_dir = Path(out_dir)
    with staged_directory(out_dir) as stage:
        (stage / MODEL_FILE).write_bytes(model_bytes)
        spec = ModelSpec(
            file=MODEL_FILE, format="onnx", input_name=INPUT_NAME,
            input_shape=[None, run.record.window, len(run.record.features)], output_name=OUTPUT_NAME,
            quantization=quantize, graph=f"fused-gru opset {OPSET}",
        )
        manifest = Manifest(
            name=out_dir.name,
            toolkit_version=__version__,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            features=list(run.record.features),
            window=run.record.window,
            stride=run.record.stride,
            scaler=run.record.scaler,
            score=ScoreSpec(
                kind=run.record.score_kind,
                threshold=float(run.record.threshold),
                description=_score_description(run),
            ),
            models={"window": spec},
            files=[FileEntry(MODEL_FILE, sha256_file(stage / MODEL_FILE), len(model_bytes))],
            golden=_golden(run, onnx_model),
            source_model_sha256=run.record.model_sha256,
            training_metrics=run.record.metrics.get("test", {}),
            parity={
                "reference": "keras",
                "data": "held-out test part of the run",
                "fp32": _parity_figures(exact),
                "bundle": _parity_figures(report),
                "tolerance": asdict(tolerance),
            },
            device=profile.name if profile else None,
        )
        (stage / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        # The staged bundle must pass the runtime's own load path (hashes + golden probes) before it goes live.
        open_bundle(stage)
    return ExportResult(out_dir, manifest, report, len(model_bytes))


def _parity_windows(run: Run) -> tuple[np.ndarray, np.ndarray | None]:
    holdout = run.holdout()
    scaled = run.record.scaler.transform(holdout.test)
    windows = np.ascontiguousarray(sliding_windows(scaled, run.record.window, 1)[-_PARITY_WINDOWS:])
    labels = None
    if holdout.test_labels is not None:
        labels = holdout.test_labels[run.record.window - 1 :][-_PARITY_WINDOWS:]
    return windows, labels


def _onnx_scores(onnx_model, windows: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(onnx_model.SerializeToString(), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: windows[i : i + 512]})[0] for i in range(0, len(windows), 512)]
    return np.concatenate(out).reshape(len(windows), -1)[:, 0].astype(np.float64)


def _quantized(fp32, quantize: str):
    if quantize == "none":
        return fp32
    from .weight_storage import to_fp16_weights, to_int8_weights

    return {"fp16": to_fp16_weights, "int8": to_int8_weights}[quantize](fp32)


def _tolerance(quantize: str, profile: DeviceProfile | None):
    if profile is None or quantize == "none":
        return DEFAULT_TOLERANCE[quantize]
    return profile.parity


def _tf2onnx_cross_check(model, windows: np.ndarray, fused_scores: np.ndarray, log) -> None:
    """tf2onnx converts the same model independently (a Loop graph); both graphs must agree."""
    from .tf2onnx_check import tf2onnx_scores

    reference = tf2onnx_scores(model, windows).reshape(len(windows), -1)[:, 0]
    worst = float(np.max(np.abs(reference - fused_scores)))
    log(f"tf2onnx cross-check: max |diff| {worst:.2e} over {len(windows)} windows")
    if worst > 1e-5:
        raise ExportError(f"the fused graph and tf2onnx's conversion disagree by {worst:.2e} (> 1e-5)")


def _golden(run: Run, onnx_model) -> Golden:
    """Two raw segments from the test part: around the highest score and around the lowest."""
    holdout = run.holdout()
    w = run.record.window
    length = w + _PROBE_EXTRA
    raw = holdout.test
    if len(raw) < length:
        length = len(raw)
    scaled = run.record.scaler.transform(raw)
    coarse = _onnx_scores(onnx_model, np.ascontiguousarray(sliding_windows(scaled, w, 1)))
    probes = []
    for end in (int(np.argmax(coarse)) + w - 1, int(np.argmin(coarse)) + w - 1):
        start = int(np.clip(end - length + 1, 0, len(raw) - length))
        segment = raw[start : start + length]
        expected = _onnx_scores(onnx_model, np.ascontiguousarray(sliding_windows(run.record.scaler.transform(segment), w, 1)))
        probes.append(GoldenProbe(samples=segment.tolist(), expected_scores=expected.tolist()))
    return Golden(probes=probes, atol=_GOLDEN_ATOL)


def _parity_figures(report: ParityReport) -> dict:
    d = report.to_dict()
    d.pop("tolerance", None)
    return d


def _score_description(run: Run) -> str:
    if run.record.score_kind == "probability":
        return (f"probability that the window's last sample is anomalous (GRU classifier); "
                f"anomaly when score >= threshold ({run.record.threshold_rule})")
    return run.record.score_kind
