"""Alarm rules: minimum consecutive anomalous samples and suppression periods."""

from __future__ import annotations

import pytest

from gru_edge.edge_runtime.alarms import AlarmConfigError, AlarmRules, AlarmState, apply_rules


def run(pattern: str, rules: AlarmRules, start: int = 0, times=None) -> list[int]:
    """'.' normal, 'x' anomalous, one scored sample per character; returns alarm indices."""
    idx = list(range(start, start + len(pattern)))
    alarms = apply_rules(idx, [0.9 if c == "x" else 0.1 for c in pattern], [c == "x" for c in pattern], rules, times)
    return [a.index for a in alarms]


def test_defaults_alarm_on_every_anomalous_sample():
    assert run("..xx.x", AlarmRules()) == [2, 3, 5]


def test_min_consecutive_needs_an_unbroken_run():
    rules = AlarmRules(min_consecutive=3)
    assert run("xx.xx.xxx.xxxx", rules) == [8, 12, 13]


def test_suppression_in_samples_then_reminder():
    rules = AlarmRules(min_consecutive=2, suppress_samples=5)
    # run starts at 1; alarm at 2; suppressed 3..6; index 7 is 5 samples later -> reminder.
    assert run(".xxxxxxxx", rules) == [2, 7]
    alarms = apply_rules(range(9), [1.0] * 9, [True] * 9, AlarmRules(suppress_samples=4))
    assert [(a.index, a.run_start, a.run_length, a.suppressed) for a in alarms] == [(0, 0, 1, 0), (4, 0, 5, 3),
                                                                                     (8, 0, 9, 3)]


def test_suppression_spans_episodes():
    rules = AlarmRules(suppress_samples=10)
    assert run("x..x......x.x", rules) == [0, 10]


def test_suppression_in_seconds_uses_the_callers_clock():
    rules = AlarmRules(suppress_seconds=60)
    times = [0, 30, 59.9, 60, 61, 200]
    assert run("xxxxxx", rules, times=times) == [0, 3, 5]
    state = AlarmState(rules)
    assert state.update(0, 1.0, True, now=0.0) is not None
    with pytest.raises(ValueError, match="needs the clock"):
        state.update(1, 1.0, True)


def test_indices_with_stride_gaps():
    # With stride 4 scored samples are 4 apart; suppress_samples counts samples, not scores.
    idx = [3, 7, 11, 15, 19]
    alarms = apply_rules(idx, [1] * 5, [True] * 5, AlarmRules(suppress_samples=8))
    assert [a.index for a in alarms] == [3, 11, 19]


def test_config_from_manifest_and_command_line():
    rules = AlarmRules.from_dict({"min_consecutive": 3, "suppress_samples": 600})
    assert rules == AlarmRules(3, 600, 0.0)
    merged = rules.merged({"min_consecutive": None, "suppress_seconds": 5, "suppress_samples": 0})
    assert merged == AlarmRules(3, 0, 5.0)
    assert AlarmRules.from_dict({}) == AlarmRules()
    for bad, msg in [({"min_consecutiv": 2}, "unknown alarm rule 'min_consecutiv'"),
                     ({"min_consecutive": 0}, "integer >= 1"),
                     ({"min_consecutive": True}, "integer >= 1"),
                     ({"suppress_samples": -1}, "integer >= 0"),
                     ({"suppress_seconds": float("nan")}, "seconds >= 0")]:
        with pytest.raises(AlarmConfigError, match=msg):
            AlarmRules.from_dict(bad)
    with pytest.raises(AlarmConfigError, match="command line"):
        rules.merged({"min_consecutive": 0})
