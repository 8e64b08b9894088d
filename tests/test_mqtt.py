"""MQTT in and out of the scoring loop, against a real mosquitto broker started on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from gru_edge.edge_runtime import deploy
from gru_edge.edge_runtime.alarms import AlarmRules, apply_rules
from gru_edge.edge_runtime.mqtt_io import MqttError, parse_message
from test_deploy_support import free_port, make_bundle, require, require_module, stop, wait_port


def test_parse_message_objects_arrays_batches_and_errors():
    f = ["a", "b", "c"]
    [(kind, values, meta)] = parse_message(b'{"a": 1, "b": 2, "c": 3, "ts": 1, "timestamp": "t"}', "s/x", f)
    assert kind == "sample" and values.tolist() == [1, 2, 3] and meta == {"topic": "s/x", "timestamp": "t"}
    assert parse_message(b"[1, 2, 3]", "s", f)[0][1].tolist() == [1, 2, 3]
    batch = parse_message(b'[{"a": 1, "b": 2, "c": 3}, [4, 5, 6], {"a": 1}]', "s", f)
    assert [i[0] for i in batch] == ["sample", "sample", "bad"] and "item 2" in batch[2][1]
    assert parse_message(b"\xff", "s", f)[0][0] == "bad"
    assert "finite number" in parse_message(b'{"a": 1, "b": "2", "c": 3}', "s", f)[0][1]
    assert "expected 3 values" in parse_message(b"[1, 2]", "s", f)[0][1]


def test_a_missing_paho_says_what_to_install(monkeypatch):
    from gru_edge.edge_runtime import mqtt_io

    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(MqttError, match=r"pip install 'gru-edge\[mqtt\]'"):
        mqtt_io._paho()


@pytest.fixture()
def broker(tmp_path):
    exe = require("mosquitto")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n")
    log = open(tmp_path / "mosquitto.log", "w")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
    except RuntimeError as e:
        stop(proc)
        raise RuntimeError(f"mosquitto did not start: {e}: {(tmp_path / 'mosquitto.log').read_text()}") from None
    yield port
    stop(proc)
    log.close()


def test_loop_reads_samples_and_publishes_scores_and_alarms_across_a_reload(tmp_path, broker):
    mqtt = require_module("paho.mqtt.client")
    gw = tmp_path / "gw"
    v1 = deploy.flash_local(make_bundle(tmp_path / "b1", threshold=0.55), gw).version
    proc = subprocess.Popen(
        [sys.executable, "-m", "gru_edge.edge_runtime.cli", "--watch", str(gw), "--reload-interval", "0.05",
         "--health-interval", "0", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker),
         "--mqtt-topic", "plant/pump1/samples", "--mqtt-score-topic", "plant/pump1/scores",
         "--mqtt-alarm-topic", "plant/pump1/alarms", "--alarm-min-consecutive", "2", "--alarm-suppress-samples", "6",
         "--no-stdout"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    connected, swapped = threading.Event(), threading.Event()

    def read_err():
        for line in proc.stderr:
            err.append(line)
            if "mqtt_subscribed" in line:
                connected.set()
            if "model_swapped" in line:
                swapped.set()

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    received = {"plant/pump1/scores": [], "plant/pump1/alarms": []}
    got_half, got_all = threading.Event(), threading.Event()
    n = 200

    def on_message(client, userdata, msg):
        received[msg.topic].append(json.loads(msg.payload))
        if msg.topic.endswith("scores"):
            index = received[msg.topic][-1]["index"]
            (got_half if index == n // 2 - 1 else got_all if index == n - 1 else threading.Event()).set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker)
    sub.loop_start()
    sub.subscribe([("plant/pump1/scores", 1), ("plant/pump1/alarms", 1)])
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub")
    pub.connect("127.0.0.1", broker)
    pub.loop_start()
    try:
        assert subscribed.wait(5) and connected.wait(20), "".join(err)
        data = np.random.default_rng(7).normal(0.3, 1.0, (n, 3)).round(4)
        infos = []
        for i in range(0, 100, 2):  # pairs as a batch message, then single objects
            batch = [dict(zip("abc", data[i])), data[i + 1].tolist()]
            infos.append(pub.publish("plant/pump1/samples", json.dumps(batch), qos=1))
        infos.append(pub.publish("plant/pump1/samples", b"not json", qos=1))
        for info in infos:
            info.wait_for_publish(5)
        assert got_half.wait(20), "".join(err)  # the loop has scored the first half
        v2 = deploy.flash_local(make_bundle(tmp_path / "b2", bias=0.4, threshold=0.55), gw).version
        # A reload only waits for a sample when history is short; here it is long enough already.
        assert swapped.wait(10), "".join(err)
        for i in range(100, n):
            infos.append(pub.publish("plant/pump1/samples", json.dumps({**dict(zip("abc", data[i])), "timestamp": i}),
                                     qos=1))
        if not got_all.wait(20):
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            reader.join(5)
            scores = received["plant/pump1/scores"]
            pytest.fail(f"scores stopped at {scores[-1]['index'] if scores else None} ({len(scores)} received); "
                        + "".join(err))
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    scores = received["plant/pump1/scores"]
    assert [s["index"] for s in scores] == list(range(7, n))
    models = [s["model"] for s in scores]
    switch = models.index(f"pump/{v2.id}")
    assert set(models[:switch]) == {f"pump/{v1.id}"} and set(models[switch:]) == {f"pump/{v2.id}"}
    assert switch == 100 - 7 and scores[-1]["timestamp"] == str(n - 1)
    expected = apply_rules([s["index"] for s in scores], [s["score"] for s in scores], [s["anomaly"] for s in scores],
                           AlarmRules(min_consecutive=2, suppress_samples=6))
    alarms = received["plant/pump1/alarms"]
    assert len(expected) >= 3
    assert [(a["index"], a["run_length"]) for a in alarms] == [(a.index, a.run_length) for a in expected]
    assert [s["index"] for s in scores if s["alarm"]] == [a.index for a in expected]
    summary = json.loads(err[-1])["summary"]
    assert summary["samples"] == n and summary["bad_input"] == 1 and summary["output_errors"] == 0
