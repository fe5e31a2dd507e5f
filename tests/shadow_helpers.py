"""Shared helpers for the Device Shadow tests (HTTP iot-data and MQTT).

Documents are compared the way the golden fixtures of crates/shadow describe AWS's
(reference section 4, crates/shadow/tests/golden/NOTES.md): key order matters, the
numeric value of every `timestamp` key does not (it must still be a plausible epoch
second, which `shape()` checks).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.config import Config

from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY

TIMEOUT = 8.0
TS = "<timestamp>"  # what every timestamp value becomes in shape()


# --------------------------------------------------------------------------------------
# documents
# --------------------------------------------------------------------------------------


def _ordered(value, check: bool):
    """Dicts become lists of (key, value) pairs so that == compares key order too;
    every number under a "timestamp" key becomes TS (after a plausibility check when
    `check`: an integer epoch second close to now)."""
    if isinstance(value, dict):
        pairs = []
        for key, item in value.items():
            if key == "timestamp" and not isinstance(item, (dict, list)):
                if check:
                    assert isinstance(item, int) and not isinstance(item, bool), f"timestamp {item!r} is not an integer"
                    assert abs(item - time.time()) < 300, f"timestamp {item} is not epoch seconds of now"
                pairs.append((key, TS))
            else:
                pairs.append((key, _ordered(item, check)))
        return ("{}", pairs)
    if isinstance(value, list):
        return ("[]", [_ordered(item, check) for item in value])
    return value


def shape(raw: bytes | str | dict):
    """The order-sensitive, timestamp-blind form of a JSON document (raw bytes or a dict
    literal, whose insertion order is the expected key order)."""
    if isinstance(raw, (bytes, str)):
        return _ordered(json.loads(raw), True)
    return _ordered(raw, False)


def assert_document(raw: bytes | str, expected: dict, what: str = "document") -> dict:
    """The raw JSON equals `expected` including key order, timestamps aside. Returns it parsed."""
    got = json.loads(raw)
    assert shape(raw) == shape(expected), (
        f"{what} differs (key order matters, timestamp values are ignored)\n"
        f"  got:      {raw.decode() if isinstance(raw, bytes) else raw}\n"
        f"  expected: {json.dumps(expected)}"
    )
    return got


def leaf_meta(value):
    """AWS metadata for a written value: {"timestamp": T} per leaf, arrays element-wise."""
    if isinstance(value, dict):
        return {key: leaf_meta(item) for key, item in value.items()}
    if isinstance(value, list):
        return [leaf_meta(item) for item in value]
    return {"timestamp": 0}


def nested(levels: int, leaf=1) -> dict:
    """An object `levels` objects deep: nested(1) == {"k": 1}, nested(2) == {"k": {"k": 1}}."""
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


# --------------------------------------------------------------------------------------
# AWS clients
# --------------------------------------------------------------------------------------


def new_client(server, service: str, validate: bool = True):
    """A fresh boto3 client (one per thread in the concurrency tests)."""
    return boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION).client(
        service,
        endpoint_url=server.endpoint,
        config=Config(
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=30,
            parameter_validation=validate,
            max_pool_connections=50,
        ),
    )


def unique_thing(prefix: str = "shadow") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def payload_of(response) -> bytes:
    return response["payload"].read()


# --------------------------------------------------------------------------------------
# MQTT
# --------------------------------------------------------------------------------------


def reason(code) -> int:
    """A paho reason code (ReasonCode or int) as an int."""
    return int(code.value if hasattr(code, "value") else code)


class MqttClient:
    """A paho client over mutual TLS that files every message by topic and waits with
    timeouts instead of sleeping."""

    def __init__(self, server, files, client_id: str, v5: bool = False, clean_session: bool = True):
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        extra = {} if v5 else {"clean_session": clean_session}
        self.v5 = v5
        self.clean = clean_session
        self.server = server
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **extra)
        self.paho.tls_set(
            ca_certs=str(files / "ca.pem"), certfile=str(files / "cert.pem"), keyfile=str(files / "key.pem")
        )
        self.lock = threading.Condition()
        self.messages: dict[str, list[bytes]] = defaultdict(list)
        self.qos: dict[str, list[int]] = defaultdict(list)
        self.order: list[tuple[str, bytes]] = []
        self.connacks: list = []
        self.session_present: list[bool] = []
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.disconnected = threading.Event()
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_publish = self._on_publish
        self.paho.on_disconnect = lambda c, u, flags, rc, props=None: self.disconnected.set()

    # callbacks -------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, rc, props=None):
        with self.lock:
            self.connacks.append(rc)
            self.session_present.append(bool(flags.session_present))
            self.lock.notify_all()

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages[message.topic].append(message.payload)
            self.qos[message.topic].append(message.qos)
            self.order.append((message.topic, message.payload))
            self.lock.notify_all()

    def _on_subscribe(self, client, userdata, mid, codes, props=None):
        with self.lock:
            self.subacks[mid] = [reason(code) for code in codes]
            self.lock.notify_all()

    def _on_publish(self, client, userdata, mid, rc=None, props=None):
        with self.lock:
            self.pubacks[mid] = reason(rc) if rc is not None else 0
            self.lock.notify_all()

    # waiting -----------------------------------------------------------------------------
    def wait(self, condition, what: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                result = condition()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out after {timeout}s waiting for {what}; received: {self.order[-20:]}")
                self.lock.wait(min(left, 0.2))

    # operations --------------------------------------------------------------------------
    def connect(self, expect_ok: bool = True, **kwargs):
        if self.v5 and not self.clean:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
            kwargs.update(clean_start=False, properties=properties)
        self.paho.connect("localhost", self.server.mqtt_port, keepalive=60, **kwargs)
        self.paho.loop_start()
        self.wait(lambda: self.connacks or self.disconnected.is_set(), "CONNACK")
        rc = self.connacks[0] if self.connacks else None
        if expect_ok:
            assert rc is not None and reason(rc) == 0, f"CONNECT refused: {rc}"
        return rc

    def subscribe(self, *topics: str, qos: int = 1) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; returns its reason codes."""
        result, mid = self.paho.subscribe([(topic, qos) for topic in topics])
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {result}"
        return self.wait(lambda: self.subacks.get(mid), f"SUBACK for {topics}")

    def subscribe_ok(self, *topics: str, qos: int = 1) -> None:
        codes = self.subscribe(*topics, qos=qos)
        assert codes == [qos] * len(topics), f"SUBACK {codes} for {topics}"

    def publish(self, topic: str, payload, qos: int = 1) -> int | None:
        """PUBLISH; for QoS 1 waits for the PUBACK and returns its reason code (0 on 3.1.1)."""
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        info = self.paho.publish(topic, payload, qos=qos)
        if qos == 0:
            return None
        return self.wait(lambda: info.mid in self.pubacks and (self.pubacks[info.mid],), f"PUBACK on {topic}")[0]

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.messages[topic])

    def next(self, topic: str, index: int | None = None, timeout: float = TIMEOUT) -> bytes:
        """The message number `index` (default: the first) received on `topic`, waiting for it."""
        index = 0 if index is None else index
        self.wait(lambda: len(self.messages[topic]) > index, f"message #{index + 1} on {topic}", timeout)
        with self.lock:
            return self.messages[topic][index]

    def nothing_on(self, topic: str, already: int = 0, within: float = 0.6) -> None:
        """No (further) message on `topic` arrives within `within` seconds."""
        time.sleep(within)
        with self.lock:
            extra = self.messages[topic][already:]
        assert not extra, f"unexpected message(s) on {topic}: {extra}"

    def close(self):
        try:
            self.paho.disconnect()
        finally:
            self.paho.loop_stop()


class ShadowTopics:
    """The reserved topics of one shadow (reference 4.1)."""

    def __init__(self, thing: str, shadow: str | None = None):
        self.thing = thing
        self.shadow = shadow
        self.prefix = f"$aws/things/{thing}/shadow" + (f"/name/{shadow}" if shadow else "")

    def __getattr__(self, name: str) -> str:
        # get, get_accepted, update_delta, delete_rejected, update_documents ...
        if name.startswith("_"):
            raise AttributeError(name)
        return f"{self.prefix}/{name.replace('_', '/')}"

    @property
    def responses(self) -> list[str]:
        return [
            self.get_accepted, self.get_rejected,
            self.update_accepted, self.update_rejected, self.update_delta, self.update_documents,
            self.delete_accepted, self.delete_rejected,
        ]


def mqtt_request(client: MqttClient, topics: ShadowTopics, op: str, payload, timeout: float = TIMEOUT) -> tuple[str, bytes]:
    """Publishes a shadow request and waits for its answer on accepted or rejected;
    returns ("accepted"|"rejected", payload). Both response topics must be subscribed."""
    accepted, rejected = f"{topics.prefix}/{op}/accepted", f"{topics.prefix}/{op}/rejected"
    before = (client.count(accepted), client.count(rejected))
    assert client.publish(f"{topics.prefix}/{op}", payload) in (0, None)
    client.wait(
        lambda: client.count(accepted) > before[0] or client.count(rejected) > before[1],
        f"an answer to {op} on {topics.prefix}",
        timeout,
    )
    if client.count(accepted) > before[0]:
        return "accepted", client.messages[accepted][before[0]]
    return "rejected", client.messages[rejected][before[1]]
