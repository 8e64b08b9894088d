"""Opening a bundle safely: schema, every file hash, then the golden self-test.

Nothing is handed to a caller until all three pass, so a truncated, tampered or mis-built bundle
never scores a single live sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fsutil import sha256_file
from .manifest import MANIFEST_NAME, Manifest, ManifestError
from .model_backend import ModelBackend, open_backend
from .signing import SignatureError, verify_signature
from .windows import sliding_windows


class BundleError(RuntimeError):
    """The bundle cannot be trusted: missing, corrupt, tampered, or failing its self-test."""


def read_manifest(bundle_dir: str | Path) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not Path(bundle_dir).is_dir():
        raise BundleError(f"{bundle_dir}: not a bundle directory (it does not exist or is not a directory)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; a bundle directory holds manifest.json beside its model files") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: unreadable: {e}") from e
    try:
        return Manifest.from_json(text, source=str(path))
    except ManifestError as e:
        raise BundleError(str(e)) from e


def verify_files(bundle_dir: str | Path, manifest: Manifest) -> None:
    """Every listed file exists inside the bundle with the recorded size and sha256."""
    root = Path(bundle_dir).resolve()
    for entry in manifest.files:
        path = (root / entry.path).resolve()
        if root not in path.parents:
            raise BundleError(f"{bundle_dir}: file {entry.path!r} resolves outside the bundle")
        if not path.is_file():
            raise BundleError(f"{bundle_dir}: file {entry.path!r} listed in the manifest is missing")
        size = path.stat().st_size
        if size != entry.bytes:
            raise BundleError(
                f"{bundle_dir}: file {entry.path!r} has {size} bytes, manifest expects {entry.bytes} (truncated or replaced)"
            )
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise BundleError(
                f"{bundle_dir}: file {entry.path!r} sha256 {digest[:16]}... does not match the manifest's "
                f"{entry.sha256[:16]}... (tampered or corrupted)"
            )


@dataclass(frozen=True)
class SelfTestResult:
    windows: int
    max_abs_diff: float
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol


def self_test(manifest: Manifest, model: ModelBackend) -> SelfTestResult:
    """Replay the golden probes through scaler + windows + model and compare with the export-time scores."""
    worst = 0.0
    count = 0
    for probe in manifest.golden.probes:
        samples = np.asarray(probe.samples, dtype=np.float64)
        windows = sliding_windows(manifest.scaler.transform(samples), manifest.window, 1)
        scores = model.run(np.ascontiguousarray(windows))
        expected = np.asarray(probe.expected_scores, dtype=np.float64)
        diff = np.abs(scores.astype(np.float64) - expected)
        worst = max(worst, float(np.max(diff)) if diff.size else 0.0)
        if not np.all(np.isfinite(scores)):
            worst = float("inf")
        count += len(expected)
    return SelfTestResult(windows=count, max_abs_diff=worst, atol=manifest.golden.atol)


def check_signature(bundle_dir: str | Path, key: bytes) -> None:
    """Refuse a bundle that is unsigned or not signed with ``key`` (HMAC over manifest.json)."""
    try:
        verify_signature(bundle_dir, key)
    except SignatureError as e:
        raise BundleError(str(e)) from e


def open_bundle(bundle_dir: str | Path, threads: int = 1, role: str = "window",
                key: bytes | None = None) -> tuple[Manifest, ModelBackend]:
    """Manifest + a live model backend, only after hashes and the golden self-test pass.

    With ``key``, the signature is checked first: an unsigned or wrongly signed bundle is refused.
    """
    if key is not None:
        check_signature(bundle_dir, key)
    manifest = read_manifest(bundle_dir)
    verify_files(bundle_dir, manifest)
    spec = manifest.models.get(role)
    if spec is None:
        raise BundleError(f"{bundle_dir}: bundle has no {role!r} model (has {sorted(manifest.models)})")
    try:
        model = open_backend(Path(bundle_dir) / spec.file, spec, threads=threads)
    except Exception as e:  # a backend raises its own library's errors; the caller needs one kind
        raise BundleError(f"{bundle_dir}: model {spec.file!r} does not load: {e}") from e
    if role == "window":
        result = self_test(manifest, model)
        if not result.passed:
            raise BundleError(
                f"{bundle_dir}: golden self-test failed: max score difference {result.max_abs_diff:.3g} over "
                f"{result.windows} probe windows exceeds tolerance {result.atol:.3g}; refusing to go live"
            )
    return manifest, model
