"""The long-lived scoring loop: ``edge-score --watch GATEWAY_DIR`` (or a fixed bundle with loop options).

What it promises:

- **Hot reload.** Every ``--reload-interval`` seconds it reads the gateway's ``current`` pointer.
  When it names another version, that bundle is opened *beside* the live one in a background
  thread (signature given a key, every hash, golden self-test); scoring goes on meanwhile.
- **No lost sample, no gap in indices.** The swap happens between two samples. The loop keeps the
  last raw samples; the new stream scorer is primed by replaying just enough of them (aligned to
  the new stride) that the very next sample is scored by the new model at the index batch scoring
  would give it. If the new model needs a longer history than is kept, the old model scores on
  until enough samples have arrived.
- **A bad new bundle never goes live.** A refused bundle is logged once (per version) and the old
  one keeps scoring. At start-up, a refused ``current`` falls back to the newest version that
  passes; with none, the loop waits for a flash.
- **Alarms** follow ``alarms.AlarmRules`` (bundle's ``alarm`` table, overridden on the command line).
- **Health:** every ``--health-interval`` seconds one JSON line ``{"health": {...}}`` on stderr:
  samples, scored, alarms, errors, model version, latency, RSS.

Inputs: CSV with a header or JSON lines (a file or stdin; sniffed), or MQTT (``mqtt_io``). Each
input runs in its own thread and feeds a bounded queue, so a slow model pushes back on the reader
instead of dropping samples, and the loop still reloads and reports health while no data arrives.
Outputs: one JSON line per scored sample on stdout (``index``, ``score``, ``anomaly``, ``alarm``,
``model``, ...), and MQTT topics when configured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import signal
import stat
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from .alarms import AlarmConfigError, AlarmRules, AlarmState
from .bundle import BundleError, check_signature
from .csv_input import TIMESTAMP_NAMES, CsvRowReader, InputError, RowError
from .scorer import Scorer, StreamScorer

EXIT_OK, EXIT_BAD_BUNDLE, EXIT_BAD_INPUT, EXIT_BAD_CONFIG = 0, 2, 3, 4
QUEUE_SIZE = 10_000
BAD_INPUT_LOG_LIMIT = 20  # bad-input messages printed per minute; the rest are counted, not printed


# ---------------------------------------------------------------------------------------------
# Models and where they come from


@dataclass(frozen=True)
class Target:
    label: str  # what the output calls the model: "<name>/<version>" on a gateway, the bundle name otherwise
    path: str


class GatewaySource:
    """Models flashed into a gateway directory (``deploy`` layout); follows ``current``."""

    def __init__(self, gateway: str | Path):
        self.gateway = Path(gateway)

    def current(self) -> Target | None:
        from .deploy import current_version

        v = current_version(self.gateway)
        return None if v is None else Target(f"{v.name}/{v.id}", str(v.path))

    def fallbacks(self) -> list[Target]:
        """Every kept version, newest first: what to try when ``current`` is refused at start-up."""
        from .deploy import list_versions

        return [Target(f"{v.name}/{v.id}", str(v.path)) for v in reversed(list_versions(self.gateway))]

    def describe(self) -> str:
        return f"{self.gateway}/current"


class FixedSource:
    """One bundle directory, never reloaded."""

    def __init__(self, bundle_dir: str | Path):
        self.bundle_dir = Path(bundle_dir)

    def current(self) -> Target | None:
        return Target(self.bundle_dir.name, str(self.bundle_dir))

    def fallbacks(self) -> list[Target]:
        return []

    def describe(self) -> str:
        return str(self.bundle_dir)


@dataclass
class LiveModel:
    """A verified bundle plus what the loop keeps beside it."""

    target: Target
    scorer: Scorer
    rules: AlarmRules
    perm: np.ndarray | None  # input column order -> this bundle's feature order (None: same order)
    stream: StreamScorer | None = None
    offset: int = 0  # global sample index of this stream's local index 0

    @property
    def window(self) -> int:
        return self.scorer.window

    @property
    def stride(self) -> int:
        return self.scorer.stride

    @property
    def history_needed(self) -> int:
        # Enough raw samples to fill a window whatever the phase of the stride.
        return self.window + self.stride - 2


def load_model(target: Target, threads: int = 1, key: bytes | None = None,
               input_features: list[str] | None = None, alarm_overrides: dict | None = None) -> LiveModel:
    """Verify and open a bundle for the loop; raises ``BundleError``/``AlarmConfigError`` when refused."""
    if key is not None:
        check_signature(target.path, key)
    scorer = Scorer(target.path, threads=threads)
    manifest = scorer.manifest
    rules = AlarmRules.from_dict(manifest.alarm, f"{target.path}/manifest.json: alarm").merged(alarm_overrides)
    perm = None
    if input_features is not None and list(input_features) != scorer.features:
        missing = [f for f in scorer.features if f not in input_features]
        if missing or len(input_features) != len(scorer.features):
            raise BundleError(
                f"{target.path}: the model reads features {scorer.features} but the input stream carries "
                f"{list(input_features)} (missing {missing}); restart the loop to change the input columns"
            )
        perm = np.array([input_features.index(f) for f in scorer.features], dtype=np.intp)
    return LiveModel(target=target, scorer=scorer, rules=rules, perm=perm)


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class LoopConfig:
    threads: int = 1
    key: bytes | None = None
    alarm_overrides: dict = field(default_factory=dict)
    only_anomalies: bool = False
    only_alarms: bool = False
    health_interval: float = 60.0  # seconds; 0 = no health lines
    reload_interval: float = 1.0  # seconds between looks at `current`
    wait_log_interval: float = 30.0  # while no model is usable, how often to say so


class Counters:
    def __init__(self) -> None:
        self.samples = 0  # accepted samples == index of the next sample
        self.scored = 0
        self.anomalies = 0
        self.alarms = 0
        self.bad_input = 0
        self.scoring_errors = 0
        self.output_errors = 0
        self.reloads = 0
        self.reload_refused = 0

    @property
    def errors(self) -> int:
        return self.bad_input + self.scoring_errors + self.output_errors + self.reload_refused


class ScoringLoop:
    """Scores samples one at a time with the live model and swaps models without losing any.

    Drive it with ``start()``, then ``process()`` per sample and ``maintenance()`` now and then
    (``run_loop`` does both from a queue); ``reload_now()`` forces a synchronous reload (tests, SIGHUP).
    """

    def __init__(self, source, config: LoopConfig, emit: Callable[[dict], None],
                 log: Callable[[dict | str], None], emit_alarm: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.config = config
        self._emit = emit
        self._emit_alarm = emit_alarm
        self._log = log
        self._clock = clock
        self.counts = Counters()
        self.active: LiveModel | None = None
        self.input_features: list[str] | None = None
        self._history: deque = deque(maxlen=1)
        self._pending: LiveModel | None = None
        self._loading: str | None = None  # label being loaded in the background
        self._refused: set[str] = set()  # labels refused once: versions are immutable, no retry
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._alarm = AlarmState()
        self._started = clock()
        self._next_reload = 0.0
        self._next_health = self._started + config.health_interval if config.health_interval > 0 else math.inf
        self._interval = _Interval()
        self._bad_logged = 0
        self._bad_suppressed = 0
        self._next_bad_reset = self._started + 60.0
        self._rate_mark = (self._started, 0)  # (clock, samples) at the previous health line

    # -- start-up -----------------------------------------------------------------------------

    def start(self, stop: threading.Event | None = None) -> bool:
        """Load the first model (falling back, then waiting, on a gateway). False when stopped first."""
        stop = stop or threading.Event()
        next_say = 0.0
        tried: set[str] = set()
        while not stop.is_set():
            current = self.source.current()
            candidates = ([current] if current else []) + [t for t in self.source.fallbacks()
                                                            if current is None or t.label != current.label]
            for target in candidates:
                if target.label in tried:
                    continue
                tried.add(target.label)
                try:
                    model = self._load(target)
                except Exception as e:  # whatever the reason, this one cannot go live
                    self.counts.reload_refused += 1
                    self._refused.add(target.label)  # the reload check must not try it again
                    self._event("model_refused", model=target.label, error=str(e))
                    if isinstance(self.source, FixedSource):
                        if isinstance(e, (BundleError, AlarmConfigError)):
                            raise
                        raise BundleError(f"{target.path}: {e}") from e
                    continue
                self._go_live(model, replay=0)
                if current is not None and target.label != current.label:
                    self._event("fallback", model=target.label, current=current.label,
                                note="current was refused; scoring with the newest version that passes")
                return True
            now = self._clock()
            if now >= next_say:
                self._event("waiting", source=self.source.describe(),
                            note="no usable model yet; waiting for a flash")
                next_say = now + self.config.wait_log_interval
            # New versions may appear: forget refusals only of labels that no longer exist.
            stop.wait(self.config.reload_interval)
            present = {t.label for t in self.source.fallbacks()}
            cur = self.source.current()
            tried &= present | ({cur.label} if cur else set())
        return False

    def _load(self, target: Target) -> LiveModel:
        return load_model(target, threads=self.config.threads, key=self.config.key,
                          input_features=self.input_features, alarm_overrides=self.config.alarm_overrides)

    def _go_live(self, model: LiveModel, replay: int) -> None:
        old = self.active
        self.active = model
        if self.input_features is None:
            self.input_features = list(model.scorer.features)
        self._alarm.rules = model.rules
        self._resize_history(model.history_needed)
        if old is None:
            model.stream = model.scorer.stream()
            self._event("model_live", model=model.target.label, window=model.window, stride=model.stride,
                        threshold=model.scorer.threshold, alarm=model.rules.to_dict())
        else:
            self.counts.reloads += 1
            self._event("model_swapped", model=model.target.label, previous=old.target.label,
                        at_index=self.counts.samples, replayed=replay, threshold=model.scorer.threshold,
                        alarm=model.rules.to_dict())

    def _resize_history(self, needed: int) -> None:
        needed = max(needed, 1)
        if self._history.maxlen is None or self._history.maxlen < needed:
            self._history = deque(self._history, maxlen=needed)

    # -- per sample ---------------------------------------------------------------------------

    def process(self, values: np.ndarray, meta: dict | None = None) -> dict | None:
        """Score one raw sample (input column order). Returns the record emitted for it, if scored."""
        if self._pending is not None:
            self._try_swap()
        model = self.active
        x = values if model.perm is None else values[model.perm]
        t0 = time.perf_counter()
        try:
            event = model.stream.push(x)
        except ValueError as e:  # a sample the model must not see: skip it, it takes no index
            self.counts.bad_input += 1
            self.bad_input(f"{_where(meta)}: {e}")
            return None
        except Exception as e:  # the runtime failed on a good sample: count it and keep the loop alive
            event = None
            self.counts.scoring_errors += 1
            self._event("scoring_error", model=model.target.label, index=self.counts.samples, error=str(e))
        elapsed = time.perf_counter() - t0
        index = self.counts.samples
        self.counts.samples += 1
        self._history.append(values)
        if event is None:
            return None
        self.counts.scored += 1
        self._interval.add(elapsed)
        anomaly = bool(event.anomaly)
        self.counts.anomalies += anomaly
        alarm = self._alarm.update(index, event.score, anomaly, now=self._clock())
        record: dict[str, Any] = {"index": index}
        if meta:
            record.update(meta)
        record.update(score=event.score, anomaly=anomaly, alarm=alarm is not None, model=model.target.label)
        if alarm is not None:
            self.counts.alarms += 1
            if self._emit_alarm is not None:
                info = {**alarm.to_dict(), "model": model.target.label}
                if meta and "timestamp" in meta:
                    info["timestamp"] = meta["timestamp"]
                self._safe(self._emit_alarm, info)
        if (self.config.only_alarms and alarm is None) or (self.config.only_anomalies and not anomaly):
            return record
        self._safe(self._emit, record)
        return record

    def bad_input(self, message: str) -> None:
        """Report a line or message that could not become a sample (rate-limited)."""
        if self._bad_logged < BAD_INPUT_LOG_LIMIT:
            self._bad_logged += 1
            self._log(f"edge-score: skipped {message}")
        else:
            self._bad_suppressed += 1

    def count_bad_input(self, message: str) -> None:
        self.counts.bad_input += 1
        self.bad_input(message)

    def _safe(self, fn: Callable[[dict], None], record: dict) -> None:
        try:
            fn(record)
        except Exception as e:  # an output hiccup (broker down) must not stop scoring
            self.counts.output_errors += 1
            if self.counts.output_errors <= 5 or self.counts.output_errors % 1000 == 0:
                self._event("output_error", error=str(e), count=self.counts.output_errors)

    # -- reloads ------------------------------------------------------------------------------

    def maintenance(self, now: float | None = None) -> None:
        """Look at `current`, collect background loads, swap when ready, print health when due."""
        now = self._clock() if now is None else now
        self._collect()
        if now >= self._next_reload:
            self._next_reload = now + self.config.reload_interval
            self._check_current(background=True)
        if self._pending is not None:
            self._try_swap()
        if now >= self._next_health:
            self._next_health = now + self.config.health_interval
            self._log({"health": self.health(now)})
        if now >= self._next_bad_reset:  # the bad-input message budget refills every minute
            self._next_bad_reset = now + 60.0
            if self._bad_suppressed:
                self._log(f"edge-score: {self._bad_suppressed} more bad input message(s) not shown")
            self._bad_logged = self._bad_suppressed = 0

    def reload_now(self) -> bool:
        """Synchronous check-load-swap (waits for enough history only if samples are flowing). True if swapped."""
        before = self.active.target.label if self.active else None
        self._collect()
        self._check_current(background=False)
        self._collect()
        if self._pending is not None:
            self._try_swap()
        return self.active is not None and self.active.target.label != before

    def _check_current(self, background: bool) -> None:
        target = self.source.current()
        if target is None or self.active is None:
            return
        label = target.label
        if label == self.active.target.label or label in self._refused or label == self._loading:
            return
        if self._pending is not None and self._pending.target.label == label:
            return
        self._pending = None  # `current` moved on again: the one waiting for history is stale
        self._loading = label
        self._event("model_loading", model=label, live=self.active.target.label)
        if background:
            threading.Thread(target=self._load_into_results, args=(target,), name="edge-score-load", daemon=True).start()
        else:
            self._load_into_results(target)

    def _load_into_results(self, target: Target) -> None:
        try:
            self._results.put((target, self._load(target), None))
        except Exception as e:  # any failure to load means: not this one
            self._results.put((target, None, e))

    def _collect(self) -> None:
        while True:
            try:
                target, model, error = self._results.get_nowait()
            except queue.Empty:
                return
            if self._loading == target.label:
                self._loading = None
            if error is not None:
                self._refuse(target.label, error)
            elif model is not None:
                self._pending = model
                self._resize_history(model.history_needed)

    def _refuse(self, label: str, error: BaseException) -> None:
        self._refused.add(label)
        self.counts.reload_refused += 1
        self._event("reload_refused", model=label, live=self.active.target.label if self.active else None,
                    error=str(error), note="the live model keeps scoring")

    def _try_swap(self) -> None:
        new = self._pending
        n = self.counts.samples
        w, s = new.window, new.stride
        # Replay r samples so that the first new sample falls on the global window grid: the new
        # stream's index 0 is global n - r, which must be a multiple of the stride.
        r = n if n < w - 1 else w - 1 + (n - (w - 1)) % s
        if len(self._history) < r:
            return  # not enough history yet: the old model scores on; try again next sample
        stream = new.scorer.stream()
        history = list(self._history)
        try:
            for raw in history[len(history) - r:]:
                stream.push(raw if new.perm is None else raw[new.perm])
        except Exception as e:
            self._pending = None
            self._refuse(new.target.label, e)
            return
        new.stream = stream
        new.offset = n - r
        self._pending = None
        self._go_live(new, replay=r)

    # -- reporting ----------------------------------------------------------------------------

    def health(self, now: float | None = None) -> dict:
        now = self._clock() if now is None else now
        c = self.counts
        lat = self._interval.take()
        since, seen = self._rate_mark
        rate = round((c.samples - seen) / (now - since), 1) if now > since else None
        self._rate_mark = (now, c.samples)
        h = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "uptime_s": round(now - self._started, 1),
            "model": self.active.target.label if self.active else None,
            "samples": c.samples, "scored": c.scored, "anomalies": c.anomalies, "alarms": c.alarms,
            "errors": c.errors,
            "error_counts": {"bad_input": c.bad_input, "scoring": c.scoring_errors, "output": c.output_errors,
                             "reload_refused": c.reload_refused},
            "reloads": c.reloads,
            "samples_per_s": rate,
            "latency_ms": lat,
            "rss_mb": round(rss_bytes() / 2**20, 1),
        }
        if self._bad_suppressed:
            h["bad_input_messages_suppressed"] = self._bad_suppressed
        return h

    def summary(self) -> dict:
        c = self.counts
        seconds = self._clock() - self._started
        return {"samples": c.samples, "scored": c.scored, "anomalies": c.anomalies, "alarms": c.alarms,
                "errors": c.errors, "bad_input": c.bad_input, "scoring_errors": c.scoring_errors,
                "output_errors": c.output_errors, "reloads": c.reloads, "reload_refused": c.reload_refused,
                "model": self.active.target.label if self.active else None, "seconds": round(seconds, 3),
                "rss_mb": round(rss_bytes() / 2**20, 1)}

    def _event(self, name: str, **fields) -> None:
        self._log({"event": name, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **fields})


class _Interval:
    """Scoring latency since the last health line: count, mean and max, in O(1) memory."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.n += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def take(self) -> dict:
        out = {"windows": self.n, "mean": round(1e3 * self.total / self.n, 4) if self.n else None,
               "max": round(1e3 * self.max, 4) if self.n else None}
        self.n, self.total, self.max = 0, 0.0, 0.0
        return out


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _where(meta: dict | None) -> str:
    if not meta:
        return "<input>"
    parts = [str(meta.get("source", "<input>"))]
    if "line" in meta:
        parts.append(f"line {meta['line']}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Inputs: each runs in a thread and puts ("sample", values, meta) / ("bad", message) / ("eof", reason)


def parse_json_sample(obj: Any, features: list[str], where: str) -> tuple[np.ndarray, str | None]:
    """A JSON sample: ``{"feature": value, ..., "timestamp": ...}`` or ``[v1, v2, ...]`` in feature order."""
    timestamp = None
    if isinstance(obj, dict):
        missing = [f for f in features if f not in obj]
        if missing:
            raise InputError(f"{where}: missing feature(s) {', '.join(map(repr, missing))}")
        raw = [obj[f] for f in features]
        for name in TIMESTAMP_NAMES:
            if name in obj:
                timestamp = str(obj[name])
                break
    elif isinstance(obj, list):
        if len(obj) != len(features):
            raise InputError(f"{where}: expected {len(features)} values in feature order {features}, got {len(obj)}")
        raw = obj
    else:
        raise InputError(f"{where}: expected a JSON object or array, got {type(obj).__name__}")
    values = np.empty(len(features), dtype=np.float64)
    for i, (name, v) in enumerate(zip(features, raw)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{where}, feature {name!r}: expected a finite number, got {v!r}")
        values[i] = v
    return values, timestamp


class _Peeked:
    """A text stream whose first lines were already read (to sniff the format)."""

    def __init__(self, lines: list[str], stream: TextIO):
        self._lines = list(lines)
        self._stream = stream

    def readline(self) -> str:
        if self._lines:
            return self._lines.pop(0)
        return self._stream.readline()


def start_text_input(stream: TextIO, source: str, features: list[str], out: queue.Queue, fmt: str = "auto",
                     delimiter: str | None = None, timestamp_column: str | None = None) -> threading.Thread:
    """Read CSV or JSON lines from ``stream`` in a daemon thread into ``out``."""

    def run() -> None:
        try:
            first, line_no = "", 0
            while True:
                first = stream.readline()
                line_no += 1
                if not first or first.strip():
                    break
            kind = fmt
            if kind == "auto":
                kind = "jsonl" if first.lstrip("\ufeff \t").startswith(("{", "[")) else "csv"
            if kind == "jsonl":
                _read_jsonl(_Peeked([first], stream), source, features, out, line_no)
            else:
                # The skipped blank lines go back too, so CSV line numbers stay true to the file.
                peeked = _Peeked(["\n"] * (line_no - 1) + [first], stream)
                _read_csv(peeked, source, features, out, delimiter, timestamp_column)
            out.put(("eof", "end of input"))
        except InputError as e:
            out.put(("fatal", str(e)))
        except Exception as e:  # the reader must always tell the loop it stopped
            out.put(("fatal", f"{source}: input failed: {e}"))

    t = threading.Thread(target=run, name="edge-score-input", daemon=True)
    t.start()
    return t


def _read_csv(stream, source, features, out, delimiter, timestamp_column) -> None:
    reader = CsvRowReader.open(stream, source, features=features, timestamp_column=timestamp_column,
                               delimiter=delimiter)
    for row in reader:
        if isinstance(row, RowError):
            out.put(("bad", row.message))
            continue
        meta = {"line": row.line}
        if row.timestamp is not None:
            meta["timestamp"] = row.timestamp
        out.put(("sample", row.values, meta))


def _read_jsonl(stream, source, features, out, first_line_no: int) -> None:
    line_no = first_line_no - 1
    while True:
        line = stream.readline()
        if not line:
            return
        line_no += 1
        if not line.strip():
            continue
        where = f"{source}, line {line_no}"
        try:
            obj = json.loads(line)
            values, timestamp = parse_json_sample(obj, features, where)
        except json.JSONDecodeError as e:
            out.put(("bad", f"{where}: not valid JSON at column {e.colno}: {e.msg}"))
            continue
        except InputError as e:
            out.put(("bad", str(e)))
            continue
        meta = {"line": line_no}
        if timestamp is not None:
            meta["timestamp"] = timestamp
        out.put(("sample", values, meta))


# ---------------------------------------------------------------------------------------------
# Command line (edge-score options for the loop; edge_runtime.cli owns the parser)


def add_loop_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("long-lived loop (gateway)")
    g.add_argument("--watch", metavar="GATEWAY_DIR", default=None,
                   help="score with the gateway's current model and hot-reload when `gru-edge flash` switches it")
    g.add_argument("--key-file", default=None,
                   help="HMAC key: refuse bundles that are unsigned or signed with another key")
    g.add_argument("--input-format", choices=("auto", "csv", "jsonl"), default=None,
                   help="input lines: CSV with a header, or JSON lines (default: auto)")
    g.add_argument("--alarm-min-consecutive", type=int, default=None, metavar="N",
                   help="alarm after N consecutive anomalous scored samples (default: bundle's, else 1)")
    g.add_argument("--alarm-suppress-samples", type=int, default=None, metavar="N",
                   help="after an alarm, no new alarm for N samples (default: bundle's, else 0)")
    g.add_argument("--alarm-suppress-seconds", type=float, default=None, metavar="S",
                   help="after an alarm, no new alarm for S seconds (default: bundle's, else 0)")
    g.add_argument("--only-alarms", action="store_true", help="print only samples that raise an alarm")
    g.add_argument("--no-stdout", action="store_true", help="print no per-sample lines (use with MQTT output)")
    g.add_argument("--health-interval", type=float, default=None, metavar="S",
                   help="seconds between JSON health lines on stderr (default 60; 0 = none)")
    g.add_argument("--reload-interval", type=float, default=None, metavar="S",
                   help="seconds between looks at GATEWAY_DIR/current (default 1)")
    m = p.add_argument_group("MQTT (needs the mqtt extra: pip install 'gru-edge[mqtt]')")
    m.add_argument("--mqtt-host", default=None, help="broker host; enables MQTT")
    m.add_argument("--mqtt-port", type=int, default=None, help="broker port (default 1883)")
    m.add_argument("--mqtt-topic", default=None, help="topic to read samples from (JSON object or array per message)")
    m.add_argument("--mqtt-score-topic", default=None, help="topic to publish every scored sample to")
    m.add_argument("--mqtt-alarm-topic", default=None, help="topic to publish alarms to")
    m.add_argument("--mqtt-client-id", default=None, help="client id (default: edge-score-<host>-<pid>)")
    m.add_argument("--mqtt-username", default=None)
    m.add_argument("--mqtt-password-file", default=None, help="file holding the broker password")
    m.add_argument("--mqtt-qos", type=int, choices=(0, 1, 2), default=None, help="QoS for subscribe and publish (default 1)")


_LOOP_OPTIONS = ("watch", "key_file", "input_format", "alarm_min_consecutive", "alarm_suppress_samples",
                 "alarm_suppress_seconds", "health_interval", "reload_interval", "mqtt_host", "mqtt_port",
                 "mqtt_topic", "mqtt_score_topic", "mqtt_alarm_topic", "mqtt_client_id", "mqtt_username",
                 "mqtt_password_file", "mqtt_qos")


def wants_loop(args: argparse.Namespace) -> bool:
    """Whether the command line asks for the loop (any loop option); otherwise edge-score scores once, as always."""
    return any(getattr(args, k, None) is not None for k in _LOOP_OPTIONS) or bool(
        getattr(args, "only_alarms", False) or getattr(args, "no_stdout", False))


def run_loop(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None,
             stderr: TextIO | None = None, stop: threading.Event | None = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stop = stop or threading.Event()
    err_lock = threading.Lock()

    def log(item: dict | str) -> None:
        text = item if isinstance(item, str) else json.dumps(item)
        with err_lock:
            stderr.write(text + "\n")
            stderr.flush()

    if args.watch and args.bundle:
        log("edge-score: give either a BUNDLE directory or --watch GATEWAY_DIR, not both")
        return EXIT_BAD_CONFIG
    if not args.watch and not args.bundle:
        log("edge-score: give a BUNDLE directory or --watch GATEWAY_DIR")
        return EXIT_BAD_CONFIG
    if getattr(args, "mode", "exact") != "exact" or getattr(args, "stream_column", None):
        # Refused rather than ignored: a hot swap replays a window of raw samples, which a stateful
        # GRU (state over the whole stream) or per-stream scorers would need their own rules for.
        log("edge-score: --mode stateful and --stream-column are not supported by the long-lived loop "
            "(--watch, MQTT, alarms, --key-file) yet; use them with a BUNDLE and no loop options")
        return EXIT_BAD_CONFIG
    try:
        config = _config_from_args(args)
    except (ValueError, OSError) as e:
        log(f"edge-score: {e}")
        return EXIT_BAD_CONFIG
    mqtt = None
    if args.mqtt_host:
        from .mqtt_io import MqttError, MqttLink, MqttSettings

        try:
            mqtt = MqttLink(MqttSettings.from_args(args), log=log)
        except MqttError as e:
            log(f"edge-score: {e}")
            return EXIT_BAD_CONFIG
    elif any(getattr(args, k) is not None for k in _LOOP_OPTIONS if k.startswith("mqtt_")):
        log("edge-score: --mqtt-* options need --mqtt-host")
        return EXIT_BAD_CONFIG

    flush_each = not _is_regular_file(stdout)
    out_lock = threading.Lock()

    def emit(record: dict) -> None:
        if mqtt is not None and mqtt.settings.score_topic:
            mqtt.publish_score(record)
        if args.no_stdout:
            return
        with out_lock:
            stdout.write(json.dumps(record) + "\n")
            if flush_each:
                stdout.flush()

    emit_alarm = (lambda rec: mqtt.publish_alarm(rec)) if mqtt is not None and mqtt.settings.alarm_topic else None
    source = GatewaySource(args.watch) if args.watch else FixedSource(args.bundle)
    loop = ScoringLoop(source, config, emit=emit, log=log, emit_alarm=emit_alarm)
    _install_signals(stop, loop)

    try:
        if not loop.start(stop):
            log(json.dumps({"summary": loop.summary()}))
            return EXIT_OK
    except (BundleError, AlarmConfigError) as e:
        log(f"edge-score: refusing bundle: {e}")
        return EXIT_BAD_BUNDLE

    q: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
    features = loop.input_features
    if mqtt is not None and args.mqtt_topic:
        try:
            mqtt.start(features, q)
        except Exception as e:
            log(f"edge-score: {e}")
            return EXIT_BAD_CONFIG
        source_name = f"mqtt://{mqtt.settings.host}:{mqtt.settings.port}/{args.mqtt_topic}"
    else:
        if mqtt is not None:
            mqtt.start(features, None)  # publish only
        if args.input == "-":
            stream, source_name = stdin, "<stdin>"
        else:
            try:
                stream = open(args.input, encoding="utf-8", newline="")
            except OSError as e:
                log(f"edge-score: {args.input}: cannot open: {e.strerror}")
                return EXIT_BAD_INPUT
            source_name = args.input
        start_text_input(stream, source_name, features, q, fmt=args.input_format or "auto",
                         delimiter=args.delimiter, timestamp_column=args.timestamp_column)

    code = EXIT_OK
    try:
        code = drive(loop, q, stop, log)
    finally:
        if mqtt is not None:
            mqtt.close()
        stdout.flush()
    if not args.quiet:
        log(json.dumps({"summary": {**loop.summary(), "input": source_name}}))
    return code


def drive(loop: ScoringLoop, q: queue.Queue, stop: threading.Event, log: Callable[[dict | str], None]) -> int:
    """Pull items from the input queue until end of input or ``stop``; maintenance between samples."""
    tick = min(0.2, loop.config.reload_interval)
    clock = loop._clock
    next_maint = 0.0
    while not stop.is_set():
        try:
            item = q.get(timeout=tick)
        except queue.Empty:
            item = None
        now = clock()
        if now >= next_maint:
            loop.maintenance(now)
            next_maint = now + tick
        if item is None:
            continue
        kind = item[0]
        if kind == "sample":
            loop.process(item[1], item[2])
        elif kind == "bad":
            loop.count_bad_input(item[1])
        elif kind == "eof":
            return EXIT_OK
        elif kind == "fatal":
            log(f"edge-score: {item[1]}")
            return EXIT_BAD_INPUT
    return EXIT_OK


def _config_from_args(args: argparse.Namespace) -> LoopConfig:
    key = None
    if args.key_file:
        from .signing import SignatureError, load_key

        try:
            key = load_key(args.key_file)
        except SignatureError as e:
            raise ValueError(str(e)) from None
    overrides = {"min_consecutive": args.alarm_min_consecutive, "suppress_samples": args.alarm_suppress_samples,
                 "suppress_seconds": args.alarm_suppress_seconds}
    try:
        AlarmRules().merged(overrides)
    except AlarmConfigError as e:
        raise ValueError(str(e)) from None
    health = 60.0 if args.health_interval is None else args.health_interval
    reload = 1.0 if args.reload_interval is None else args.reload_interval
    if health < 0 or not math.isfinite(health):
        raise ValueError(f"--health-interval must be >= 0 seconds, got {health}")
    if reload <= 0 or not math.isfinite(reload):
        raise ValueError(f"--reload-interval must be > 0 seconds, got {reload}")
    return LoopConfig(threads=args.threads, key=key, alarm_overrides=overrides, only_anomalies=args.only_anomalies,
                      only_alarms=args.only_alarms, health_interval=health, reload_interval=reload)


def _install_signals(stop: threading.Event, loop: ScoringLoop) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if hasattr(signal, "SIGHUP"):
        # SIGHUP: look at `current` now rather than at the next interval.
        signal.signal(signal.SIGHUP, lambda *_: setattr(loop, "_next_reload", 0.0))


def _is_regular_file(stream: TextIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False
