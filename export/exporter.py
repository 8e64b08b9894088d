"""RUN_DIR -> BUNDLE_DIR: fused-GRU ONNX (or TFLite), optional compressed weights, parity gate, golden probes,
and for ONNX bundles a single-step model for stateful streaming with its divergence measured.

A bundle is written only after every check passes, into a staging directory that is opened with the
edge runtime itself before it replaces anything, so a failed export never touches an existing bundle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
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
from .parity import DEFAULT_TOLERANCE, ParityReport, compare_scores, run_test_windows
from .variants import FORMAT_QUANTIZATIONS, Variant

QUANTIZATIONS = ("none", "fp16", "int8")  # ONNX weight storage; FORMAT_QUANTIZATIONS has every format's
MODEL_FILE = "model.onnx"
STEP_FILE = "step.onnx"
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
           cross_check: bool = True, log: Callable[[str], None] = print, format: str | None = None,
           step: bool = True) -> ExportResult:
    """``quantize="auto"`` builds every variant of the format and keeps the smallest that passes the device's
    decision gates. ``step`` adds the single-step model (ONNX bundles) for opt-in stateful streaming."""
    run = open_run(run_dir)
    profile = load_profile(device) if device else None
    fmt = format or (profile.format if profile else "onnx")
    if fmt not in FORMAT_QUANTIZATIONS:
        raise ExportError(f"unknown format {fmt!r}; expected one of {tuple(FORMAT_QUANTIZATIONS)}")
    quantize = quantize or (profile.quantization if profile else "none")
    allowed = (*FORMAT_QUANTIZATIONS[fmt], "auto")
    if quantize not in allowed:
        raise ExportError(f"unknown quantization {quantize!r} for {fmt}; expected one of {allowed}")

    from ..train.normal_only import reference_scores, run_error_head
    from .onnx_graph import UnsupportedModelError, keras_to_error_onnx, keras_to_fused_onnx

    error_head = run_error_head(run.record)  # normal-only: the graph computes the forecast-error score
    if error_head is not None and fmt != "onnx":
        raise ExportError(f"{run_dir}: a normal-only run exports to ONNX only (its score is computed in-graph); "
                          f"got format {fmt!r}")
    model = run.load_model()
    try:
        if error_head is None:
            fp32 = keras_to_fused_onnx(model, name=Path(out_dir).name)
        else:
            fp32 = keras_to_error_onnx(model, error_head, name=Path(out_dir).name)
    except UnsupportedModelError as e:
        raise ExportError(f"{run.model_path}: {e}") from e

    windows, labels = run_test_windows(run, _PARITY_WINDOWS)
    keras_scores = reference_scores(run.record, model, windows)
    fp32_scores = _onnx_scores(fp32, windows)
    relative = error_head is not None  # forecast errors are unbounded: diffs relative to the score's size
    exact = compare_scores(keras_scores, fp32_scores, run.record.threshold, _tolerance("none", None, relative),
                           labels, variant="onnx fp32", relative=relative)
    log(f"parity {exact.summary()}")
    if not exact.passed:
        raise ExportError(f"the fused ONNX graph does not reproduce the Keras model: {exact.summary()}")
    if cross_check and fmt == "onnx":
        _tf2onnx_cross_check(model, windows[:_CROSS_CHECK_WINDOWS], fp32_scores[:_CROSS_CHECK_WINDOWS], log,
                             run.record)

    notes: dict = {}
    if quantize == "auto":
        variant, report, notes["quantization"] = _choose_auto(run, fmt, fp32, windows, keras_scores, labels, profile,
                                                              log)
        quantize = variant.quantization
    else:
        variant = _build_variant(run, fmt, quantize, fp32, log)
        exact_fp32 = fmt == "onnx" and quantize == "none"
        scores = fp32_scores if exact_fp32 else variant.scores(windows)
        tolerance = _tolerance(quantize, profile, relative)
        report = compare_scores(keras_scores, scores, run.record.threshold, tolerance, labels, variant=variant.label,
                                relative=relative)
        if not exact_fp32:
            log(f"parity {report.summary()}")
        if not report.passed:
            raise ExportError(f"{variant.label} changes decisions beyond tolerance: {report.summary()}")

    model_bytes = variant.content
    if profile and len(model_bytes) > profile.model_storage_budget_kb * 1024:
        raise ExportError(
            f"model is {len(model_bytes) / 1024:.1f} KB but device {profile.name!r} allows "
            f"{profile.model_storage_budget_kb} KB; try --quantize int8 or smaller --units when training"
        )

    from .step_graph import flops_per_window, gru_units

    # What benchmarks need to state a compute bound without reading the model file.
    notes["model"] = {"gru_units": gru_units(model), "flops_per_window": flops_per_window(model, run.record.window)}
    step_part = None
    if step and fmt == "onnx" and run.record.score_kind == "probability":
        step_part = _step_model(run, model, quantize, variant, log)
    elif step:
        notes["stateful"] = (f"no step model: stateful streaming needs an ONNX bundle of a probability score "
                             f"(this is {fmt}, {run.record.score_kind})")
    if step_part is not None and profile:
        # The budget is for the whole bundle on the device; the step model is an option, the window model is not.
        total = len(model_bytes) + len(step_part[1])
        if total > profile.model_storage_budget_kb * 1024:
            notes["stateful"] = (f"no step model: window + step models are {total / 1024:.1f} KB, over device "
                                 f"{profile.name!r}'s {profile.model_storage_budget_kb} KB budget")
            log(notes["stateful"])
            step_part = None

    out_dir = Path(out_dir)
    with staged_directory(out_dir) as stage:
        model_file = variant.file_name
        (stage / model_file).write_bytes(model_bytes)
        spec = ModelSpec(
            file=model_file, format=fmt, input_name=variant.input_name,
            input_shape=[None, run.record.window, len(run.record.features)], output_name=variant.output_name,
            quantization=quantize, graph=variant.graph,
        )
        models = {"window": spec}
        files = [FileEntry(model_file, sha256_file(stage / model_file), len(model_bytes))]
        parity = {
            "reference": "keras",
            "data": "held-out test part of the run",
            "fp32": _parity_figures(exact),
            "bundle": _parity_figures(report),
            "tolerance": asdict(report.tolerance),
        }
        if step_part is not None:
            step_spec, step_bytes, parity["stateful"] = step_part
            (stage / step_spec.file).write_bytes(step_bytes)
            models["step"] = step_spec
            files.append(FileEntry(step_spec.file, sha256_file(stage / step_spec.file), len(step_bytes)))
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
            models=models,
            files=files,
            golden=_golden(run, variant.scores),
            source_model_sha256=run.record.model_sha256,
            training_metrics=run.record.metrics.get("test", {}),
            parity=parity,
            device=profile.name if profile else None,
            notes=notes,
        )
        (stage / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        # The staged bundle must pass the runtime's own load path (hashes + golden probes) before it goes live.
        open_bundle(stage)
        if step_part is not None:
            from ..edge_runtime.stateful import open_step_model

            open_step_model(stage, manifest)
    return ExportResult(out_dir, manifest, report, len(model_bytes))


def _onnx_scores(onnx_model, windows: np.ndarray) -> np.ndarray:
    from ..edge_runtime.model_backend import ort_session

    session = ort_session(onnx_model.SerializeToString())
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: windows[i : i + 512]})[0] for i in range(0, len(windows), 512)]
    return np.concatenate(out).reshape(len(windows), -1)[:, 0].astype(np.float64)


def _build_variant(run: Run, fmt: str, quantize: str, fp32, log) -> Variant:
    from .variants import onnx_variant, tflite_variants

    if fmt == "onnx":
        return onnx_variant(fp32, quantize)
    result = tflite_variants(run, [quantize], log)[quantize]
    if isinstance(result, Exception):
        raise ExportError(f"{run.model_path}: {result}") from result
    return result


def _choose_auto(run: Run, fmt: str, fp32, windows, keras_scores, labels, profile: DeviceProfile | None, log):
    """Every variant of ``fmt``; the smallest whose decisions pass the device's gates. Returns it, its report, and
    the manifest note saying why."""
    from .variants import auto_tolerance, build_variants, choose_smallest, evaluate, matrix_table

    tolerance = auto_tolerance(profile)
    variants = build_variants(run, fp32, (fmt,), log=log)
    results = evaluate(variants, windows, keras_scores, run.record.threshold, labels, lambda f, q: tolerance)
    budget = profile.model_storage_budget_kb * 1024 if profile else None
    chosen, note = choose_smallest(results, budget)
    log("quantize auto:\n" + matrix_table(results))
    if profile is not None:
        note["device"] = profile.name
    if chosen is None:
        raise ExportError("--quantize auto: no variant passes: " + "; ".join(f"{c['variant']}: {c['why']}" for c in note["candidates"]))
    log(f"quantize auto: chose {chosen.label} ({chosen.bytes / 1024:.1f} KB)")
    return chosen.variant, chosen.report, note


def _step_model(run: Run, model, quantize: str, variant: Variant, log) -> tuple[ModelSpec, bytes, dict]:
    """The single-step model with the window model's weight storage, checked and measured against it:
    replay from zero state must equal the window model; never-reset streaming on the validation part
    gives the divergence figures users weigh before opting in."""
    from ..edge_runtime.device_profile import ParityTolerance
    from ..edge_runtime.stateful import StepModel
    from .onnx_graph import OPSET, OUTPUT_NAME
    from .step_graph import STEP_INPUT, keras_to_step_onnx, next_state_name
    from .variants import onnx_variant

    step_onnx = keras_to_step_onnx(model)
    content = onnx_variant(step_onnx, quantize).content
    step = StepModel(content)
    w = run.record.window
    holdout = run.holdout()
    scaled = run.record.scaler.transform(holdout.validation)
    windows = np.ascontiguousarray(sliding_windows(scaled, w, 1))
    exact = variant.scores(windows)
    picks = np.unique(np.linspace(0, len(windows) - 1, min(64, len(windows))).astype(np.int64))
    replay_diff = float(np.max(np.abs(step.replay(windows[picks]) - exact[picks])))
    if not replay_diff <= _GOLDEN_ATOL:
        raise ExportError(f"the step model replayed from zero state differs from the window model by {replay_diff:.2e} "
                          f"(> {_GOLDEN_ATOL:.0e}); the step graph does not match")
    stateful = step.run_series(scaled)[w - 1 :]
    labels = None if holdout.validation_labels is None else holdout.validation_labels[w - 1 :]
    ungated = ParityTolerance(max_abs_diff=1e30, min_decision_agreement=0.0, max_f1_drop=1.0)
    report = compare_scores(exact, stateful, run.record.threshold, ungated, labels, variant="stateful vs exact")
    o = report.alarm_onsets
    log(f"stateful streaming vs exact windows on validation ({report.windows} samples, never reset): max |diff| "
        f"{report.max_abs_diff:.2e}, mean {report.mean_abs_diff:.2e}, decisions agree "
        f"{100 * report.decision_agreement:.2f}%, alarm onsets {o['matched']}/{o['reference']} matched")
    figures = _parity_figures(report)
    for key in ("failures", "passed", "variant"):
        figures.pop(key, None)
    figures = {
        "reference": "exact windows of this bundle's window model",
        "data": f"validation part of the run: {len(scaled)} samples as one stream from zero state, never reset",
        "replay_max_abs_diff": replay_diff,
        **figures,
    }
    states = " ".join(f"{name}[{u}]" for name, u in zip(step.state_names, step.state_sizes))
    spec = ModelSpec(file=STEP_FILE, format="onnx", input_name=STEP_INPUT, input_shape=[None, len(run.record.features)],
                     output_name=OUTPUT_NAME, quantization=quantize,
                     graph=f"fused-gru step opset {OPSET}; states {states} (outputs {next_state_name(0)}, ...)")
    return spec, content, figures


def _tolerance(quantize: str, profile: DeviceProfile | None, relative: bool = False):
    if profile is None or quantize == "none":
        tolerance = DEFAULT_TOLERANCE[quantize]
        if relative and quantize == "none":
            # A forecast-error score sums squared standardised residuals in float32, in a different order in
            # Keras and onnxruntime: relative rounding reaches ~1e-5 on real series (seen: 1.13e-05 on NAB).
            tolerance = replace(tolerance, max_abs_diff=1e-4)
        return tolerance
    return profile.parity


def _tf2onnx_cross_check(model, windows: np.ndarray, fused_scores: np.ndarray, log, record=None) -> None:
    """tf2onnx converts the same model independently (a Loop graph); both graphs must agree."""
    from ..train.normal_only import scores_from_outputs
    from .tf2onnx_check import tf2onnx_scores

    raw = tf2onnx_scores(model, windows)
    reference = raw.reshape(len(windows), -1)[:, 0] if record is None else scores_from_outputs(record, windows, raw)
    worst = float(np.max(np.abs(reference - fused_scores)))
    log(f"tf2onnx cross-check: max |diff| {worst:.2e} over {len(windows)} windows")
    if worst > 1e-5:
        raise ExportError(f"the fused graph and tf2onnx's conversion disagree by {worst:.2e} (> 1e-5)")


def _golden(run: Run, score_fn: Callable[[np.ndarray], np.ndarray]) -> Golden:
    """Two raw segments from the test part: around the highest score and around the lowest."""
    holdout = run.holdout()
    w = run.record.window
    length = w + _PROBE_EXTRA
    raw = holdout.test
    if len(raw) < length:
        length = len(raw)
    scaled = run.record.scaler.transform(raw)
    coarse = score_fn(np.ascontiguousarray(sliding_windows(scaled, w, 1)))
    probes = []
    for end in (int(np.argmax(coarse)) + w - 1, int(np.argmin(coarse)) + w - 1):
        start = int(np.clip(end - length + 1, 0, len(raw) - length))
        segment = raw[start : start + length]
        expected = score_fn(np.ascontiguousarray(sliding_windows(run.record.scaler.transform(segment), w, 1)))
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
    if run.record.score_kind == "forecast_error":
        head = run.record.error_head
        what = "next-step change" if head.get("target") == "delta" else "next sample"
        return (f"RMS forecast error of the window's last {head.get('steps')} samples ({what} forecast by a GRU "
                f"trained on normal data), standardised per feature on normal validation data; "
                f"anomaly when score >= threshold ({run.record.threshold_rule})")
    return run.record.score_kind
