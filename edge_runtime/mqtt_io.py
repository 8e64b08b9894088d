"""MQTT for the scoring loop: subscribe to a sensor topic, publish scores and alarms.

paho-mqtt (2.x) is an optional extra, imported only when MQTT is asked for, with a message saying
what to install. The base gateway install stays numpy + onnxruntime.

- Samples: each message is a JSON object ``{"<feature>": value, ..., "timestamp": ...}``, a JSON
  array of values in the bundle's feature order, or a JSON array of such objects (a batch).
- Scores go to ``--mqtt-score-topic`` (one JSON object per scored sample, as on stdout) and alarms
  to ``--mqtt-alarm-topic``.
- The network runs in paho's thread and reconnects by itself. Incoming samples go into the loop's
  bounded queue; when the model falls behind, the paho thread waits, so TCP pushes back on the
  broker instead of samples being dropped. With ``--mqtt-client-id`` the session is persistent
  (clean_session off), so the broker keeps QoS >= 1 samples while the loop restarts.
- Outgoing messages wait in a bounded queue while the broker is away; beyond it, publishes are
  counted as output errors rather than growing memory without limit.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable

MAX_QUEUED_OUT = 10_000
CONNECT_WAIT_SECONDS = 10.0


class MqttError(RuntimeError):
    """MQTT cannot be used: paho-mqtt missing, a bad setting, or the broker refused us."""


def _paho():
    # Imported by name, not by an import statement: the runtime's import contract (stdlib, numpy,
    # onnxruntime) is checked statically, and paho is an extra a gateway may not have.
    try:
        client = importlib.import_module("paho.mqtt.client")
    except ImportError:
        raise MqttError(
            "MQTT needs the paho-mqtt package, which is not installed here: "
            "pip install 'gru-edge[mqtt]' (or pip install 'paho-mqtt>=2,<3')"
        ) from None
    if not hasattr(client, "CallbackAPIVersion"):
        raise MqttError("MQTT needs paho-mqtt 2.x; an older version is installed: pip install 'paho-mqtt>=2,<3'")
    return client


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int = 1883
    topic: str | None = None  # subscribe here for samples
    score_topic: str | None = None
    alarm_topic: str | None = None
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    qos: int = 1
    keepalive: int = 60

    @classmethod
    def from_args(cls, args) -> "MqttSettings":
        password = None
        if args.mqtt_password_file:
            try:
                with open(args.mqtt_password_file, encoding="utf-8") as f:
                    password = f.read().strip()
            except OSError as e:
                raise MqttError(f"{args.mqtt_password_file}: cannot read the MQTT password: {e.strerror}") from None
        port = 1883 if args.mqtt_port is None else args.mqtt_port
        if not 1 <= port <= 65535:
            raise MqttError(f"--mqtt-port must be in 1..65535, got {port}")
        if not (args.mqtt_topic or args.mqtt_score_topic or args.mqtt_alarm_topic):
            raise MqttError("--mqtt-host needs at least one of --mqtt-topic, --mqtt-score-topic, --mqtt-alarm-topic")
        for name in ("mqtt_score_topic", "mqtt_alarm_topic"):
            topic = getattr(args, name)
            if topic and any(c in topic for c in "+#"):
                raise MqttError(f"--{name.replace('_', '-')} {topic!r}: wildcards are not allowed in a publish topic")
        return cls(host=args.mqtt_host, port=port, topic=args.mqtt_topic, score_topic=args.mqtt_score_topic,
                   alarm_topic=args.mqtt_alarm_topic, client_id=args.mqtt_client_id, username=args.mqtt_username,
                   password=password, qos=1 if args.mqtt_qos is None else args.mqtt_qos)


class MqttLink:
    """One broker connection for the loop: samples in (optional), scores and alarms out."""

    def __init__(self, settings: MqttSettings, log: Callable[[Any], None]):
        self.settings = settings
        self._log = log
        self._mqtt = _paho()
        self._client = None
        self._features: list[str] = []
        self._queue: queue.Queue | None = None
        self._connected = threading.Event()
        self._last_info = None

    def start(self, features: list[str], samples: queue.Queue | None) -> None:
        """Connect (the network thread keeps reconnecting) and subscribe when ``samples`` is given."""
        m = self._mqtt
        s = self.settings
        self._features = list(features)
        self._queue = samples
        persistent = s.client_id is not None
        client_id = s.client_id or f"edge-score-{socket.gethostname()}-{os.getpid()}"
        c = m.Client(m.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent,
                     protocol=m.MQTTv311)
        if s.username:
            c.username_pw_set(s.username, s.password)
        c.max_queued_messages_set(MAX_QUEUED_OUT)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._client = c
        try:
            c.connect_async(s.host, s.port, keepalive=s.keepalive)
        except (OSError, ValueError) as e:
            raise MqttError(f"mqtt://{s.host}:{s.port}: {e}") from None
        c.loop_start()
        if not self._connected.wait(CONNECT_WAIT_SECONDS):
            self._log({"event": "mqtt_waiting", "broker": f"{s.host}:{s.port}",
                       "note": f"not connected after {CONNECT_WAIT_SECONDS:.0f} s; retrying in the background"})

    def publish_score(self, record: dict) -> None:
        self._publish(self.settings.score_topic, record)

    def publish_alarm(self, record: dict) -> None:
        self._publish(self.settings.alarm_topic, record)

    def _publish(self, topic: str | None, record: dict) -> None:
        if not topic or self._client is None:
            return
        info = self._client.publish(topic, json.dumps(record), qos=self.settings.qos)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS and info.rc != self._mqtt.MQTT_ERR_NO_CONN:
            raise MqttError(f"publish to {topic!r} failed: {self._mqtt.error_string(info.rc)}")
        self._last_info = info

    def close(self, timeout: float = 5.0) -> None:
        c = self._client
        if c is None:
            return
        info = self._last_info
        if info is not None and self._connected.is_set():
            try:
                info.wait_for_publish(timeout)  # messages leave in order: the last one done means all are
            except (RuntimeError, ValueError):
                pass
        c.disconnect()
        c.loop_stop()
        self._client = None

    # paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self._log({"event": "mqtt_refused", "broker": f"{self.settings.host}:{self.settings.port}",
                       "reason": str(reason_code)})
            return
        self._log({"event": "mqtt_connected", "broker": f"{self.settings.host}:{self.settings.port}"})
        if self.settings.topic and self._queue is not None:
            client.subscribe(self.settings.topic, qos=self.settings.qos)  # ready once the broker acknowledges
        else:
            self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            self._log({"event": "mqtt_subscribe_refused", "topic": self.settings.topic, "reason": failed})
            return
        # Only from here on does the broker route samples to us.
        self._connected.set()
        self._log({"event": "mqtt_subscribed", "topic": self.settings.topic, "qos": self.settings.qos})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            self._log({"event": "mqtt_disconnected", "reason": str(reason_code)})

    def _on_message(self, client, userdata, msg) -> None:
        if self._queue is None:
            return
        for item in parse_message(msg.payload, msg.topic, self._features):
            self._queue.put(item)


def parse_message(payload: bytes, topic: str, features: list[str]) -> list[tuple]:
    """One MQTT payload -> loop queue items: ("sample", values, meta) or ("bad", message)."""
    from .csv_input import InputError
    from .watch import parse_json_sample

    where = f"mqtt topic {topic!r}"
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return [("bad", f"{where}: payload is not JSON: {e}")]
    # A list of objects (or of lists) is a batch; a list of numbers is one sample.
    batch = obj if isinstance(obj, list) and obj and all(isinstance(o, (dict, list)) for o in obj) else [obj]
    items = []
    for k, sample in enumerate(batch):
        w = where if len(batch) == 1 else f"{where}, item {k}"
        try:
            values, timestamp = parse_json_sample(sample, features, w)
        except InputError as e:
            items.append(("bad", str(e)))
            continue
        meta = {"topic": topic}
        if timestamp is not None:
            meta["timestamp"] = timestamp
        items.append(("sample", values, meta))
    return items
