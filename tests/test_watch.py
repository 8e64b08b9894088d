"""The long-lived loop: hot reload without losing a sample, refusals, fallback, alarms, inputs."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gru_edge.edge_runtime import deploy
from gru_edge.edge_runtime.scorer import Scorer
from gru_edge.edge_runtime.signing import sign_bundle
from gru_edge.edge_runtime.watch import GatewaySource, LoopConfig, ScoringLoop, start_text_input
from test_deploy_support import make_bundle

KEY = b"0123456789abcdef0123456789abcdef"


class Recorder:
    def __init__(self):
        self.records, self.logs, self.alarms = [], [], []

    def events(self, name):
        return [e for e in self.logs if isinstance(e, dict) and e.get("event") == name]


def make_loop(gw, rec: Recorder, **config) -> ScoringLoop:
    loop = ScoringLoop(GatewaySource(gw), LoopConfig(**config), emit=rec.records.append, log=rec.logs.append,
                       emit_alarm=rec.alarms.append)
    assert loop.start()
    return loop


def series(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.2, 1.0, (n, 3))


def batch_scores(bundle_dir: Path, data: np.ndarray) -> dict[int, float]:
    ends, scores = Scorer(bundle_dir).score_series(data)
    return dict(zip(ends.tolist(), scores.tolist()))


def test_swap_keeps_every_index_and_each_model_scores_as_in_batch(tmp_path):
    gw = tmp_path / "gw"
    b1, b2 = make_bundle(tmp_path / "b1", bias=0.0), make_bundle(tmp_path / "b2", bias=0.7)
    v1 = deploy.flash_local(b1, gw).version
    rec = Recorder()
    loop = make_loop(gw, rec)
    data = series(120)
    for row in data[:50]:
        loop.process(row)
    v2 = deploy.flash_local(b2, gw).version
    assert loop.reload_now()
    for row in data[50:]:
        loop.process(row)
    idx = [r["index"] for r in rec.records]
    assert idx == list(range(7, 120))  # window 8: first score at index 7, then every sample
    by_model = {r["index"]: r["model"] for r in rec.records}
    assert {by_model[i] for i in range(7, 50)} == {f"pump/{v1.id}"}
    assert {by_model[i] for i in range(50, 120)} == {f"pump/{v2.id}"}
    old, new = batch_scores(b1, data), batch_scores(b2, data)
    for r in rec.records:
        expected = old if r["index"] < 50 else new
        assert r["score"] == pytest.approx(expected[r["index"]], abs=1e-6)
    swap = rec.events("model_swapped")
    assert len(swap) == 1 and swap[0]["at_index"] == 50 and swap[0]["replayed"] == 7
    assert loop.counts.reloads == 1 and loop.counts.errors == 0


def test_a_longer_window_and_stride_waits_for_history_then_lands_on_the_batch_grid(tmp_path):
    gw = tmp_path / "gw"
    b1 = make_bundle(tmp_path / "b1", window=8, stride=1)
    b2 = make_bundle(tmp_path / "b2", window=12, stride=3, bias=0.3)
    deploy.flash_local(b1, gw)
    rec = Recorder()
    loop = make_loop(gw, rec)
    data = series(100, seed=1)
    for row in data[:40]:
        loop.process(row)
    deploy.flash_local(b2, gw)
    assert not loop.reload_now()  # loaded, but only 7 samples of history were kept: the old model goes on
    for row in data[40:]:
        loop.process(row)
    swap = rec.events("model_swapped")[0]
    at = swap["at_index"]
    assert 40 < at <= 40 + 13
    old, new = batch_scores(b1, data), batch_scores(b2, data)
    before = [r for r in rec.records if r["index"] < at]
    after = [r for r in rec.records if r["index"] >= at]
    assert [r["index"] for r in before] == list(range(7, at))
    assert [r["index"] for r in after] == [i for i in sorted(new) if i >= at]
    assert all(r["score"] == pytest.approx(new[r["index"]], abs=1e-6) for r in after)
    assert all(r["score"] == pytest.approx(old[r["index"]], abs=1e-6) for r in before)


def test_a_bad_new_bundle_is_refused_and_the_old_one_keeps_scoring(tmp_path):
    gw = tmp_path / "gw"
    v1 = deploy.flash_local(make_bundle(tmp_path / "b1"), gw).version
    rec = Recorder()
    loop = make_loop(gw, rec)
    data = series(60)
    for row in data[:20]:
        loop.process(row)
    v2 = deploy.flash_local(make_bundle(tmp_path / "b2", bias=0.5), gw).version
    model = v2.path / "model.onnx"  # rotted on the card after the flash
    model.write_bytes(model.read_bytes()[:-3] + b"\0\0\0")
    assert not loop.reload_now()
    for row in data[20:40]:
        loop.process(row)
    refused = rec.events("reload_refused")
    assert len(refused) == 1 and "does not match the manifest" in refused[0]["error"]
    assert loop.reload_now() is False and len(rec.events("reload_refused")) == 1  # logged once, not retried
    v3 = deploy.flash_local(make_bundle(tmp_path / "b3", bias=-0.5), gw).version
    assert loop.reload_now()
    for row in data[40:]:
        loop.process(row)
    assert [r["index"] for r in rec.records] == list(range(7, 60))
    models = [r["model"] for r in rec.records]
    assert set(models[:33]) == {f"pump/{v1.id}"} and set(models[33:]) == {f"pump/{v3.id}"}
    assert loop.counts.reload_refused == 1


def test_with_a_key_unsigned_versions_never_go_live(tmp_path):
    gw = tmp_path / "gw"
    b1 = make_bundle(tmp_path / "b1")
    sign_bundle(b1, KEY)
    v1 = deploy.flash_local(b1, gw).version
    rec = Recorder()
    loop = make_loop(gw, rec, key=KEY)
    deploy.flash_local(make_bundle(tmp_path / "b2", bias=0.4), gw)  # flashed without a key: allowed there
    assert not loop.reload_now()
    assert "unsigned" in rec.events("reload_refused")[0]["error"]
    assert loop.active.target.label == f"pump/{v1.id}"


def test_start_up_falls_back_when_current_is_broken(tmp_path):
    gw = tmp_path / "gw"
    v1 = deploy.flash_local(make_bundle(tmp_path / "b1"), gw).version
    v2 = deploy.flash_local(make_bundle(tmp_path / "b2", bias=0.4), gw).version
    (v2.path / "model.onnx").write_bytes(b"garbage")
    rec = Recorder()
    loop = make_loop(gw, rec)
    assert loop.active.target.label == f"pump/{v1.id}"
    assert rec.events("model_refused")[0]["model"] == f"pump/{v2.id}"
    assert rec.events("fallback")[0]["current"] == f"pump/{v2.id}"
    assert not loop.reload_now() and not rec.events("reload_refused")  # refused once, not retried
    assert loop.counts.reload_refused == 1


def test_waits_for_a_first_flash(tmp_path):
    gw = tmp_path / "gw"
    rec = Recorder()
    loop = ScoringLoop(GatewaySource(gw), LoopConfig(reload_interval=0.02), emit=rec.records.append,
                       log=rec.logs.append)
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("ok", loop.start(stop)))
    t.start()
    time.sleep(0.15)
    assert rec.events("waiting") and loop.active is None
    deploy.flash_local(make_bundle(tmp_path / "b1"), gw)
    t.join(5)
    assert result == {"ok": True} and loop.active is not None


def test_feature_order_may_change_but_not_the_feature_set(tmp_path):
    gw = tmp_path / "gw"
    deploy.flash_local(make_bundle(tmp_path / "b1"), gw)
    rec = Recorder()
    loop = make_loop(gw, rec)
    data = series(40)
    for row in data[:20]:
        loop.process(row)
    b2 = make_bundle(tmp_path / "b2", features=("c", "a", "b"), gain=2.0)
    deploy.flash_local(b2, gw)
    assert loop.reload_now()
    for row in data[20:]:
        loop.process(row)
    new = batch_scores(b2, data[:, [2, 0, 1]])
    assert all(r["score"] == pytest.approx(new[r["index"]], abs=1e-6) for r in rec.records if r["index"] >= 20)
    deploy.flash_local(make_bundle(tmp_path / "b3", features=("a", "b", "x")), gw)
    assert not loop.reload_now()
    assert "missing ['x']" in rec.events("reload_refused")[0]["error"]


def test_alarm_rules_from_the_bundle_and_overrides(tmp_path):
    gw = tmp_path / "gw"
    deploy.flash_local(make_bundle(tmp_path / "b1", alarm={"min_consecutive": 3, "suppress_samples": 10}), gw)
    rec = Recorder()
    loop = make_loop(gw, rec)
    data = np.vstack([np.zeros((10, 3)) - 1.0, np.ones((30, 3)) * 1.0])  # scores go high from ~index 14
    for row in data:
        loop.process(row)
    anomalous = [r["index"] for r in rec.records if r["anomaly"]]
    first = anomalous[0]
    assert [a["index"] for a in rec.alarms] == [first + 2, first + 12, first + 22]
    assert [r["index"] for r in rec.records if r["alarm"]] == [a["index"] for a in rec.alarms]
    rec2 = Recorder()
    loop2 = make_loop(gw, rec2, alarm_overrides={"min_consecutive": 1, "suppress_samples": None})
    for row in data:
        loop2.process(row)
    assert [a["index"] for a in rec2.alarms] == [first, first + 10, first + 20]


def test_text_inputs_csv_and_json_lines(tmp_path):
    import io

    q: queue.Queue = queue.Queue()
    csv = io.StringIO("\n\ntime,b,a,c\n1,2,1,3\n2,x,1,3\n3,2,1,3\n")
    start_text_input(csv, "in.csv", ["a", "b", "c"], q).join(5)
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert items[0][0] == "sample" and items[0][1].tolist() == [1, 2, 3] and items[0][2] == {"line": 4, "timestamp": "1"}
    assert items[1][0] == "bad" and "line 5" in items[1][1] and "'b'" in items[1][1]
    assert items[-1] == ("eof", "end of input")
    jl = io.StringIO('{"a": 1, "b": 2, "c": 3, "timestamp": "t0"}\n[4, 5, 6]\n{"a": 1}\nnope\n[1, 2, NaN]\n')
    start_text_input(jl, "in.jsonl", ["a", "b", "c"], q).join(5)
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert items[0][1].tolist() == [1, 2, 3] and items[0][2]["timestamp"] == "t0"
    assert items[1][1].tolist() == [4, 5, 6] and items[1][2] == {"line": 2}
    assert [i[0] for i in items] == ["sample", "sample", "bad", "bad", "bad", "eof"]
    assert "missing feature(s) 'b', 'c'" in items[2][1] and "not valid JSON" in items[3][1]


def _reader(stream, sink: list, seen: threading.Event | None = None, needle: str = ""):
    def run():
        for line in stream:
            sink.append(line)
            if seen is not None and needle in line:
                seen.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_edge_score_watch_process_keeps_scoring_across_flashes(tmp_path):
    """The real command: samples stream in while `current` switches twice (one good, one bad flash)."""
    gw = tmp_path / "gw"
    v1 = deploy.flash_local(make_bundle(tmp_path / "b1"), gw).version
    proc = subprocess.Popen(
        [sys.executable, "-m", "gru_edge.edge_runtime.cli", "--watch", str(gw), "--reload-interval", "0.05",
         "--health-interval", "0.2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    out, err = [], []
    live, swapped = threading.Event(), threading.Event()
    readers = [_reader(proc.stdout, out, live, '"index": 7,'), _reader(proc.stderr, err, swapped, '"model_swapped"')]
    try:
        proc.stdin.write("a,b,c\n")
        for row in series(8, seed=3):  # the loop is up and scoring before anything is flashed
            proc.stdin.write(f"{row[0]:.5f},{row[1]:.5f},{row[2]:.5f}\n")
        proc.stdin.flush()
        assert live.wait(30), "".join(err)
        data = series(3000, seed=3)
        flashed = {}
        for i, row in enumerate(data[8:], start=8):
            proc.stdin.write(f"{row[0]:.5f},{row[1]:.5f},{row[2]:.5f}\n")
            if i % 50 == 0:
                proc.stdin.flush()
                time.sleep(0.005)
            if i == 800:
                flashed["v2"] = deploy.flash_local(make_bundle(tmp_path / "b2", bias=0.5), gw).version
                assert swapped.wait(10), "".join(err)
            if i == 1600:
                broken = make_bundle(tmp_path / "b3", bias=0.9)
                v3 = deploy.flash_local(broken, gw).version
                (v3.path / "model.onnx").write_bytes(b"\0" * 10)
                flashed["v3"] = v3
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for t in readers:
        t.join(5)
    records = [json.loads(line) for line in out]
    assert [r["index"] for r in records] == list(range(7, 3000))
    assert [r["line"] for r in records] == list(range(9, 3002))
    models = [r["model"] for r in records]
    assert models[0] == f"pump/{v1.id}" and models[-1] == f"pump/{flashed['v2'].id}"
    switch = models.index(f"pump/{flashed['v2'].id}")
    assert set(models[:switch]) == {f"pump/{v1.id}"} and set(models[switch:]) == {f"pump/{flashed['v2'].id}"}
    logs = [json.loads(line) for line in err if line.startswith("{")]
    refused = [e for e in logs if e.get("event") == "reload_refused"]
    assert len(refused) == 1 and refused[0]["model"] == f"pump/{flashed['v3'].id}"
    health = [e["health"] for e in logs if "health" in e]
    assert health and {"samples", "alarms", "errors", "model", "latency_ms", "rss_mb"} <= set(health[-1])
    summary = [e["summary"] for e in logs if "summary" in e][0]
    assert summary["samples"] == 3000 and summary["scored"] == 2993 and summary["reloads"] == 1
    assert summary["errors"] == summary["reload_refused"] == 1


def test_edge_score_watch_stops_cleanly_on_sigterm_and_reads_json_lines(tmp_path):
    gw = tmp_path / "gw"
    deploy.flash_local(make_bundle(tmp_path / "b1"), gw)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gru_edge.edge_runtime.cli", "--watch", str(gw), "--health-interval", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    out, err = [], []
    got = threading.Event()
    readers = [_reader(proc.stdout, out, got, '"index": 19'), _reader(proc.stderr, err)]
    try:
        for i in range(20):
            proc.stdin.write(json.dumps({"a": i / 10, "b": 0.1, "c": -0.2, "timestamp": f"t{i}"}) + "\n")
        proc.stdin.flush()
        assert got.wait(10), "".join(err)
        proc.send_signal(signal.SIGTERM)  # stdin stays open: a service being stopped
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for t in readers:
        t.join(5)
    records = [json.loads(line) for line in out]
    assert [r["index"] for r in records] == list(range(7, 20)) and records[-1]["timestamp"] == "t19"
    assert json.loads(err[-1])["summary"]["samples"] == 20


def test_plain_edge_score_is_unchanged_and_loop_needs_a_source(tmp_path, capsys):
    from gru_edge.edge_runtime.cli import main

    bundle = make_bundle(tmp_path / "b1")
    csv = tmp_path / "in.csv"
    csv.write_text("a,b,c\n" + "".join(f"{i},0,0\n" for i in range(10)))
    assert main([str(bundle), "--input", str(csv), "--quiet"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert list(lines[0]) == ["index", "line", "score", "anomaly"] and len(lines) == 3
    with pytest.raises(SystemExit):
        main([])
    assert main(["--watch", str(tmp_path / "gw"), str(bundle)]) == 4
    assert "not both" in capsys.readouterr().err
