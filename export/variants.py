"""The quantization matrix: every way to ship a run's model, each scored against Keras on the same windows.

Variants: ONNX fp32 / fp16-weight / int8-weight (fused GRU, ``weight_storage``) and TFLite fp32 / fp16 /
dynamic-range int8 / full int8 (unrolled GRU, ``tflite_export``). Each gets a size and a parity report
(max and mean |diff|, decision agreement, F1 and its delta, alarm-onset shift). ``choose_smallest`` is
``export --quantize auto``: the smallest variant whose *decisions* stay within the tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..edge_runtime.bench import variant_label
from ..edge_runtime.device_profile import DeviceProfile, ParityTolerance
from .parity import DEFAULT_TOLERANCE, ParityReport, compare_scores

FORMAT_QUANTIZATIONS = {"onnx": ("none", "fp16", "int8"), "tflite": ("none", "fp16", "dynamic", "int8")}
FORMATS = tuple(FORMAT_QUANTIZATIONS)
MODEL_FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}
# `auto` judges decisions (agreement, F1), not raw score differences: this bound never binds, and unlike
# infinity it survives the manifest's strict JSON.
DECISIONS_ONLY_DIFF = 1e30
# Without a device profile, `auto` asks what the int8 default asks of decisions.
AUTO_DEFAULT = ParityTolerance(max_abs_diff=DECISIONS_ONLY_DIFF, min_decision_agreement=0.995, max_f1_drop=0.01)


@dataclass
class Variant:
    """One exported model in memory, with a scorer that runs it the way the edge runtime does."""

    format: str
    quantization: str
    content: bytes
    input_name: str
    output_name: str
    graph: str
    _backend: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def label(self) -> str:
        return variant_label(self.format, self.quantization)

    @property
    def file_name(self) -> str:
        return MODEL_FILES[self.format]

    @property
    def bytes(self) -> int:
        return len(self.content)

    def scores(self, windows: np.ndarray) -> np.ndarray:
        """Scaled windows [N, T, F] -> scores float64 [N] (first output column for multi-output heads)."""
        if self._backend is None:
            self._backend = _backend(self)
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        out = [np.asarray(self._backend(windows[i : i + 512])) for i in range(0, len(windows), 512)]
        return np.concatenate(out).reshape(len(windows), -1)[:, 0].astype(np.float64)


def _backend(v: Variant) -> Callable[[np.ndarray], np.ndarray]:
    if v.format == "tflite":
        from ..edge_runtime.model_backend import TfliteBackend

        return TfliteBackend(None, None, threads=1, content=v.content).run
    from ..edge_runtime.model_backend import ort_session

    session = ort_session(v.content)  # as the runtime opens it
    return lambda w: session.run([v.output_name], {v.input_name: w})[0]


def onnx_variant(fp32, quantization: str) -> Variant:
    """The fused-GRU ONNX model with ``quantization`` weight storage (none, fp16, int8)."""
    from .onnx_graph import INPUT_NAME, OPSET, OUTPUT_NAME
    from .weight_storage import to_fp16_weights, to_int8_weights

    convert = {"none": lambda m: m, "fp16": to_fp16_weights, "int8": to_int8_weights}.get(quantization)
    if convert is None:
        raise ValueError(f"unknown ONNX quantization {quantization!r}; expected one of {FORMAT_QUANTIZATIONS['onnx']}")
    return Variant("onnx", quantization, convert(fp32).SerializeToString(), INPUT_NAME, OUTPUT_NAME,
                   f"fused-gru opset {OPSET}")


def tflite_variants(run, quantizations, log: Callable[[str], None] = print) -> dict[str, Variant | Exception]:
    """TFLite conversions of the run's model (one child process); a failed variant maps to its error."""
    from .tflite_export import REPRESENTATIVE_WINDOWS, convert_keras_file

    representative = representative_windows(run, REPRESENTATIVE_WINDOWS) if "int8" in quantizations else None
    log(f"converting to TFLite ({', '.join(quantizations)}) in a child process ...")
    converted = convert_keras_file(run.model_path, list(quantizations), representative)
    out: dict[str, Variant | Exception] = {}
    for q, result in converted.items():
        if isinstance(result, Exception):
            out[q] = result
        else:
            out[q] = Variant("tflite", q, result.content, result.input_name, result.output_name,
                             f"unrolled-gru tflite, {run.record.window} steps")
    return out


def representative_windows(run, count: int) -> np.ndarray:
    """Scaled training windows spread evenly over the run's kept training tail (int8 calibration)."""
    from ..edge_runtime.windows import sliding_windows

    tail = run.holdout().train_tail
    windows = sliding_windows(run.record.scaler.transform(tail), run.record.window, 1)
    if len(windows) == 0:
        raise ValueError(f"{run.dir}: the kept training tail ({len(tail)} rows) is shorter than one window")
    picks = np.unique(np.linspace(0, len(windows) - 1, min(count, len(windows))).astype(np.int64))
    return np.ascontiguousarray(windows[picks], dtype=np.float32)


@dataclass
class VariantResult:
    """A variant's size and parity, or why it could not be built."""

    label: str
    format: str
    quantization: str
    bytes: int | None
    report: ParityReport | None
    error: str | None = None
    variant: Variant | None = field(default=None, repr=False)
    reasons: list = field(default_factory=list)  # why `auto` did not pick it (beyond parity failures)

    @property
    def passed(self) -> bool:
        return self.error is None and self.report is not None and self.report.passed and not self.reasons

    def to_dict(self) -> dict:
        d = {"variant": self.label, "format": self.format, "quantization": self.quantization, "bytes": self.bytes}
        if self.report is not None:
            r = self.report
            d.update(max_abs_diff=r.max_abs_diff, mean_abs_diff=r.mean_abs_diff, decision_agreement=r.decision_agreement,
                     f1=r.f1_candidate, f1_delta=r.f1_delta, alarm_onsets=r.alarm_onsets,
                     tolerance=asdict(r.tolerance), failures=list(r.failures))
        if self.error:
            d["error"] = self.error
        if self.reasons:
            d["reasons"] = list(self.reasons)
        d["passed"] = self.passed
        return d


def evaluate(variants: list[Variant | tuple[str, str, Exception]], windows: np.ndarray, keras_scores: np.ndarray,
             threshold: float, labels: np.ndarray | None,
             tolerance_for: Callable[[str, str], ParityTolerance]) -> list[VariantResult]:
    """Score every variant on the same windows and compare with Keras. A failed build is a result with an error."""
    results = []
    for v in variants:
        if isinstance(v, tuple):
            fmt, q, err = v
            results.append(VariantResult(variant_label(fmt, q), fmt, q, None, None, error=str(err)))
            continue
        try:
            scores = v.scores(windows)
        except Exception as e:  # a variant that does not even run is a result, not a crash of the matrix
            results.append(VariantResult(v.label, v.format, v.quantization, v.bytes, None,
                                         error=f"does not run: {type(e).__name__}: {e}", variant=v))
            continue
        report = compare_scores(keras_scores, scores, threshold, tolerance_for(v.format, v.quantization), labels,
                                variant=v.label)
        results.append(VariantResult(v.label, v.format, v.quantization, v.bytes, report, variant=v))
    return results


def default_tolerance(fmt: str, quantization: str) -> ParityTolerance:
    return DEFAULT_TOLERANCE.get(quantization, DEFAULT_TOLERANCE["int8"])


def auto_tolerance(profile: DeviceProfile | None) -> ParityTolerance:
    """The device profile's decision gates (agreement, F1 drop); raw score differences are not gated."""
    if profile is None:
        return AUTO_DEFAULT
    return ParityTolerance(max_abs_diff=DECISIONS_ONLY_DIFF,
                           min_decision_agreement=profile.parity.min_decision_agreement,
                           max_f1_drop=profile.parity.max_f1_drop)


def choose_smallest(results: list[VariantResult], budget_bytes: int | None = None) -> tuple[VariantResult | None, dict]:
    """The smallest passing variant (ties: the listed order) and a note saying why, for the manifest."""
    for r in results:
        if budget_bytes is not None and r.bytes is not None and r.bytes > budget_bytes:
            r.reasons.append(f"{r.bytes / 1024:.1f} KB exceeds the device budget {budget_bytes / 1024:.0f} KB")
    ranked = sorted((r for r in results if r.bytes is not None), key=lambda r: r.bytes)
    chosen = next((r for r in ranked if r.passed), None)
    tol = next((r.report.tolerance for r in results if r.report is not None), None)
    rule = "smallest variant whose decisions agree with Keras on the run's test windows"
    if tol is not None:
        rule += (f" (agreement >= {100 * tol.min_decision_agreement:.2f} %, F1 drop <= {tol.max_f1_drop})")
    note = {
        "mode": "auto",
        "rule": rule,
        "chosen": chosen.label if chosen else None,
        "candidates": [_candidate_note(r, chosen) for r in results],
    }
    return chosen, note


def _candidate_note(r: VariantResult, chosen: VariantResult | None) -> dict:
    d = {"variant": r.label, "bytes": r.bytes, "passed": r.passed}
    if r.report is not None:
        d.update(decision_agreement=round(r.report.decision_agreement, 6), max_abs_diff=r.report.max_abs_diff,
                 f1_delta=r.report.f1_delta)
    why = list(r.report.failures if r.report else []) + list(r.reasons) + ([r.error] if r.error else [])
    if r is chosen:
        why.append("chosen: smallest passing")
    elif r.passed and chosen is not None:
        why.append(f"passes but larger than {chosen.label}")
    d["why"] = "; ".join(why)
    return d


def matrix_table(results: list[VariantResult]) -> str:
    """A markdown table of the matrix (the README's and `gru-edge parity --matrix`'s)."""
    head = ["variant", "KB", "max abs diff", "mean abs diff", "agree %", "F1", "ΔF1", "onset shift max/mean", "missed/extra", "gate"]
    rows = [head, ["---"] * len(head)]
    for r in results:
        if r.report is None:
            rows.append([r.label, _kb(r.bytes), "", "", "", "", "", "", "", f"ERROR: {r.error}"])
            continue
        p, o = r.report, r.report.alarm_onsets
        shift = "-" if not o.get("matched") else f"{o['max_abs_shift']} / {o['mean_abs_shift']:.1f}"
        rows.append([
            r.label, _kb(r.bytes), f"{p.max_abs_diff:.1e}", f"{p.mean_abs_diff:.1e}", f"{100 * p.decision_agreement:.2f}",
            "-" if p.f1_candidate is None else f"{p.f1_candidate:.3f}",
            "-" if p.f1_delta is None else f"{p.f1_delta:+.3f}", shift,
            f"{o.get('missed', 0)}/{o.get('extra', 0)}",
            "pass" if r.passed else "FAIL: " + "; ".join(list(p.failures) + r.reasons),
        ])
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def build_variants(run, fp32_onnx, formats=FORMATS, quantizations: dict[str, tuple] | None = None,
                   log: Callable[[str], None] = print) -> list[Variant | tuple[str, str, Exception]]:
    """Every requested variant of the run's model; a TFLite conversion that fails is kept as ``(fmt, q, error)``."""
    out: list[Variant | tuple[str, str, Exception]] = []
    for fmt in formats:
        wanted = (quantizations or {}).get(fmt) or FORMAT_QUANTIZATIONS[fmt]
        if fmt == "onnx":
            out += [onnx_variant(fp32_onnx, q) for q in wanted]
        else:
            for q, v in tflite_variants(run, wanted, log).items():
                out.append(v if isinstance(v, Variant) else ("tflite", q, v))
    return out


def quantization_matrix(run_dir, formats=FORMATS, profile: DeviceProfile | None = None,
                        log: Callable[[str], None] = print) -> list[VariantResult]:
    """``gru-edge parity --matrix``: every variant of a run, built in memory and compared with its Keras model."""
    from ..train.normal_only import reference_scores, run_error_head
    from ..train.record import open_run
    from .onnx_graph import keras_to_error_onnx, keras_to_fused_onnx
    from .parity import run_test_windows

    run = open_run(run_dir)
    model = run.load_model()
    head = run_error_head(run.record)
    if head is None:
        fp32 = keras_to_fused_onnx(model)
    else:  # a normal-only run's score is computed in the ONNX graph; TFLite export does not carry it
        fp32 = keras_to_error_onnx(model, head)
        formats = tuple(f for f in formats if f == "onnx")
    windows, labels = run_test_windows(run)
    keras_scores = reference_scores(run.record, model, windows)
    variants = build_variants(run, fp32, formats, log=log)
    tolerance_for = (lambda f, q: auto_tolerance(profile)) if profile else default_tolerance
    return evaluate(variants, windows, keras_scores, run.record.threshold, labels, tolerance_for)
