"""Device profiles: what a target gateway can hold and how fast it must answer.

A profile is a TOML file (``devices/<name>.toml``, shipped as package data, or any path). It drives
export (format, quantization, size budget), the parity check (how close the exported model must
stay to the Keras one) and the latency check (per-window budget, with ``speed_factor`` to estimate
the device's latency from one measured on the workstation until a ``[measured]`` table exists).

Parsing is strict: an unknown key is a typo until proven otherwise, and a typo in a budget would
silently pass a check it should fail.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

PACKAGE = "gru_edge.devices"
ARCHES = ("aarch64", "x86_64", "armv7l", "riscv64")
FORMATS = ("onnx",)
QUANTIZATIONS = ("none", "fp16", "int8")


class ProfileError(ValueError):
    """A profile is missing, unreadable, or has a bad, missing or unknown key."""


@dataclass(frozen=True)
class ParityTolerance:
    max_abs_diff: float  # largest |score_exported - score_keras| over the test windows
    min_decision_agreement: float  # fraction of windows whose alarm decision is the same
    max_f1_drop: float  # F1(keras) - F1(exported) on the labelled test windows


@dataclass(frozen=True)
class Measured:
    latency_ms_per_window: float  # measured on the real device by the benchmark
    measured_at: str = ""  # ISO date
    runtime: str = ""  # e.g. "onnxruntime 1.20.1"
    notes: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    arch: str
    cpu: str
    cores: int
    ram_mb: int
    model_storage_budget_kb: int
    format: str
    quantization: str
    threads: int
    latency_budget_ms: float  # per window, on the device
    speed_factor: float  # device is this many times slower per core than the reference workstation
    parity: ParityTolerance
    measured: Measured | None = None
    path: str = ""  # where the profile was read from (not a TOML key)

    def estimated_latency_ms(self, workstation_ms: float) -> float:
        """Device latency from a workstation measurement: the measured number when there is one."""
        if self.measured is not None:
            return self.measured.latency_ms_per_window
        return workstation_ms * self.speed_factor


# key -> (kind, check, description of what is expected)
_Spec = tuple[str, Any, str]
_TOP: dict[str, _Spec] = {
    "name": ("str", lambda v: bool(v.strip()), "a non-empty string"),
    "description": ("str", None, "a string"),
    "arch": ("str", lambda v: v in ARCHES, f"one of {ARCHES}"),
    "cpu": ("str", lambda v: bool(v.strip()), "a non-empty string"),
    "cores": ("int", lambda v: v >= 1, "an integer >= 1"),
    "ram_mb": ("int", lambda v: v >= 1, "an integer >= 1"),
    "model_storage_budget_kb": ("int", lambda v: v >= 1, "an integer >= 1"),
    "format": ("str", lambda v: v in FORMATS, f"one of {FORMATS}"),
    "quantization": ("str", lambda v: v in QUANTIZATIONS, f"one of {QUANTIZATIONS}"),
    "threads": ("int", lambda v: v >= 1, "an integer >= 1"),
    "latency_budget_ms": ("float", lambda v: v > 0, "a number > 0"),
    "speed_factor": ("float", lambda v: v > 0, "a number > 0"),
}
_PARITY: dict[str, _Spec] = {
    "max_abs_diff": ("float", lambda v: v >= 0, "a number >= 0"),
    "min_decision_agreement": ("float", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "max_f1_drop": ("float", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
}
_MEASURED_REQUIRED: dict[str, _Spec] = {
    "latency_ms_per_window": ("float", lambda v: v > 0, "a number > 0"),
}
_MEASURED_OPTIONAL: dict[str, _Spec] = {
    "measured_at": ("str", None, "a string (ISO date)"),
    "runtime": ("str", None, "a string"),
    "notes": ("str", None, "a string"),
}
_TABLES = ("parity", "measured")


def load_profile(name_or_path: str | os.PathLike) -> DeviceProfile:
    """A packaged profile by name (``"rpi4"``) or any ``.toml`` file by path."""
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text or "/" in text:
        p = Path(text)
        if not p.is_file():
            raise ProfileError(f"{text}: no such profile file")
        return _load_file(p, p.read_bytes)
    known = _packaged()
    if text not in known:
        raise ProfileError(f"unknown device profile {text!r}; known: {', '.join(sorted(known)) or '(none)'}")
    profile = _load_file(known[text], known[text].read_bytes)
    if profile.name != text:
        raise ProfileError(f"{profile.path}: key 'name': expected {text!r} (the file name), got {profile.name!r}")
    return profile


def list_profiles() -> list[DeviceProfile]:
    """Every packaged profile, sorted by name."""
    return [load_profile(name) for name in sorted(_packaged())]


def profile_names() -> list[str]:
    return sorted(_packaged())


def parse_profile(data: dict, source: str) -> DeviceProfile:
    """Validate a parsed TOML document; ``source`` names the file in errors."""
    _reject_unknown(data, set(_TOP) | set(_TABLES), source, "")
    top = {k: _get(data, k, spec, source, "") for k, spec in _TOP.items()}
    parity_t = _table(data, "parity", source, required=True)
    _reject_unknown(parity_t, set(_PARITY), source, "parity")
    parity = ParityTolerance(**{k: _get(parity_t, k, s, source, "parity") for k, s in _PARITY.items()})
    measured = None
    measured_t = _table(data, "measured", source, required=False)
    if measured_t is not None:
        _reject_unknown(measured_t, set(_MEASURED_REQUIRED) | set(_MEASURED_OPTIONAL), source, "measured")
        fields = {k: _get(measured_t, k, s, source, "measured") for k, s in _MEASURED_REQUIRED.items()}
        fields.update({k: _get(measured_t, k, s, source, "measured") for k, s in _MEASURED_OPTIONAL.items() if k in measured_t})
        measured = Measured(**fields)
    if top["threads"] > top["cores"]:
        raise ProfileError(
            f"{source}: key 'threads': expected at most cores={top['cores']}, got {top['threads']}"
        )
    return DeviceProfile(**top, parity=parity, measured=measured, path=source)


def _load_file(path: Any, read_bytes) -> DeviceProfile:
    source = str(path)
    try:
        data = tomllib.loads(read_bytes().decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{source}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{source}: cannot read: {e}") from None
    return parse_profile(data, source)


def _packaged() -> dict[str, Any]:
    root = resources.files(PACKAGE)
    return {p.name[: -len(".toml")]: p for p in root.iterdir() if p.name.endswith(".toml") and p.is_file()}


def _key(table: str, key: str) -> str:
    return f"{table}.{key}" if table else key


def _reject_unknown(data: dict, allowed: set[str], source: str, table: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"in [{table}]" if table else "at top level"
        raise ProfileError(
            f"{source}: unknown key {_key(table, unknown[0])!r} {where}; allowed: {', '.join(sorted(allowed))}"
        )


def _table(data: dict, name: str, source: str, required: bool) -> dict | None:
    if name not in data:
        if required:
            raise ProfileError(f"{source}: missing table [{name}]")
        return None
    value = data[name]
    if not isinstance(value, dict):
        raise ProfileError(f"{source}: key {name!r}: expected a table [{name}], got {value!r} ({type(value).__name__})")
    return value


def _get(data: dict, key: str, spec: _Spec, source: str, table: str) -> Any:
    kind, check, expected = spec
    full = _key(table, key)
    if key not in data:
        raise ProfileError(f"{source}: missing key {full!r} (expected {expected})")
    value = data[key]
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:  # float: TOML writes 20 and 20.0 differently; both mean a number here
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            value = float(value)
    if not ok or (check is not None and not check(value)):
        raise ProfileError(f"{source}: key {full!r}: expected {expected}, got {value!r} ({type(value).__name__})")
    return value


def write_measured(path: str | os.PathLike, latency_ms_per_window: float, runtime: str, notes: str = "") -> DeviceProfile:
    """Record a latency measured on the real device as the profile's ``[measured]`` table.

    The standard library reads TOML but does not write it, so the table is replaced as text: every other
    line (and comment) of the file stays as it was. The new text must parse as a valid profile before it
    replaces the file, atomically.
    """
    import datetime

    from .fsutil import write_bytes_atomic

    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    kept, skipping = [], False
    for line in lines:
        header = line.strip()
        if header.startswith("[") and header.endswith("]"):
            skipping = header == "[measured]"
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    today = datetime.date.today().isoformat()
    kept += ["", "[measured]", "# Written by `edge-score bench --write-profile` on the device itself.",
             f"latency_ms_per_window = {float(latency_ms_per_window):.6g}", f'measured_at = "{today}"',
             f"runtime = {json.dumps(runtime)}", f"notes = {json.dumps(notes)}"]
    text = "\n".join(kept) + "\n"
    try:
        profile = parse_profile(tomllib.loads(text), str(path))
    except tomllib.TOMLDecodeError as e:  # the rest of the file was already broken: say so, change nothing
        raise ProfileError(f"{path}: not valid TOML, left unchanged: {e}") from e
    write_bytes_atomic(path, text.encode("utf-8"))
    return profile
