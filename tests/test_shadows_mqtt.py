"""Device Shadow over MQTT: seed 002's shadow_client.py (AWSIoTPythonSDK) unchanged but
for endpoint, port and thing name; the reserved shadow topics with paho (documents,
delta, clientToken echo, named shadows, errors, authorization, persistent sessions);
ferrocore's opt-in extensions (history, removal notifications, limits) on a second
server started with a config file; and many devices updating at once.

Expected behaviour: reference section 4 and crates/shadow/tests/golden/NOTES.md."""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import configured_server
from iot_helpers import ACCESS_KEY, ACCOUNT_ID, REGION, SECRET_KEY, aws_error
from shadow_helpers import (
    MqttClient,
    ShadowTopics,
    assert_document,
    leaf_meta,
    mqtt_request,
    nested,
    new_client,
    payload_of,
    unique_thing,
)
from test_gateway_mqtt import Device, everything_allowed, provision

TIMEOUT = 8.0
SEED_002 = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds" / "002_fd86832acb7ac348.txt"


# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture
def data(client_factory):
    return client_factory("iot-data")


@pytest.fixture
def device(iot, server, tmp_path):
    """A thing with a certificate under the walled-garden policy (its own $aws/things/<thing>/* topics)."""
    return provision(iot, server, tmp_path)


@pytest.fixture
def observer(iot, server, tmp_path):
    """Another identity allowed everything (iot:*), to watch or poke any shadow's topics."""
    other = provision(iot, server, tmp_path)
    everything_allowed(iot, other)
    return other


@pytest.fixture
def clients():
    """connect(...) -> a connected MqttClient; every client is closed at teardown."""
    made: list[MqttClient] = []

    def connect(server, device: Device, client_id: str | None = None, v5: bool = False, clean_session: bool = True):
        client = MqttClient(server, device.files, device.thing if client_id is None else client_id, v5=v5, clean_session=clean_session)
        made.append(client)
        client.connect()
        return client

    yield connect
    for client in made:
        try:
            client.close()
        except Exception:
            pass


def shadow_client(server, device, clients, shadow: str | None = None, v5: bool = False) -> tuple[MqttClient, ShadowTopics]:
    """The device, connected and subscribed (QoS 1) to every response topic of its shadow."""
    client = clients(server, device, v5=v5)
    topics = ShadowTopics(device.thing, shadow)
    client.subscribe_ok(*topics.responses)
    return client, topics


def http_update(data, thing: str, document: dict, shadow: str | None = None) -> bytes:
    kwargs = {"shadowName": shadow} if shadow else {}
    return payload_of(data.update_thing_shadow(thingName=thing, payload=json.dumps(document), **kwargs))


def http_get(data, thing: str, shadow: str | None = None) -> dict:
    kwargs = {"shadowName": shadow} if shadow else {}
    return json.loads(payload_of(data.get_thing_shadow(thingName=thing, **kwargs)))


def accepted(client, topics, op, payload) -> bytes:
    outcome, body = mqtt_request(client, topics, op, payload)
    assert outcome == "accepted", f"{op} rejected: {body!r}"
    return body


def rejected(client, topics, op, payload) -> bytes:
    outcome, body = mqtt_request(client, topics, op, payload)
    assert outcome == "rejected", f"{op} accepted: {body!r}"
    return body


# --------------------------------------------------------------------------------------
# (a) seed 002: shadow_client.py with the AWS IoT Python SDK
# --------------------------------------------------------------------------------------


def seed_002() -> str:
    if not SEED_002.is_file():
        pytest.skip(f"seed 002 not found at {SEED_002}")
    return SEED_002.read_text()


def seed_shadow_client(endpoint: str, port: int, thing: str) -> str:
    """shadow_client.py from seed 002 with only the endpoint, port and thing name changed
    (the certificate files are written where the script looks for them)."""
    match = re.search(r"```python\n(# shadow_client\.py\n.*?)```", seed_002(), re.S)
    assert match, "seed 002 has no shadow_client.py block"
    code = match.group(1)
    replacements = [
        ('IOT_ENDPOINT = "xxxx-ats.iot.us-east-1.amazonaws.com"', f"IOT_ENDPOINT = {endpoint!r}"),
        ('THING_NAME = "sensor-001"', f"THING_NAME = {thing!r}"),
        ("shadow_client.configureEndpoint(IOT_ENDPOINT, 8883)", f"shadow_client.configureEndpoint(IOT_ENDPOINT, {port})"),
    ]
    for old, new in replacements:
        assert code.count(old) == 1, f"seed 002's shadow_client.py no longer contains {old!r}"
        code = code.replace(old, new)
    for path in ('ROOT_CA = "./AmazonRootCA1.pem"', 'CERT_FILE = "./device.cert.pem"', 'KEY_FILE = "./device.private.key"'):
        assert path in code, f"seed 002's certificate path changed: {path}"
    return code


def seed_policy_document() -> str:
    """SensorDevicePolicy of seed 002 (sensor-policy.json), with this server's account id."""
    match = re.search(r"cat > sensor-policy\.json << 'EOF'\n(.*?)\nEOF", seed_002(), re.S)
    assert match, "seed 002 has no sensor-policy.json"
    document = match.group(1).replace("123456789012", ACCOUNT_ID)
    assert "iot:GetThingShadow" in document and "iot:UpdateThingShadow" in document
    return document


class Output:
    """Collects a subprocess's stdout and waits for text in it."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.text = ""
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.text += line
                self.cond.notify_all()

    def wait_for(self, needle: str, count: int = 1, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.text.count(needle) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.thread.is_alive()):
                    pytest.fail(f"shadow_client.py did not print {needle!r} x{count}; exit={self.proc.poll()} output:\n{self.text}")
                self.cond.wait(min(left, 0.2))
            return self.text

    def json_after(self, needle: str, timeout: float = 10.0):
        """The JSON document printed after `needle`, once all its lines have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self.cond:
                try:
                    return json.JSONDecoder().raw_decode(self.after(needle))[0]
                except ValueError as err:
                    if time.monotonic() > deadline:
                        pytest.fail(f"no complete JSON document after {needle!r} ({err}); output:\n{self.text}")
                    self.cond.wait(0.2)

    def after(self, needle: str, occurrence: int = 1) -> str:
        """The text following the occurrence-th `needle`."""
        index = -1
        for _ in range(occurrence):
            index = self.text.index(needle, index + 1)
        return self.text[index + len(needle):]


def test_seed_002_shadow_client_follows_desired_changes(iot, server, data, device, tmp_path):
    pytest.importorskip("AWSIoTPythonSDK.MQTTLib", reason="AWSIoTPythonSDK is not installed")
    # the device has reported before (so the script's first GET is accepted)
    http_update(data, device.thing, {"state": {"reported": {"sample_interval": 60}}})

    workdir = tmp_path / "seed002"
    workdir.mkdir()
    (workdir / "AmazonRootCA1.pem").write_bytes((device.files / "ca.pem").read_bytes())
    (workdir / "device.cert.pem").write_bytes((device.files / "cert.pem").read_bytes())
    (workdir / "device.private.key").write_bytes((device.files / "key.pem").read_bytes())
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    script = workdir / "shadow_client.py"
    script.write_text(seed_shadow_client(endpoint, server.mqtt_port, device.thing))

    proc = subprocess.Popen(
        [sys.executable, "-u", str(script)],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    out = Output(proc)
    try:
        out.wait_for("Connected")
        # The SDK waits 2 s after each of its subscriptions (delta, get, update).
        out.wait_for("Current shadow state: ")
        printed = out.json_after("Current shadow state: ")  # printed with indent=2, over several lines
        assert printed["state"]["reported"] == {"sample_interval": 60}
        assert printed["version"] == 1
        assert "Shadow get rejected" not in out.text

        out.wait_for("Shadow update accepted: ")  # the main loop's first report (token echoed)
        document = http_get(data, device.thing)
        assert document["version"] == 2
        reported = document["state"]["reported"]
        assert set(reported) == {"sample_interval", "temperature", "humidity", "timestamp"}
        assert 15 <= reported["temperature"] <= 25 and 40 <= reported["humidity"] <= 60

        # the operator changes the desired interval over HTTP
        http_update(data, device.thing, {"state": {"desired": {"sample_interval": 15}}})
        out.wait_for("Shadow delta received: ")
        delta = ast.literal_eval(out.after("Shadow delta received: ").splitlines()[0])
        assert delta["state"] == {"sample_interval": 15} and delta["version"] == 3
        out.wait_for("Updating sample interval to: 15")
        out.wait_for("Applying configuration: {'sample_interval': 15}")
        out.wait_for("Shadow update accepted: ", count=2)  # report_state() after the delta

        document = http_get(data, device.thing)
        assert document["version"] == 4
        assert document["state"]["desired"] == {"sample_interval": 15}
        assert document["state"]["reported"]["sample_interval"] == 15
        assert "delta" not in document["state"], f"the delta did not clear: {document['state']}"
        assert "rejected" not in out.text and "timeout" not in out.text.lower(), out.text
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # the script disconnects on KeyboardInterrupt
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.thread.join(timeout=5)


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_seed_002_policy_does_not_allow_the_shadow_topics(iot, server, data, tmp_path, clients, v5):
    """SensorDevicePolicy grants iot:GetThingShadow/UpdateThingShadow on the thing, which
    AWS checks only for the HTTP API: over MQTT the shadow topics need iot:Publish,
    iot:Subscribe and iot:Receive, which the policy grants only for sensors/ and commands/."""
    device = provision(iot, server, tmp_path)
    iot.detach_policy(policyName=f"{device.thing}-policy", target=device.cert_arn)
    policy = f"{device.thing}-SensorDevicePolicy"
    iot.create_policy(policyName=policy, policyDocument=seed_policy_document())
    iot.attach_policy(policyName=policy, target=device.cert_arn)
    topics = ShadowTopics(device.thing)

    client = clients(server, device, v5=v5)
    client.paho.subscribe(topics.update_accepted, qos=1)
    if v5:
        client.wait(lambda: client.subacks, "SUBACK")
        assert list(client.subacks.values()) == [[0x87]]
        assert client.publish(topics.update, {"state": {"reported": {"sample_interval": 60}}}) == 0x87
        assert client.publish(f"sensors/{device.thing}/temperature", b"{}") == 0, "the policy's own topics work"
        assert not client.disconnected.is_set()
    else:
        assert client.disconnected.wait(TIMEOUT), "AWS closes a 3.1.1 connection on a denied SUBSCRIBE"
        assert not client.subacks
        publisher = clients(server, device)
        publisher.paho.publish(topics.update, json.dumps({"state": {"reported": {"sample_interval": 60}}}), qos=1)
        assert publisher.disconnected.wait(TIMEOUT), "AWS closes a 3.1.1 connection on a denied PUBLISH"
    with aws_error("ResourceNotFoundException", 404):
        data.get_thing_shadow(thingName=device.thing)


# --------------------------------------------------------------------------------------
# (b) the reserved topics with paho
# --------------------------------------------------------------------------------------


def test_get_of_a_missing_shadow_is_rejected_404(server, device, clients):
    client, topics = shadow_client(server, device, clients)
    body = rejected(client, topics, "get", b"")
    assert_document(body, {"code": 404, "message": f"No shadow exists with name: '{device.thing}'"}, "get/rejected")
    body = rejected(client, topics, "get", {"clientToken": "get-1"})
    assert_document(
        body, {"code": 404, "message": f"No shadow exists with name: '{device.thing}'", "clientToken": "get-1"}, "get/rejected"
    )
    body = rejected(client, topics, "delete", {"clientToken": "del-1"})
    assert_document(
        body, {"code": 404, "message": f"No shadow exists with name: '{device.thing}'", "clientToken": "del-1"}, "delete/rejected"
    )
    assert client.count(topics.get_accepted) == 0 and client.count(topics.delete_accepted) == 0


def test_update_reported_is_accepted_with_documents_and_no_delta(server, device, clients):
    client, topics = shadow_client(server, device, clients)
    reported = {"temperature": 21, "colors": [1, 2], "engine": {"rpm": 900}}
    body = accepted(client, topics, "update", {"state": {"reported": reported}, "clientToken": "u-1"})
    first = assert_document(
        body,
        {"state": {"reported": reported}, "metadata": {"reported": leaf_meta(reported)}, "version": 1, "timestamp": 0, "clientToken": "u-1"},
        "update/accepted",
    )
    current_1 = {"state": {"reported": reported}, "metadata": {"reported": leaf_meta(reported)}, "version": 1}
    documents = assert_document(
        client.next(topics.update_documents),
        {"previous": None, "current": current_1, "timestamp": 0, "clientToken": "u-1"},
        "update/documents of the creating update",
    )
    assert documents["current"]["metadata"]["reported"]["temperature"]["timestamp"] == first["timestamp"]

    body = accepted(client, topics, "update", {"state": {"reported": {"temperature": 22, "engine": {"on": True}}}})
    assert_document(
        body,
        {
            "state": {"reported": {"temperature": 22, "engine": {"on": True}}},
            "metadata": {"reported": {"temperature": {"timestamp": 0}, "engine": {"on": {"timestamp": 0}}}},
            "version": 2,
            "timestamp": 0,
        },
        "second update/accepted",
    )
    merged = {"temperature": 22, "colors": [1, 2], "engine": {"rpm": 900, "on": True}}
    assert_document(
        client.next(topics.update_documents, 1),
        {
            "previous": current_1,
            "current": {"state": {"reported": merged}, "metadata": {"reported": leaf_meta(merged)}, "version": 2},
            "timestamp": 0,
        },
        "update/documents: previous and current full documents",
    )
    client.nothing_on(topics.update_delta)

    body = accepted(client, topics, "get", {"clientToken": "g-1"})
    assert_document(
        body,
        {"state": {"reported": merged}, "metadata": {"reported": leaf_meta(merged)}, "version": 2, "timestamp": 0, "clientToken": "g-1"},
        "get/accepted",
    )
    assert_document(
        accepted(client, topics, "get", b""),
        {"state": {"reported": merged}, "metadata": {"reported": leaf_meta(merged)}, "version": 2, "timestamp": 0},
        "get/accepted without a token",
    )


def test_delta_holds_every_differing_desired_key_from_mqtt_and_http(server, data, device, clients):
    client, topics = shadow_client(server, device, clients)
    accepted(client, topics, "update", {"state": {"reported": {"a": 1, "b": 1, "c": {"x": 1, "y": 1}, "list": [1, 2]}}})
    client.nothing_on(topics.update_delta, within=0.3)

    accepted(client, topics, "update", {"state": {"desired": {"a": 2}}, "clientToken": "d-1"})
    assert_document(
        client.next(topics.update_delta),
        {"version": 2, "timestamp": 0, "state": {"a": 2}, "metadata": {"a": {"timestamp": 0}}, "clientToken": "d-1"},
        "update/delta after a desired update over MQTT",
    )

    # over HTTP: the delta still carries "a", which this update did not touch
    http_update(data, device.thing, {"state": {"desired": {"c": {"x": 2, "y": 1}, "list": [1, 2], "new": "n"}}, "clientToken": "d-2"})
    assert_document(
        client.next(topics.update_delta, 1),
        {
            "version": 3,
            "timestamp": 0,
            "state": {"a": 2, "c": {"x": 2}, "new": "n"},
            "metadata": {"a": {"timestamp": 0}, "c": {"x": {"timestamp": 0}}, "new": {"timestamp": 0}},
            "clientToken": "d-2",
        },
        "update/delta after a desired update over HTTP (all differing keys, differing leaves only)",
    )
    assert json.loads(client.next(topics.update_documents, 2))["clientToken"] == "d-2", "documents for the HTTP update as well"
    assert json.loads(client.next(topics.update_accepted, 2))["clientToken"] == "d-2"

    # the device catches up on part of it: the delta shrinks
    accepted(client, topics, "update", {"state": {"reported": {"a": 2, "new": "n"}}})
    delta = assert_document(
        client.next(topics.update_delta, 2),
        {"version": 4, "timestamp": 0, "state": {"c": {"x": 2}}, "metadata": {"c": {"x": {"timestamp": 0}}}},
        "update/delta after a partial report",
    )
    get = json.loads(accepted(client, topics, "get", b""))
    assert delta["metadata"]["c"]["x"]["timestamp"] == get["metadata"]["desired"]["c"]["x"]["timestamp"]
    assert get["state"]["delta"] == {"c": {"x": 2}}

    # ... and then on everything: no delta published any more
    accepted(client, topics, "update", {"state": {"reported": {"c": {"x": 2}}}})
    client.nothing_on(topics.update_delta, already=3)
    assert "delta" not in json.loads(accepted(client, topics, "get", b""))["state"]


def test_delete_over_mqtt_keeps_the_version(server, device, clients):
    client, topics = shadow_client(server, device, clients)
    for n in range(3):
        accepted(client, topics, "update", {"state": {"reported": {"n": n}}})
    assert_document(accepted(client, topics, "delete", {"clientToken": "del-1"}), {"version": 3, "timestamp": 0, "clientToken": "del-1"}, "delete/accepted")
    assert_document(
        rejected(client, topics, "get", b""),
        {"code": 404, "message": f"No shadow exists with name: '{device.thing}'"},
        "get/rejected after delete",
    )
    assert_document(
        rejected(client, topics, "delete", {"clientToken": "del-2"}),
        {"code": 404, "message": f"No shadow exists with name: '{device.thing}'", "clientToken": "del-2"},
        "second delete",
    )
    body = json.loads(accepted(client, topics, "update", {"state": {"reported": {"n": 9}}}))
    assert body["version"] == 4
    documents = json.loads(client.next(topics.update_documents, 3))
    assert documents["previous"] is None, "the update re-creates the shadow"
    assert documents["current"]["state"] == {"reported": {"n": 9}} and documents["current"]["version"] == 4
    # an empty delete payload is fine too
    assert_document(accepted(client, topics, "delete", b""), {"version": 4, "timestamp": 0}, "delete/accepted")


def test_client_tokens_are_echoed_everywhere(server, device, clients):
    client, topics = shadow_client(server, device, clients)
    token = "tök-✓-" + "x" * 40  # multi-byte, 54 bytes
    assert json.loads(rejected(client, topics, "get", {"clientToken": token}))["clientToken"] == token
    assert json.loads(accepted(client, topics, "update", {"state": {"desired": {"a": 1}}, "clientToken": token}))["clientToken"] == token
    assert json.loads(client.next(topics.update_delta))["clientToken"] == token
    assert json.loads(client.next(topics.update_documents))["clientToken"] == token
    assert json.loads(accepted(client, topics, "get", {"clientToken": token}))["clientToken"] == token
    body = rejected(client, topics, "update", {"state": {"desired": {"a": 2}}, "version": 7, "clientToken": token})
    assert_document(body, {"code": 409, "message": "Version conflict", "clientToken": token}, "update/rejected")
    assert json.loads(accepted(client, topics, "delete", {"clientToken": token}))["clientToken"] == token
    # tokens over 64 bytes are refused on every operation, and not echoed
    for op, payload in (("get", {"clientToken": "x" * 65}), ("delete", {"clientToken": "é" * 33}),
                        ("update", {"state": {"desired": {"a": 2}}, "clientToken": "x" * 65})):
        assert_document(rejected(client, topics, op, payload), {"code": 400, "message": "Invalid clientToken"}, f"{op}/rejected")
    # no token sent, none echoed
    body = json.loads(accepted(client, topics, "update", {"state": {"desired": {"a": 3}}}))
    assert "clientToken" not in body
    assert "clientToken" not in json.loads(client.next(topics.update_delta, 1))


def test_named_shadows_over_mqtt(server, device, clients):
    client, named = shadow_client(server, device, clients, shadow="config")
    classic = ShadowTopics(device.thing)
    client.subscribe_ok(*classic.responses)

    assert_document(rejected(client, named, "get", {"clientToken": "n0"}), {"code": 404, "message": "No shadow exists with name: 'config'", "clientToken": "n0"}, "named get/rejected")
    desired = {"interval": 30}
    assert_document(
        accepted(client, named, "update", {"state": {"desired": desired}, "clientToken": "n1"}),
        {"state": {"desired": desired}, "metadata": {"desired": leaf_meta(desired)}, "version": 1, "timestamp": 0, "clientToken": "n1"},
        "named update/accepted",
    )
    assert_document(
        client.next(named.update_delta),
        {"version": 1, "timestamp": 0, "state": desired, "metadata": leaf_meta(desired), "clientToken": "n1"},
        "named update/delta",
    )
    assert_document(
        client.next(named.update_documents),
        {"previous": None, "current": {"state": {"desired": desired}, "metadata": {"desired": leaf_meta(desired)}, "version": 1}, "timestamp": 0, "clientToken": "n1"},
        "named update/documents",
    )
    assert json.loads(accepted(client, named, "get", b""))["state"] == {"desired": desired, "delta": desired}
    for topic in classic.responses:
        assert client.count(topic) == 0, f"a named-shadow operation published on {topic}"
    assert_document(rejected(client, classic, "get", b""), {"code": 404, "message": f"No shadow exists with name: '{device.thing}'"}, "classic get")

    assert_document(accepted(client, named, "delete", b""), {"version": 1, "timestamp": 0}, "named delete/accepted")
    assert json.loads(rejected(client, named, "get", b""))["message"] == "No shadow exists with name: 'config'"


INVALID = [
    (b"not json", 400, "Invalid JSON", None),
    (b'{"state": {"reported": {"a": 1}}', 400, "Invalid JSON", None),
    (b'{"clientToken": "r1"}', 400, "Missing required node: state", "r1"),
    (b'{"state": 5, "clientToken": "r2"}', 400, "State node must be an object", "r2"),
    (b'{"state": {"desired": 1}, "clientToken": "r3"}', 400, "Desired node must be an object", "r3"),
    (b'{"state": {"reported": [1]}, "clientToken": "r4"}', 400, "Reported node must be an object", "r4"),
    (b'{"state": {"desired": {"a": 1}}, "version": "x", "clientToken": "r5"}', 400, "Invalid version", "r5"),
    (b'{"state": {"desired": {"a": 1}}, "clientToken": "' + b"x" * 65 + b'"}', 400, "Invalid clientToken", None),
    (b'{"state": {"delta": {"a": 1}}, "clientToken": "r6"}', 400, "State contains an invalid node", "r6"),
    (json.dumps({"state": {"desired": nested(10)}, "clientToken": "r7"}).encode(), 400, "JSON contains too many levels of nesting; maximum is 6", "r7"),
    (json.dumps({"state": {"desired": {"x": "a" * 9000}}, "clientToken": "r8"}).encode(), 413, "The payload exceeds the maximum size allowed", "r8"),
    (b'{"state": {"reported": {"a": 2}}, "version": 5, "clientToken": "r9"}', 409, "Version conflict", "r9"),
    (b'{"state": {"reported": {"a": "\xff"}}}', 415, "Unsupported documented encoding; supported encoding is UTF-8", None),
]


@pytest.mark.parametrize("payload,code,text,token", INVALID, ids=[f"{i}-{c}-{t}" for i, (_, c, t, _) in enumerate(INVALID)])
def test_invalid_updates_are_rejected_with_awss_code_and_message(server, device, clients, payload, code, text, token):
    client, topics = shadow_client(server, device, clients)
    accepted(client, topics, "update", {"state": {"reported": {"a": 1}}})
    expected = {"code": code, "message": text}
    if token is not None:
        expected["clientToken"] = token
    assert_document(rejected(client, topics, "update", payload), expected, "update/rejected")
    assert client.count(topics.update_accepted) == 1 and client.count(topics.update_documents) == 1
    get = json.loads(accepted(client, topics, "get", b""))
    assert get["version"] == 1 and get["state"] == {"reported": {"a": 1}}


def test_requests_for_an_unknown_thing_are_rejected_thing_not_found(server, observer, clients):
    client = clients(server, observer)
    topics = ShadowTopics(unique_thing("ghost"))
    client.subscribe_ok(*topics.responses)
    for op, payload in (("get", {"clientToken": "t1"}), ("update", {"state": {"reported": {"a": 1}}, "clientToken": "t1"}), ("delete", {"clientToken": "t1"})):
        assert_document(rejected(client, topics, op, payload), {"code": 404, "message": "Thing not found", "clientToken": "t1"}, f"{op}/rejected")
    assert_document(rejected(client, topics, "get", b""), {"code": 404, "message": "Thing not found"}, "get/rejected")


def test_a_second_subscriber_receives_the_same_notifications(server, device, observer, clients):
    client, topics = shadow_client(server, device, clients)
    watcher = clients(server, observer)
    watched = [topics.update_accepted, topics.update_delta, topics.update_documents, topics.get_accepted, topics.delete_accepted]
    watcher.subscribe_ok(*watched)

    accepted(client, topics, "update", {"state": {"desired": {"light": "on"}, "reported": {"light": "off"}}, "clientToken": "w1"})
    accepted(client, topics, "get", {"clientToken": "w2"})
    accepted(client, topics, "delete", {"clientToken": "w3"})
    for topic in watched:
        mine = client.next(topic)
        assert watcher.next(topic) == mine, f"{topic}: the watcher got another payload"
    assert json.loads(watcher.next(topics.update_delta))["state"] == {"light": "on"}
    watcher.nothing_on(topics.update_rejected, within=0.2)


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_a_device_cannot_touch_another_things_shadow(iot, server, data, device, tmp_path, clients, v5):
    victim = provision(iot, server, tmp_path)
    http_update(data, victim.thing, {"state": {"reported": {"safe": True}}})
    theirs = ShadowTopics(victim.thing)
    update = json.dumps({"state": {"desired": {"safe": False}}})

    if v5:
        client = clients(server, device, v5=True)
        assert client.subscribe(theirs.update_accepted, theirs.update_delta, ShadowTopics(device.thing).update_accepted) == [0x87, 0x87, 1]
        assert client.publish(theirs.update, update) == 0x87
        assert client.publish(theirs.delete, b"") == 0x87
        assert client.publish(ShadowTopics(victim.thing, "config").update, update) == 0x87
        assert not client.disconnected.is_set()
    else:
        for action in ("publish", "subscribe", "delete", "named"):
            client = clients(server, device)
            if action == "publish":
                client.paho.publish(theirs.update, update, qos=1)
            elif action == "delete":
                client.paho.publish(theirs.delete, b"", qos=1)
            elif action == "named":
                client.paho.publish(ShadowTopics(victim.thing, "config").update, update, qos=1)
            else:
                client.paho.subscribe(theirs.update_accepted, qos=1)
            assert client.disconnected.wait(TIMEOUT), f"3.1.1 connection not closed after a denied {action}"
    document = http_get(data, victim.thing)
    assert document["version"] == 1 and document["state"] == {"reported": {"safe": True}}
    with aws_error("ResourceNotFoundException", 404):
        data.get_thing_shadow(thingName=victim.thing, shadowName="config")


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_a_persistent_session_gets_the_delta_made_while_offline(server, data, device, clients, v5):
    topics = ShadowTopics(device.thing)
    first = clients(server, device, v5=v5, clean_session=False)
    first.subscribe_ok(topics.update_delta, qos=1)
    first.close()
    time.sleep(0.2)  # let the server register the disconnect before the update

    http_update(data, device.thing, {"state": {"desired": {"mode": "eco"}}, "clientToken": "offline"})
    http_update(data, device.thing, {"state": {"reported": {"other": 1}}})  # a second delta, still "mode"

    again = clients(server, device, v5=v5, clean_session=False)
    assert again.session_present == [True]
    delta = {"version": 1, "timestamp": 0, "state": {"mode": "eco"}, "metadata": {"mode": {"timestamp": 0}}, "clientToken": "offline"}
    assert_document(again.next(topics.update_delta), delta, "the queued update/delta")
    assert_document(
        again.next(topics.update_delta, 1),
        {"version": 2, "timestamp": 0, "state": {"mode": "eco"}, "metadata": {"mode": {"timestamp": 0}}},
        "the second queued update/delta",
    )
    assert again.qos[topics.update_delta] == [1, 1]


def test_http_changes_publish_mqtt_notifications_and_http_errors_publish_none(server, data, device, clients):
    client, topics = shadow_client(server, device, clients)
    answer = http_update(data, device.thing, {"state": {"desired": {"x": 1}}, "clientToken": "h1"})
    assert json.loads(client.next(topics.update_accepted)) == json.loads(answer)
    assert json.loads(client.next(topics.update_delta))["state"] == {"x": 1}
    documents = json.loads(client.next(topics.update_documents))
    assert documents["previous"] is None and documents["current"]["version"] == 1 and documents["clientToken"] == "h1"

    with aws_error("InvalidRequestException", 400):
        data.update_thing_shadow(thingName=device.thing, payload=b'{"state": 1}')
    with aws_error("ConflictException", 409):
        data.update_thing_shadow(thingName=device.thing, payload=b'{"state": {"desired": {"x": 2}}, "version": 9}')
    deleted = payload_of(data.delete_thing_shadow(thingName=device.thing))
    assert json.loads(client.next(topics.delete_accepted)) == json.loads(deleted)
    with aws_error("ResourceNotFoundException", 404):
        data.delete_thing_shadow(thingName=device.thing)
    with aws_error("ResourceNotFoundException", 404):
        data.get_thing_shadow(thingName=device.thing)
    client.nothing_on(topics.update_rejected, within=0.3)
    for topic in (topics.delete_rejected, topics.get_rejected, topics.get_accepted):
        assert client.count(topic) == 0, f"an HTTP request published on {topic}"
    assert client.count(topics.update_accepted) == 1 and client.count(topics.delete_accepted) == 1


def test_response_qos_is_capped_by_the_subscription(server, device, clients):
    client = clients(server, device)
    topics = ShadowTopics(device.thing)
    client.subscribe_ok(topics.update_accepted, topics.update_rejected, qos=0)
    client.subscribe_ok(topics.update_documents, topics.update_delta, qos=1)
    client.publish(topics.update, {"state": {"desired": {"q": 1}}})
    client.next(topics.update_accepted)
    client.next(topics.update_documents)
    client.next(topics.update_delta)
    assert client.qos[topics.update_accepted] == [0]
    assert client.qos[topics.update_documents] == [1] and client.qos[topics.update_delta] == [1]


def test_mqtt5_round_trip(server, device, clients):
    client, topics = shadow_client(server, device, clients, v5=True)
    assert json.loads(accepted(client, topics, "update", {"state": {"reported": {"v": 5}}, "clientToken": "five"}))["clientToken"] == "five"
    assert json.loads(accepted(client, topics, "get", b""))["state"] == {"reported": {"v": 5}}
    assert json.loads(rejected(client, topics, "update", b"{}"))["message"] == "Missing required node: state"


# --------------------------------------------------------------------------------------
# (c) extensions, on a server started with a config file
# --------------------------------------------------------------------------------------

EXTENSION_CONFIG = """\
shadow_history_versions = 3
shadow_removal_notifications = true
shadow_max_state_bytes = 16384
shadow_max_depth = 4
"""


@pytest.fixture(scope="module")
def ext_server(tmp_path_factory):
    yield from configured_server(tmp_path_factory, "ext", EXTENSION_CONFIG)


@pytest.fixture
def ext_iot(ext_server):
    return new_client(ext_server, "iot")


@pytest.fixture
def ext_data(ext_server):
    return new_client(ext_server, "iot-data")


def signed_get(server, path: str, query: str = "", service: str = "iotdata", sign: bool = True) -> tuple[int, dict, dict]:
    """A SigV4-signed GET on the API port; returns (status, lower-cased headers, JSON body)."""
    url = f"{server.endpoint}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method="GET", url=url)
    if sign:
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), service, REGION).add_auth(request)
    prepared = urllib.request.Request(url, headers=dict(request.headers.items()), method="GET")
    try:
        with urllib.request.urlopen(prepared, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(response.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(body) if body else {}


def test_history_keeps_the_last_versions_for_operators(ext_server, ext_iot, ext_data, tmp_path, clients):
    device = provision(ext_iot, ext_server, tmp_path)
    client, topics = shadow_client(ext_server, device, clients, shadow="cfg")
    for n in range(1, 6):
        accepted(client, topics, "update", {"state": {"desired": {"n": n}, "reported": {f"r{n}": n}}})
    client.wait(lambda: client.count(topics.update_documents) == 5, "five update/documents")
    snapshots = {json.loads(raw)["current"]["version"]: raw for raw in client.messages[topics.update_documents]}

    for version in (3, 4, 5):
        status, headers, body = signed_get(ext_server, f"/things/{device.thing}/shadow/versions/{version}", "name=cfg")
        assert status == 200, body
        current = json.loads(snapshots[version])["current"]
        assert body == current, f"version {version}: {body} != {current}"
        assert list(body) == ["state", "metadata", "version"]
    for version in (1, 2, 6, 0):
        status, headers, body = signed_get(ext_server, f"/things/{device.thing}/shadow/versions/{version}", "name=cfg")
        assert status == 404, (version, body)
        assert headers.get("x-amzn-errortype", "").split(":")[0] == "ResourceNotFoundException"
        assert body.get("message")
    # the classic shadow has no history; the device gateway's own signing name works too
    status, _, _ = signed_get(ext_server, f"/things/{device.thing}/shadow/versions/5", service="iotdevicegateway")
    assert status == 404
    status, _, body = signed_get(ext_server, f"/things/{device.thing}/shadow/versions/5", "name=cfg", service="iotdevicegateway")
    assert status == 200 and body["version"] == 5
    status, _, body = signed_get(ext_server, f"/things/{unique_thing('ghost')}/shadow/versions/1")
    assert status == 404 and body["message"] == "Thing not found"
    # unsigned requests are refused
    status, _, _ = signed_get(ext_server, f"/things/{device.thing}/shadow/versions/5", "name=cfg", sign=False)
    assert status in (401, 403)
    # the live shadow is unaffected
    assert http_get(ext_data, device.thing, "cfg")["version"] == 5


def test_history_is_off_by_default(server, data, device):
    http_update(data, device.thing, {"state": {"reported": {"a": 1}}})
    status, headers, body = signed_get(server, f"/things/{device.thing}/shadow/versions/1")
    assert status == 400, body
    assert headers.get("x-amzn-errortype", "").split(":")[0] == "InvalidRequestException"


def test_removal_notifications(ext_server, ext_iot, ext_data, tmp_path, clients):
    device = provision(ext_iot, ext_server, tmp_path)
    client, topics = shadow_client(ext_server, device, clients)
    client.subscribe_ok(topics.update_removed)
    accepted(client, topics, "update", {"state": {"desired": {"a": 1, "b": {"c": 1, "d": 2}, "e": 5}}})
    client.nothing_on(topics.update_removed, within=0.3)

    body = json.loads(accepted(client, topics, "update", {"state": {"desired": {"a": None, "b": {"c": None}}}, "clientToken": "rm"}))
    # README: {"version","timestamp","state","metadata","clientToken"?}, removed desired keys as null leaves
    removed = assert_document(
        client.next(topics.update_removed),
        {
            "version": 2,
            "timestamp": 0,
            "state": {"a": None, "b": {"c": None}},
            "metadata": {"a": {"timestamp": 0}, "b": {"c": {"timestamp": 0}}},
            "clientToken": "rm",
        },
        "update/removed (key order as documented in the README)",
    )
    assert removed["metadata"]["a"]["timestamp"] == body["timestamp"]

    # over HTTP, removing the whole section names what was left (a removed object is one null)
    http_update(ext_data, device.thing, {"state": {"desired": None}})
    removed = json.loads(client.next(topics.update_removed, 1))
    assert removed["version"] == 3 and removed["state"] == {"b": None, "e": None}
    assert "clientToken" not in removed
    # reported keys are not "removed desired keys"
    accepted(client, topics, "update", {"state": {"reported": {"x": 1}}})
    accepted(client, topics, "update", {"state": {"reported": {"x": None}}})
    client.nothing_on(topics.update_removed, already=2, within=0.3)


def test_removal_notifications_are_off_by_default(server, device, clients):
    client, topics = shadow_client(server, device, clients)
    client.subscribe_ok(topics.update_removed)
    accepted(client, topics, "update", {"state": {"desired": {"a": 1}}})
    accepted(client, topics, "update", {"state": {"desired": {"a": None}}})
    client.nothing_on(topics.update_removed)


def test_configured_limits(ext_server, ext_iot, ext_data):
    thing = unique_thing()
    ext_iot.create_thing(thingName=thing)
    # shadow_max_state_bytes = 16384
    http_update(ext_data, thing, {"state": {"desired": {"blob": "x" * 12000}}})
    with aws_error("RequestEntityTooLargeException", 413):
        http_update(ext_data, thing, {"state": {"reported": {"blob": "x" * 5000}}})
    # shadow_max_depth = 4: the message stays AWS's text
    http_update(ext_data, thing, {"state": {"reported": nested(4)}})
    with aws_error("InvalidRequestException", 400) as err:
        http_update(ext_data, thing, {"state": {"reported": nested(5)}})
    assert err.value.response["Error"]["Message"] == "JSON contains too many levels of nesting; maximum is 6"
    assert http_get(ext_data, thing)["version"] == 2


# --------------------------------------------------------------------------------------
# (d) many devices at once
# --------------------------------------------------------------------------------------

DEVICES = 10
UPDATES = 20


def test_many_devices_updating_their_shadows_lose_nothing(iot, server, data, tmp_path, clients):
    devices = [provision(iot, server, tmp_path) for _ in range(DEVICES)]
    connected = []
    for device in devices:
        client = clients(server, device)
        topics = ShadowTopics(device.thing)
        client.subscribe_ok(topics.update_accepted, topics.update_rejected, topics.update_documents)
        connected.append((client, topics))
    barrier = threading.Barrier(DEVICES)

    def run(index):
        client, topics = connected[index]
        barrier.wait(timeout=30)
        versions = []
        for n in range(UPDATES):
            body = json.loads(accepted(client, topics, "update", {"state": {"reported": {f"k{n:02d}": n}}, "clientToken": f"{index}-{n}"}))
            assert body["clientToken"] == f"{index}-{n}"
            versions.append(body["version"])
        return versions

    with ThreadPoolExecutor(max_workers=DEVICES) as pool:
        results = list(pool.map(run, range(DEVICES)))
    for (client, topics), device, versions in zip(connected, devices, results):
        assert versions == list(range(1, UPDATES + 1)), f"{device.thing}: {versions}"
        assert client.count(topics.update_rejected) == 0
        client.wait(lambda: client.count(topics.update_documents) == UPDATES, "all documents")
        document = http_get(data, device.thing)
        assert document["version"] == UPDATES
        assert document["state"]["reported"] == {f"k{n:02d}": n for n in range(UPDATES)}
