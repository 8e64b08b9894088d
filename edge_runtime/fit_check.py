"""Will this bundle fit that gateway? Storage, memory and latency against a device profile.

- **storage**: bytes of the bundle as flashed (manifest, signature, listed files) against the
  profile's ``model_storage_budget_kb``.
- **memory**: peak resident memory of a fresh process that imports the runtime, opens and
  self-tests the bundle and streams windows through it -- i.e. runtime + session + buffers,
  measured on this host, so an estimate for the device (same order of magnitude on aarch64).
  Budget: ``memory_fraction`` of the profile's RAM (the rest is the OS and the gateway's own work).
- **latency**: per window at batch 1, as the streaming loop runs it, with the profile's thread
  count; measured here and multiplied by the profile's ``speed_factor``, or replaced by the
  profile's ``[measured]`` figure when it has one.
- **format**: the device's runtime must read the bundle's model format.

Measurements run in a child process so the figures are not inflated by whatever the caller
(e.g. the toolkit, with TensorFlow loaded) holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .bundle import read_manifest
from .device_profile import DeviceProfile
from .manifest import MANIFEST_NAME
from .signing import SIGNATURE_NAME

DEFAULT_MEMORY_FRACTION = 0.25
LATENCY_REPEATS = 300


class FitError(RuntimeError):
    """The fit could not be measured (the measuring process failed)."""


@dataclass(frozen=True)
class FitRow:
    check: str
    value: str
    budget: str
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class FitReport:
    device: str
    bundle: str
    rows: list  # list[FitRow]
    measured: dict  # raw figures

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict:
        return {"device": self.device, "bundle": self.bundle, "passed": self.passed,
                "rows": [asdict(r) for r in self.rows], "measured": self.measured}

    def table(self) -> str:
        header = ("check", "value", "budget", "result", "note")
        rows = [header] + [(r.check, r.value, r.budget, "PASS" if r.passed else "FAIL", r.note) for r in self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        verdict = "fits" if self.passed else "does NOT fit"
        return "\n".join(lines + [f"{self.bundle} {verdict} {self.device}"])


def bundle_bytes(bundle_dir: str | Path) -> int:
    """What flashing copies: the manifest, the signature if any, and every listed file."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    total = (bundle_dir / MANIFEST_NAME).stat().st_size + sum(e.bytes for e in manifest.files)
    sig = bundle_dir / SIGNATURE_NAME
    return total + (sig.stat().st_size if sig.is_file() else 0)


def measure(bundle_dir: str | Path, threads: int = 1, repeats: int = LATENCY_REPEATS) -> dict:
    """Run the measuring child: memory at each stage and batch-1 latency (see ``_measure_here``)."""
    cmd = [sys.executable, "-m", "gru_edge.edge_runtime.fit_check", str(bundle_dir), "--threads", str(threads),
           "--repeats", str(repeats)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise FitError(f"measuring {bundle_dir} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_fit(bundle_dir: str | Path, profile: DeviceProfile, memory_fraction: float = DEFAULT_MEMORY_FRACTION,
              repeats: int = LATENCY_REPEATS, measured: dict | None = None) -> FitReport:
    """Measure (unless ``measured`` is given) and judge against ``profile``."""
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    manifest = read_manifest(bundle_dir)
    size = bundle_bytes(bundle_dir)
    m = measured if measured is not None else measure(bundle_dir, threads=profile.threads, repeats=repeats)
    rows = []
    budget_kb = profile.model_storage_budget_kb
    rows.append(FitRow("storage", f"{size / 1024:.1f} KB", f"{budget_kb} KB", size <= budget_kb * 1024,
                       "manifest + model files as flashed"))
    peak_mb = m["peak_rss_kb"] / 1024
    mem_budget = profile.ram_mb * memory_fraction
    rows.append(FitRow("memory", f"{peak_mb:.1f} MB", f"{mem_budget:.0f} MB", peak_mb <= mem_budget,
                       f"peak RSS of runtime + session + buffers measured on this host (estimate); "
                       f"budget {memory_fraction:.0%} of {profile.ram_mb} MB RAM"))
    host_ms = m["latency_ms_p50"]
    device_ms = profile.estimated_latency_ms(host_ms)
    if profile.measured is not None:
        how = f"measured on the device ({profile.measured.measured_at or 'date unknown'}); here {host_ms:.3f} ms"
    else:
        how = f"{host_ms:.3f} ms here x speed_factor {profile.speed_factor:g} (estimate)"
    rows.append(FitRow("latency", f"{device_ms:.3f} ms/window", f"{profile.latency_budget_ms:g} ms",
                       device_ms <= profile.latency_budget_ms, f"{how}; {profile.threads} thread(s), batch 1"))
    fmt = manifest.window_model.format
    rows.append(FitRow("format", fmt, profile.format, fmt == profile.format,
                       f"quantization {manifest.window_model.quantization} (profile prefers {profile.quantization})"))
    return FitReport(device=profile.name, bundle=str(bundle_dir), rows=rows,
                     measured={**m, "bundle_bytes": size, "device_latency_ms": device_ms})


def _rss_kb() -> tuple[int, int]:
    """(current, peak) resident memory in KB."""
    cur = peak = 0
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cur = peak
    return cur, peak


def _measure_here(bundle_dir: str, threads: int, repeats: int) -> dict:
    import numpy as np

    from .scorer import Scorer

    runtime_kb, _ = _rss_kb()  # python + numpy + onnxruntime imported (this module imports them)
    scorer = Scorer(bundle_dir, threads=threads)  # hashes + golden self-test, as on the gateway
    session_kb, _ = _rss_kb()
    stream = scorer.stream()
    rng = np.random.default_rng(0)
    mean = np.asarray(scorer.manifest.scaler.mean)
    scale = np.asarray(scorer.manifest.scaler.scale)
    samples = mean + scale * rng.normal(size=(scorer.window + 64, len(scorer.features)))
    for row in samples:  # fills the ring and warms the session
        stream.push(row)
    window = scorer.manifest.scaler.transform(samples[-scorer.window:]).astype(np.float32)[None]
    times = []
    deadline = time.perf_counter() + 10.0  # a slow model on a slow host still finishes
    for _ in range(repeats):
        t0 = time.perf_counter()
        scorer._run_scaled(window)
        times.append(time.perf_counter() - t0)
        if t0 > deadline:
            break
    times.sort()
    end_kb, peak_kb = _rss_kb()
    return {"runtime_rss_kb": runtime_kb, "session_rss_kb": session_kb,
            "end_rss_kb": end_kb, "peak_rss_kb": max(peak_kb, end_kb), "threads": threads, "windows": len(times),
            "latency_ms_p50": 1e3 * times[len(times) // 2], "latency_ms_p95": 1e3 * times[int(len(times) * 0.95)]}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gru_edge.edge_runtime.fit_check",
                                 description="Measure a bundle's memory and batch-1 latency in this process (JSON).")
    ap.add_argument("bundle")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=LATENCY_REPEATS)
    a = ap.parse_args()
    print(json.dumps(_measure_here(a.bundle, a.threads, a.repeats)))
