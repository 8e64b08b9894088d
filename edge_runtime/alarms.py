"""Alarm rules: turning per-sample anomaly decisions into the alarms an operator is paged for.

A raw decision flips on single noisy windows; operators expect two simple rules on top:

- ``min_consecutive``: raise only after this many consecutive anomalous *scored* samples
  (window ends); a normal score resets the run.
- a suppression period after each alarm, in samples (``suppress_samples``) and/or wall-clock
  seconds (``suppress_seconds``): while it runs, further alarms are counted but not raised.
  An episode that outlasts the period raises again (a reminder), as pagers do.

The defaults (1, 0, 0) make every anomalous sample an alarm. Rules come from the bundle manifest's
``alarm`` table and may be overridden per key on the command line. Everything here is pure: the
caller passes sample indices and clock readings, so replaying a recording gives the same alarms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable


class AlarmConfigError(ValueError):
    """An alarm rule is unknown or has a value out of range."""


@dataclass(frozen=True)
class AlarmRules:
    min_consecutive: int = 1
    suppress_samples: int = 0
    suppress_seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "alarm") -> "AlarmRules":
        """Strict: an unknown key is a typo, and a typo in an alarm rule pages nobody."""
        d = dict(d or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AlarmConfigError(f"{source}: unknown alarm rule {unknown[0]!r}; known rules: {', '.join(sorted(known))}")
        return cls(**{k: _validate(k, v, source) for k, v in d.items()})

    def merged(self, overrides: dict[str, Any] | None, source: str = "command line") -> "AlarmRules":
        """These rules with every non-None override applied (command line over bundle)."""
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        checked = AlarmRules.from_dict(given, source)
        return replace(self, **{k: getattr(checked, k) for k in given})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Alarm:
    index: int  # sample index the alarm is raised at
    score: float
    run_start: int  # index of the first anomalous scored sample of the current run
    run_length: int  # consecutive anomalous scored samples so far
    suppressed: int  # alarms held back by the suppression period since the previous alarm

    def to_dict(self) -> dict:
        return asdict(self)


class AlarmState:
    """The rules' memory: current run and last alarm. ``update`` once per scored sample, in order."""

    def __init__(self, rules: AlarmRules | None = None) -> None:
        self.rules = rules or AlarmRules()
        self.run_length = 0
        self.run_start: int | None = None
        self.last_alarm_index: int | None = None
        self.last_alarm_time: float | None = None
        self.suppressed = 0
        self.alarms = 0

    def update(self, index: int, score: float, anomaly: bool, now: float | None = None) -> Alarm | None:
        """Feed one scored sample; returns the alarm it raises, if any.

        ``now`` is any monotonic clock in seconds; it is needed only for ``suppress_seconds``.
        """
        if not anomaly:
            self.run_length = 0
            self.run_start = None
            return None
        if self.run_length == 0:
            self.run_start = index
        self.run_length += 1
        if self.run_length < self.rules.min_consecutive:
            return None
        if self._suppressed(index, now):
            self.suppressed += 1
            return None
        alarm = Alarm(index=index, score=float(score), run_start=int(self.run_start), run_length=self.run_length,
                      suppressed=self.suppressed)
        self.last_alarm_index = index
        self.last_alarm_time = now
        self.suppressed = 0
        self.alarms += 1
        return alarm

    def _suppressed(self, index: int, now: float | None) -> bool:
        r = self.rules
        if self.last_alarm_index is not None and r.suppress_samples > 0 and index - self.last_alarm_index < r.suppress_samples:
            return True
        if r.suppress_seconds > 0 and self.last_alarm_time is not None:
            if now is None:
                raise ValueError("suppress_seconds is set: update() needs the clock reading `now`")
            if now - self.last_alarm_time < r.suppress_seconds:
                return True
        return False


def apply_rules(indices: Iterable[int], scores: Iterable[float], anomalies: Iterable[bool],
                rules: AlarmRules, times: Iterable[float] | None = None) -> list[Alarm]:
    """Batch form: the alarms a recording of scored samples raises (same logic as the live loop)."""
    state = AlarmState(rules)
    times_it = iter(times) if times is not None else None
    out = []
    for i, s, a in zip(indices, scores, anomalies):
        now = next(times_it) if times_it is not None else None
        alarm = state.update(int(i), float(s), bool(a), now)
        if alarm is not None:
            out.append(alarm)
    return out


def _validate(key: str, value: Any, source: str) -> Any:
    if key in ("min_consecutive", "suppress_samples"):
        low = 1 if key == "min_consecutive" else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise AlarmConfigError(f"{source}: alarm rule {key!r} must be an integer >= {low}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise AlarmConfigError(f"{source}: alarm rule {key!r} must be a number of seconds >= 0, got {value!r}")
    return float(value)
