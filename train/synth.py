"""The embedded default dataset: a simulated centrifugal pump station with labelled faults.

It is what ``gru-edge`` trains on when the user brings no data, so it has to be deterministic,
physically plausible and hard enough to need the cross-channel model, yet clear enough that a small
GRU seeing 64-sample windows can learn every fault kind.

The plant (1 sample per second):

- the drive's speed follows set-points that change every few hundred seconds with smooth ramps,
  plus a small control jitter that moves every hydraulic channel together;
- flow and head are the intersection of the pump curve (scaled by the affinity laws) with a system
  curve whose resistance wanders slowly (valves, demand);
- motor current follows the hydraulic power, temperature is a slow first-order lag of the copper
  losses (``I^2``), vibration RMS grows with the square of the speed;
- every channel then gets white sensor noise.

The faults are applied to the *measured* values, as a gateway would see them. Their layout is
planned in cycles: the timeline after an anomaly-free lead (10 %) is cut into equal cycles that each
hold one fault of every kind in shuffled order. With the default rows there are six cycles of 15 %
each, whose borders fall on the 70 % and 85 % marks, so a time-ordered 70/15/15 split sees every kind
in every part.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURE_NAMES: tuple[str, ...] = ("pump_current", "pressure", "flow", "vibration", "temperature")
FEATURE_UNITS: tuple[str, ...] = ("A", "bar", "m3/h", "mm/s", "degC")
ANOMALY_KINDS: tuple[str, ...] = ("spike", "level_shift", "drift", "stuck", "noise_burst", "oscillation")

START_TIME = np.datetime64("2026-01-01T00:00:00", "s")
MIN_ROWS = 500

_CURRENT, _PRESSURE, _FLOW, _VIBRATION, _TEMPERATURE = range(len(FEATURE_NAMES))

# White sensor noise, one sigma per channel (same order as FEATURE_NAMES): ~1 % of reading for
# current, pressure (pump pulsation) and flow, more for vibration RMS.
_NOISE_SIGMA = np.array([0.8, 0.10, 3.0, 0.15, 0.1])
# Typical spread of each channel in normal operation (its std over the operating cycles). Fault
# magnitudes are multiples of it, because the model sees standardised channels: a fault worth a few
# noise sigmas but a tenth of the spread is invisible to a small GRU that has seen only a handful of
# examples. In engineering terms the faults below are ~10-25 % of reading.
_SPREAD = np.array([8.0, 0.72, 10.3, 0.31, 5.0])
# Multiples of _SPREAD (noise bursts: multiples of _NOISE_SIGMA).
_MAGNITUDE: dict[str, tuple[float, float]] = {
    "spike": (3.0, 4.5),
    "level_shift": (1.8, 2.8),
    "drift": (3.5, 4.5),  # reached at the segment's end
    "noise_burst": (5.0, 10.0),
    "oscillation": (1.2, 1.8),  # amplitude of the sinusoid
}

# Channels each fault may hit. Temperature is a 300 s lag of the current, so a 64-sample window
# cannot tell a shifted, drifting, frozen or noisier temperature from a real one; only spikes are
# fair game there.
_CHANNELS: dict[str, tuple[int, ...]] = {
    "spike": (_CURRENT, _PRESSURE, _FLOW, _VIBRATION, _TEMPERATURE),
    "level_shift": (_CURRENT, _PRESSURE, _FLOW, _VIBRATION),
    "drift": (_CURRENT, _PRESSURE, _FLOW),
    "stuck": (_FLOW, _VIBRATION),
    "noise_burst": (_CURRENT, _PRESSURE, _FLOW, _VIBRATION),
    "oscillation": (_PRESSURE, _VIBRATION),
}

# Fault lengths in samples (inclusive bounds) at full cycle size; spikes are never scaled.
_LENGTHS: dict[str, tuple[int, int]] = {
    "spike": (2, 5),
    "level_shift": (16, 32),
    "drift": (24, 44),
    "stuck": (16, 32),
    "noise_burst": (16, 32),
    "oscillation": (16, 32),
}
# Faults of each kind per cycle. The subtlest kind (a frozen channel shows itself only by missing
# noise) and the cheapest (spikes cost a few rows) come twice, so a classifier sees more of them.
_PER_CYCLE: dict[str, int] = {"spike": 2, "level_shift": 1, "drift": 1, "stuck": 2, "noise_burst": 1, "oscillation": 1}

_LEAD_FRACTION = 0.10  # no faults here: a clean stretch to settle on
_CYCLE_ROWS = 1200  # rows holding one fault of every kind (~12 % of them anomalous)
_MIN_CYCLE_ROWS = 420  # below this the faults would crowd out the normal data
_HEAD_GAP = 64  # normal rows opening each cycle: one full window of context before any fault
_MIN_GAP = 40  # normal rows after each fault

# Duty set-points of the drive (fraction of rated speed), as a pressure-boosting station runs them.
# The band is narrow enough that a sensor fault of ~10-25 % of reading stands out against the normal
# spread of the channel, and the levels recur, so every fault happens in an operating context that
# the normal data also shows many times.
_DUTY_LEVELS = (0.80, 0.85, 0.90, 0.95, 1.00)

# Plant constants.
_H0 = 70.0  # shut-off head at full speed, m
_H_STATIC = 10.0  # static head of the system, m
_Q_RATED = 120.0  # m3/h at full speed and nominal resistance
_H_RATED = 60.0  # m at the same point
_PUMP_K = (_H0 - _H_RATED) / _Q_RATED**2
_SYSTEM_K = (_H_RATED - _H_STATIC) / _Q_RATED**2
_RHO_G = 1000.0 * 9.81
_BAR_PER_M = _RHO_G / 1e5
_EFFICIENCY = 0.72
_VOLTS, _POWER_FACTOR = 400.0, 0.86
_NO_LOAD_AMPS = 6.0
_RATED_AMPS = 52.0
_TEMP_RISE = 35.0  # winding rise over ambient at rated current, K
_TEMP_TAU = 300.0  # thermal time constant, s
_AMBIENT = 24.0  # degC


@dataclass(frozen=True)
class SynthSeries:
    """A generated series: ``features[i]`` was sampled at ``timestamps[i]`` and carries ``labels[i]``."""

    timestamps: list[str]
    features: np.ndarray  # [n, 5] float64, columns in feature_names order
    feature_names: tuple[str, ...]
    labels: np.ndarray  # [n] int8, 1 on every anomalous sample
    kinds: list[tuple[str, int, int]]  # (kind, start, end_exclusive), in time order


def generate(rows: int = 8000, seed: int = 0) -> SynthSeries:
    """Simulate ``rows`` seconds of the pump station with labelled faults (pure and deterministic)."""
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)):
        raise TypeError(f"rows must be an int, got {type(rows).__name__}")
    rows = int(rows)
    if rows < MIN_ROWS:
        raise ValueError(f"rows must be >= {MIN_ROWS} to hold an anomaly-free lead and every fault kind, got {rows}")
    rng = np.random.default_rng(seed)

    clean = _simulate_plant(rows, rng)
    measured = clean + rng.normal(size=clean.shape) * _NOISE_SIGMA
    faults = _plan_faults(rows, rng)
    labels = np.zeros(rows, dtype=np.int8)
    for kind, start, end in faults:
        _apply_fault(measured, kind, start, end, rng)
        labels[start:end] = 1

    stamps = START_TIME + np.arange(rows, dtype=np.int64).astype("timedelta64[s]")
    timestamps = [s + "Z" for s in np.datetime_as_string(stamps, unit="s").tolist()]
    return SynthSeries(timestamps, measured, FEATURE_NAMES, labels, faults)


def write_csv(series: SynthSeries, path: str | os.PathLike[str], delimiter: str = ",") -> None:
    """Write ``timestamp,<features...>,label`` atomically: a crash leaves the old file or none, never half."""
    if len(delimiter) != 1 or delimiter in ".-+eE0123456789:\"\r\n":
        raise ValueError(f"delimiter must be one character that cannot appear in a value, got {delimiter!r}")
    n = len(series.timestamps)
    if series.features.shape != (n, len(series.feature_names)) or series.labels.shape != (n,):
        raise ValueError(
            f"inconsistent series: {n} timestamps, features {series.features.shape}, labels {series.labels.shape}"
        )
    path = Path(path)
    header = delimiter.join(("timestamp", *series.feature_names, "label"))
    lines = [header]
    for stamp, values, label in zip(series.timestamps, series.features.tolist(), series.labels.tolist()):
        lines.append(delimiter.join((stamp, *(f"{v:.6g}" for v in values), "1" if label else "0")))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(lines))
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --- the plant ------------------------------------------------------------------------------------


def _simulate_plant(n: int, rng: np.random.Generator) -> np.ndarray:
    speed = _speed_profile(n, rng)
    resistance = _system_resistance(n, rng)
    # Pump curve H = H0 s^2 - kp Q^2 meets system curve H = Hs + ks Q^2.
    q = np.sqrt(np.maximum(_H0 * speed**2 - _H_STATIC, 0.0) / (_PUMP_K + _SYSTEM_K * resistance))
    head = _H0 * speed**2 - _PUMP_K * q**2
    hydraulic_w = _RHO_G * (q / 3600.0) * head
    current = _NO_LOAD_AMPS + hydraulic_w / _EFFICIENCY / (math.sqrt(3.0) * _VOLTS * _POWER_FACTOR)
    temperature = _first_order_lag(_AMBIENT + _TEMP_RISE * (current / _RATED_AMPS) ** 2, _TEMP_TAU)
    vibration = 0.5 + 2.2 * speed**2
    return np.column_stack([current, head * _BAR_PER_M, q, vibration, temperature])


def _speed_profile(n: int, rng: np.random.Generator) -> np.ndarray:
    """Speed as a fraction of rated: duty set-points held a few hundred seconds, cosine ramps between."""
    speed = np.empty(n)
    level = float(rng.choice(_DUTY_LEVELS))
    i = 0
    while i < n:
        hold = int(rng.integers(150, 500))
        speed[i : i + hold] = level
        i += hold
        if i >= n:
            break
        target = float(rng.choice([d for d in _DUTY_LEVELS if d != level]))
        ramp = int(rng.integers(20, 60))
        shape = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, ramp + 1) / ramp)
        speed[i : i + ramp] = (level + (target - level) * shape)[: n - i]
        i += ramp
        level = target
    # Control jitter: an AR(1) around the set-point, shared by every hydraulic channel.
    return speed + _ar1(n, phi=0.9, sigma=0.015, rng=rng)


def _system_resistance(n: int, rng: np.random.Generator) -> np.ndarray:
    """Demand fluctuations (consumers opening and closing) around the nominal system curve.

    Flow and pressure move against each other with them, which a frozen or noisy transmitter then
    fails to follow. Stationary on purpose: a slow trend would give every fault a unique context a
    classifier could memorise instead of the fault itself.
    """
    return 1.0 + _ar1(n, phi=0.85, sigma=0.03, rng=rng)


def _ar1(n: int, phi: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) with marginal std ``sigma``."""
    shocks = rng.normal(scale=sigma * math.sqrt(1.0 - phi * phi), size=n)
    out = np.empty(n)
    acc = rng.normal(scale=sigma)
    for i, e in enumerate(shocks.tolist()):
        acc = phi * acc + e
        out[i] = acc
    return out


def _first_order_lag(target: np.ndarray, tau: float) -> np.ndarray:
    """Exact discretisation of ``dT/dt = (target - T) / tau`` at 1 s, starting in equilibrium."""
    alpha = 1.0 - math.exp(-1.0 / tau)
    out = np.empty_like(target)
    acc = float(target[0])
    for i, v in enumerate(target.tolist()):
        acc += alpha * (v - acc)
        out[i] = acc
    return out


# --- the faults -----------------------------------------------------------------------------------


def _plan_faults(n: int, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    """Non-overlapping fault segments, every kind in every cycle, cycles spread over the series."""
    lead = math.ceil(_LEAD_FRACTION * n)
    region = n - lead
    # A multiple of six cycles keeps cycle borders on the 70 % and 85 % marks (10 % + k * 15 %).
    cycles = 6 * max(1, round(region / (6 * _CYCLE_ROWS)))
    if region / cycles < _MIN_CYCLE_ROWS:
        cycles = max(1, region // _MIN_CYCLE_ROWS)
    cycle_rows = region / cycles
    scale = min(1.5, cycle_rows / _CYCLE_ROWS)
    head = min(_HEAD_GAP, round(0.1 * cycle_rows))
    min_gap = max(8, round(_MIN_GAP * scale))

    faults: list[tuple[str, int, int]] = []
    for c in range(cycles):
        begin = lead + round(c * cycle_rows)
        end = lead + round((c + 1) * cycle_rows)
        pool = [kind for kind in ANOMALY_KINDS for _ in range(_PER_CYCLE[kind])]
        kinds = [pool[k] for k in rng.permutation(len(pool))]
        lengths = [_draw_length(kind, scale, rng) for kind in kinds]
        free = (end - begin) - head - sum(lengths) - min_gap * len(kinds)
        if free < 0:  # unreachable with the constants above (MIN_ROWS and _MIN_CYCLE_ROWS keep room)
            raise AssertionError(f"cycle of {end - begin} rows cannot hold faults of lengths {lengths}")
        # Random normal stretch before each fault and after the last one.
        shares = rng.dirichlet(np.full(len(kinds) + 1, 2.0))
        extra = np.floor(shares * free).astype(int)
        pos = begin + head
        for kind, length, gap in zip(kinds, lengths, extra[:-1]):
            pos += int(gap)
            faults.append((kind, pos, pos + length))
            pos += length + min_gap
    return faults


def _draw_length(kind: str, scale: float, rng: np.random.Generator) -> int:
    lo, hi = _LENGTHS[kind]
    if kind != "spike":
        lo, hi = max(8, round(lo * scale)), max(10, round(hi * scale))
    return int(rng.integers(lo, hi + 1))


def _apply_fault(x: np.ndarray, kind: str, start: int, end: int, rng: np.random.Generator) -> None:
    """Corrupt the measured values ``x[start:end]`` in place."""
    length = end - start
    channels = _CHANNELS[kind]
    if kind == "spike":
        hit = rng.choice(channels, size=int(rng.integers(1, 3)), replace=False)
        for c in hit:
            amplitude = rng.choice((-1.0, 1.0)) * rng.uniform(*_MAGNITUDE[kind]) * _SPREAD[c]
            x[start:end, c] += amplitude * rng.uniform(0.8, 1.0, size=length)
    elif kind == "level_shift":
        c = int(rng.choice(channels))
        x[start:end, c] += rng.choice((-1.0, 1.0)) * rng.uniform(*_MAGNITUDE[kind]) * _SPREAD[c]
    elif kind == "drift":
        c = int(rng.choice(channels))
        final = rng.choice((-1.0, 1.0)) * rng.uniform(*_MAGNITUDE[kind]) * _SPREAD[c]
        x[start:end, c] += final * np.arange(1, length + 1) / length
    elif kind == "stuck":
        c = int(rng.choice(channels))
        # A transmitter that hangs usually freezes at a rail or a stale set-point, not exactly at the
        # last good reading: a flat line away from the truth. (A freeze at the last reading is only
        # visible once the process moves, which a 64-sample window of a steady pump rarely shows.)
        x[start:end, c] = x[start - 1, c] + rng.choice((-1.0, 1.0)) * rng.uniform(1.0, 1.6) * _SPREAD[c]
    elif kind == "noise_burst":
        c = int(rng.choice(channels))
        # Scale: 5-10 x the sensor noise, and never less than about the channel's spread, so a
        # burst on a quiet channel is not lost in the normal operating swings.
        scale = max(rng.uniform(*_MAGNITUDE[kind]) * _NOISE_SIGMA[c], rng.uniform(1.0, 1.4) * _SPREAD[c])
        # Impulsive interference (EMI on the loop) rather than Gaussian: every sample of the burst
        # is off by at least half the scale, so its first and last samples are as visible as the rest.
        size = rng.uniform(0.5, 1.5, size=length) * rng.choice((-1.0, 1.0), size=length)
        x[start:end, c] += scale * size
    elif kind == "oscillation":
        # Cavitation: a new periodic component on both vibration and pressure.
        period = rng.uniform(5.0, 12.0)
        # Starting on a crest makes the onset visible at once; cavitation sets in abruptly.
        wave = rng.choice((-1.0, 1.0)) * np.cos(2 * np.pi * np.arange(length) / period)
        for c in channels:
            x[start:end, c] += rng.uniform(*_MAGNITUDE[kind]) * _SPREAD[c] * wave
    else:  # pragma: no cover - ANOMALY_KINDS and this function are edited together
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {ANOMALY_KINDS}")
