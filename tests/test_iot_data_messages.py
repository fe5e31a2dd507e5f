"""The iot-data message API (boto3 `iot-data` on the API listener) end to end, against
real MQTT clients on the device listener (paho 3.1.1 and 5 over mutual TLS):

1. Publish: QoS 0/1 to 3.1.1 and 5 subscribers, the MQTT 5 properties (user properties in
   order with repeats, payload format, content type, response topic, correlation data,
   message expiry), retain, reserved and invalid topics.
2. Retained messages: GetRetainedMessage, ListRetainedMessages (nextToken paging and the
   boto3 paginator), deletion by an empty retained payload, retained copies published by
   devices, durability across a restart (last test of the file).
3. DeleteConnection: DISCONNECT 0x98 for MQTT 5, the lifecycle event
   (API_INITIATED_DISCONNECT), the will (preventWillMessage), persistent sessions
   (cleanSession), unknown and `$` client ids.
4. Restricted principals: a second server whose config file gives access keys IAM-style
   policies; allowed calls work, denied ones are ForbiddenException (403).
5. The AWS CLI (v1): publish, list-retained-messages, get-retained-message.

Expected behaviour: AWS IoT Core (the iot-data API reference and the MQTT 5 / lifecycle
event documentation) as restated in notes/issue8_spec.md section 2.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cli_helpers import make_aws_cli, run_json
from conftest import configured_server
from gateway_helpers import TIMEOUT, MqttClient, connected, make_properties
from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY, aws_error
from security_helpers import allow, data_arn, deny, policy_document
from test_gateway_mqtt import Device, everything_allowed, provision

# iot-data error statuses (botocore model of iot-data-2015-05-28)
DATA_STATUS = {
    "InvalidRequestException": 400,
    "UnauthorizedException": 401,
    "ForbiddenException": 403,
    "ResourceNotFoundException": 404,
    "MethodNotAllowedException": 405,
    "RequestEntityTooLargeException": 413,
}

RECENT_MS = 120_000  # lastModifiedTime must be within two minutes of now
SETTLE = 1.0  # how long a negative check ("nothing arrives") waits


def data_error(code: str):
    """`with data_error("ResourceNotFoundException"): ...`: the full AWS error shape
    (code, status, x-amzn-ErrorType, request id, message)."""
    return aws_error(code, DATA_STATUS[code])


def uid() -> str:
    return uuid.uuid4().hex[:12]


def unique_topic(kind: str) -> str:
    return f"iotdata/{kind}/{uid()}"


def assert_recent_ms(value) -> None:
    assert isinstance(value, int) and not isinstance(value, bool), f"lastModifiedTime {value!r} is not an integer"
    now_ms = time.time() * 1000
    assert abs(value - now_ms) < RECENT_MS, f"lastModifiedTime {value} is not epoch milliseconds of now ({now_ms:.0f})"


def json_of(blob) -> object:
    """A botocore blob (bytes) or str holding JSON."""
    return json.loads(blob.decode() if isinstance(blob, (bytes, bytearray)) else blob)


def error_of(err: ClientError) -> tuple[str, int]:
    return err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]


def require_device_listener(srv) -> None:
    if not getattr(srv, "mqtt_port", None):
        pytest.skip("the MQTT port of an external server (FERROCORE_ENDPOINT) is unknown: the MQTT checks did not run")


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture
def data(client_factory):
    return client_factory("iot-data")


@pytest.fixture(scope="module")
def admin_device(server, client_factory, tmp_path_factory) -> Device:
    """One identity allowed everything (iot:*), used with many client ids."""
    require_device_listener(server)
    iot = client_factory("iot")
    device = provision(iot, server, tmp_path_factory.mktemp("iotdata-devices"))
    everything_allowed(iot, device)
    return device


@pytest.fixture
def clients():
    """make(srv, device, client_id, v5=..., ...) -> an MqttClient (not yet connected);
    every client is closed at teardown."""
    made: list[MqttClient] = []

    def make(srv, device: Device, client_id: str | None = None, **kwargs) -> MqttClient:
        client = MqttClient(srv, client_id or f"{device.thing}-{uid()}", device=device, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        try:
            client.close()
        except Exception:
            pass


def subscriber(clients, srv, device, topic: str, v5: bool, qos: int = 1, client_id: str | None = None) -> MqttClient:
    client = connected(clients(srv, device, client_id, v5=v5))
    assert client.subscribe(topic, qos=qos) == [qos], f"SUBACK for {topic}"
    return client


def persistent(clients, srv, device, client_id: str, v5: bool) -> tuple[MqttClient, bool]:
    """Connect `client_id` with a persistent session (3.1.1 cleanSession=0; MQTT 5
    clean_start=0 with SessionExpiryInterval 3600). Returns (client, session_present)."""
    if v5:
        client = clients(srv, device, client_id, v5=True)
        connected(client, clean_start=False, properties=make_properties("CONNECT", SessionExpiryInterval=3600))
    else:
        client = connected(clients(srv, device, client_id, v5=False, clean_session=False))
    return client, client.connacks[0][1]


# --------------------------------------------------------------------------------------
# 1. publish
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("qos", [0, 1], ids=["qos0", "qos1"])
def test_publish_reaches_mqtt311_and_mqtt5_subscribers(server, data, admin_device, clients, qos):
    topic = unique_topic("publish")
    v3 = subscriber(clients, server, admin_device, topic, v5=False)
    v5 = subscriber(clients, server, admin_device, topic, v5=True)
    payload = f'{{"qos": {qos}, "n": "{uid()}"}}'.encode()

    response = data.publish(topic=topic, qos=qos, payload=payload)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200

    for client in (v3, v5):
        (message,) = client.wait_message(topic)
        assert message.payload == payload
        assert message.qos == qos, f"{client.client_id}: delivered at QoS {message.qos}, published at {qos}"
    plain = v5.messages_on(topic)[0].properties
    for absent in ("UserProperty", "CorrelationData", "ResponseTopic", "ContentType", "MessageExpiryInterval"):
        assert absent not in plain, f"a publish without {absent} delivered one: {plain}"
    assert plain.get("PayloadFormatIndicator", 0) == 0
    assert v3.never(lambda: len(v3.messages_on(topic)) > 1, within=0.3), "delivered once"


def test_publish_qos_is_capped_by_the_subscription(server, data, admin_device, clients):
    topic = unique_topic("capped")
    client = subscriber(clients, server, admin_device, topic, v5=True, qos=0)
    data.publish(topic=topic, qos=1, payload=b"capped")
    (message,) = client.wait_message(topic)
    assert (message.payload, message.qos) == (b"capped", 0)


def test_mqtt5_properties_reach_mqtt5_subscribers(server, data, admin_device, clients):
    topic = unique_topic("props")
    v5 = subscriber(clients, server, admin_device, topic, v5=True)
    v3 = subscriber(clients, server, admin_device, topic, v5=False)
    correlation = b"\x00\x01\xfecorr-" + uid().encode()  # not UTF-8: must arrive as raw bytes
    payload = json.dumps({"temperature": 21.5}).encode()

    data.publish(
        topic=topic,
        qos=1,
        payload=payload,
        # boto3 JSON-encodes this header itself (jsonvalue) and base64s it: pass the list,
        # not a JSON string (a string would be sent as a JSON string literal).
        userProperties=[{"a": "1"}, {"b": "2"}, {"a": "3"}],
        payloadFormatIndicator="UTF8_DATA",
        contentType="application/json",
        responseTopic=f"{topic}/reply",
        correlationData=base64.b64encode(correlation).decode(),
        messageExpiry=120,
    )

    (message,) = v5.wait_message(topic)
    props = message.properties
    assert message.payload == payload
    assert props.get("UserProperty") == [("a", "1"), ("b", "2"), ("a", "3")], "order and repeated keys are kept"
    assert props.get("PayloadFormatIndicator") == 1
    assert props.get("ContentType") == "application/json"
    assert props.get("ResponseTopic") == f"{topic}/reply"
    assert props.get("CorrelationData") == correlation, "correlationData is base64 on the API, raw bytes on MQTT"
    expiry = props.get("MessageExpiryInterval")
    assert expiry is not None and 0 < expiry <= 120, f"MessageExpiryInterval {expiry} (remaining seconds of 120)"
    (plain,) = v3.wait_message(topic)
    assert plain.payload == payload, "MQTT 3.1.1 subscribers get the topic and payload"


def test_publish_with_retain_stores_the_message(server, data, admin_device, clients):
    topic = unique_topic("retain")
    data.publish(topic=topic, qos=1, retain=True, payload=b"kept", userProperties=[{"k": "v"}])

    stored = data.get_retained_message(topic=topic)
    assert (stored["topic"], stored["payload"], stored["qos"]) == (topic, b"kept", 1)

    late = subscriber(clients, server, admin_device, topic, v5=True)
    (message,) = late.wait_message(topic)
    assert (message.payload, message.retain) == (b"kept", True), "a new subscriber gets the retained copy"
    assert message.properties.get("UserProperty") == [("k", "v")], "the retained copy keeps its user properties"


@pytest.mark.parametrize(
    "reserved",
    [
        "$aws/events/presence/connected/{id}",
        "$aws/things/{id}/shadow/update/accepted",
        "$aws/anything/else/{id}",
    ],
    ids=["lifecycle-event", "shadow-response", "unknown-reserved"],
)
def test_publishing_to_reserved_topics_is_refused(data, reserved):
    topic = reserved.format(id=f"t-{uid()}")
    with pytest.raises(ClientError) as err:
        data.publish(topic=topic, qos=1, payload=b"{}")
    assert error_of(err.value) in {("ForbiddenException", 403), ("InvalidRequestException", 400)}, (
        f"publish to {topic}: {err.value.response['Error']}"
    )


@pytest.mark.parametrize("topic", ["iotdata/+/x", "iotdata/x/#", "#", "+"], ids=["plus", "hash", "bare-hash", "bare-plus"])
def test_publishing_to_a_wildcard_topic_is_invalid(data, topic):
    with data_error("InvalidRequestException"):
        data.publish(topic=topic, qos=0, payload=b"x")


def test_publish_qos_2_is_invalid(data):
    # The model says qos is 0..1; botocore checks only the minimum, so the server sees qos=2.
    with data_error("InvalidRequestException"):
        data.publish(topic=unique_topic("qos2"), qos=2, payload=b"x")


# --------------------------------------------------------------------------------------
# 2. retained messages
# --------------------------------------------------------------------------------------


def test_get_retained_message_returns_the_stored_message(data):
    topic = unique_topic("get")
    properties = [{"device": "alpha"}, {"unit": "C"}, {"device": "beta"}]
    data.publish(topic=topic, qos=1, retain=True, payload=b'{"t": 21}', userProperties=properties)

    stored = data.get_retained_message(topic=topic)
    assert stored["topic"] == topic
    assert stored["payload"] == b'{"t": 21}'
    assert stored["qos"] == 1
    assert_recent_ms(stored["lastModifiedTime"])
    assert "userProperties" in stored, f"no userProperties in {stored}"
    assert json_of(stored["userProperties"]) == properties, "the JSON list text, order and repeats kept"


def test_get_retained_message_keeps_qos_0(data):
    topic = unique_topic("get0")
    data.publish(topic=topic, qos=0, retain=True, payload=b"zero")
    stored = data.get_retained_message(topic=topic)
    assert (stored["payload"], stored["qos"]) == (b"zero", 0)


def test_a_newer_retained_publish_replaces_the_stored_one(data):
    topic = unique_topic("replace")
    data.publish(topic=topic, qos=0, retain=True, payload=b"first")
    first = data.get_retained_message(topic=topic)["lastModifiedTime"]
    time.sleep(0.05)
    data.publish(topic=topic, qos=1, retain=True, payload=b"second")
    stored = data.get_retained_message(topic=topic)
    assert (stored["payload"], stored["qos"]) == (b"second", 1)
    assert stored["lastModifiedTime"] >= first


def test_get_retained_message_of_an_unknown_topic_is_404(data):
    with data_error("ResourceNotFoundException"):
        data.get_retained_message(topic=unique_topic("missing"))


def test_a_non_retained_publish_stores_nothing(data):
    topic = unique_topic("live")
    data.publish(topic=topic, qos=1, payload=b"live only")
    with data_error("ResourceNotFoundException"):
        data.get_retained_message(topic=topic)


def all_retained(data, page_size: int = 200) -> list[dict]:
    items, token = [], None
    for _ in range(1000):
        page = data.list_retained_messages(maxResults=page_size, **({"nextToken": token} if token else {}))
        items.extend(page.get("retainedTopics", []))
        token = page.get("nextToken")
        if not token:
            return items
    raise AssertionError("ListRetainedMessages paging did not terminate")


def test_an_empty_retained_payload_deletes_the_retained_message(data):
    topic = unique_topic("delete")
    data.publish(topic=topic, qos=1, retain=True, payload=b"soon gone")
    assert data.get_retained_message(topic=topic)["payload"] == b"soon gone"
    assert topic in {item["topic"] for item in all_retained(data)}

    data.publish(topic=topic, qos=1, retain=True, payload=b"")
    with data_error("ResourceNotFoundException"):
        data.get_retained_message(topic=topic)
    assert topic not in {item["topic"] for item in all_retained(data)}


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_retained_messages_published_by_devices_are_readable(server, data, admin_device, clients, v5):
    topic = unique_topic("device")
    device = connected(clients(server, admin_device, v5=v5))
    properties = make_properties("PUBLISH", UserProperty=[("src", "mqtt")]) if v5 else None
    assert device.publish(topic, b'{"on": true}', qos=1, retain=True, properties=properties) == 0, "PUBACK"

    stored = data.get_retained_message(topic=topic)
    assert (stored["topic"], stored["payload"], stored["qos"]) == (topic, b'{"on": true}', 1)
    assert_recent_ms(stored["lastModifiedTime"])
    if v5:
        assert json_of(stored["userProperties"]) == [{"src": "mqtt"}]
    listed = [item for item in all_retained(data) if item["topic"] == topic]
    assert len(listed) == 1 and listed[0]["payloadSize"] == len(b'{"on": true}') and listed[0]["qos"] == 1


def make_retained_set(data, count: int = 7) -> dict[str, tuple[bytes, int]]:
    """`count` retained topics under a fresh prefix, published out of order:
    {topic: (payload, qos)}."""
    prefix = f"iotdata/list/{uid()}"
    expected = {f"{prefix}/t{i}": (b"x" * (10 * i + 1), i % 2) for i in range(count)}
    order = list(expected)
    random.shuffle(order)
    for topic in order:
        payload, qos = expected[topic]
        data.publish(topic=topic, qos=qos, retain=True, payload=payload)
    return expected


def test_list_retained_messages_pages_with_next_token(data):
    expected = make_retained_set(data)
    items, sizes, token = [], [], None
    for _ in range(1000):
        page = data.list_retained_messages(maxResults=3, **({"nextToken": token} if token else {}))
        got = page.get("retainedTopics", [])
        assert len(got) <= 3, f"a page of {len(got)} for maxResults=3"
        items.extend(got)
        sizes.append(len(got))
        token = page.get("nextToken")
        if not token:
            break
    else:
        raise AssertionError("paging did not terminate")
    assert len(sizes) >= 3, f"at least 7 topics in pages of 3 take 3 pages, got pages {sizes}"
    assert all(size == 3 for size in sizes[:-1]), f"only the last page may be short: {sizes}"

    topics = [item["topic"] for item in items]
    assert len(topics) == len(set(topics)), "no topic listed twice across pages"
    assert topics == sorted(topics), "retained topics are listed in topic order"
    mine = {item["topic"]: item for item in items if item["topic"] in expected}
    assert set(mine) == set(expected), f"missing: {set(expected) - set(mine)}"
    for topic, (payload, qos) in expected.items():
        item = mine[topic]
        assert item["payloadSize"] == len(payload), f"{topic}: payloadSize {item['payloadSize']}"
        assert item["qos"] == qos, f"{topic}: qos {item['qos']}"
        assert_recent_ms(item["lastModifiedTime"])
        assert "payload" not in item, "the list carries sizes, not payloads"
    ours = [topic for topic in topics if topic in expected]
    assert ours == sorted(expected)


def test_list_retained_messages_with_the_boto3_paginator(data):
    expected = make_retained_set(data, count=5)
    pages = list(data.get_paginator("list_retained_messages").paginate(PaginationConfig={"PageSize": 2}))
    assert all(len(page.get("retainedTopics", [])) <= 2 for page in pages)
    assert len(pages) >= 3
    listed = {item["topic"]: item for page in pages for item in page.get("retainedTopics", [])}
    assert set(expected) <= set(listed)
    assert {t: (listed[t]["payloadSize"], listed[t]["qos"]) for t in expected} == {
        t: (len(payload), qos) for t, (payload, qos) in expected.items()
    }
    # build_full_result follows the same tokens
    full = data.get_paginator("list_retained_messages").paginate(PaginationConfig={"PageSize": 2}).build_full_result()
    assert set(expected) <= {item["topic"] for item in full["retainedTopics"]}


# --------------------------------------------------------------------------------------
# 3. DeleteConnection
# --------------------------------------------------------------------------------------


@pytest.fixture
def observer(server, admin_device, clients):
    """A client allowed everything that can watch lifecycle events and wills."""
    return connected(clients(server, admin_device, f"observer-{uid()}", v5=False))


def presence_disconnected(client_id: str) -> str:
    return f"$aws/events/presence/disconnected/{client_id}"


def test_delete_connection_sends_mqtt5_clients_disconnect_0x98(server, data, admin_device, clients):
    victim = connected(clients(server, admin_device, f"victim-{uid()}", v5=True))
    response = data.delete_connection(clientId=victim.client_id)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert victim.disconnected.wait(TIMEOUT), "the client is disconnected"
    victim.wait_for(lambda: victim.disconnects, "on_disconnect")
    assert victim.disconnects[0][0] == 0x98, f"DISCONNECT reason {victim.disconnects} (want 0x98 Administrative action)"


def test_delete_connection_closes_mqtt311_connections(server, data, admin_device, clients):
    victim = connected(clients(server, admin_device, f"victim-{uid()}", v5=False))
    data.delete_connection(clientId=victim.client_id)
    assert victim.disconnected.wait(TIMEOUT), "the socket is closed"
    assert not victim.paho.is_connected()


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_delete_connection_publishes_an_api_initiated_disconnected_event(server, data, admin_device, clients, observer, v5):
    victim = connected(clients(server, admin_device, f"victim-{uid()}", v5=v5))
    event_topic = presence_disconnected(victim.client_id)
    assert observer.subscribe(event_topic, qos=1) == [1]

    data.delete_connection(clientId=victim.client_id)

    (message,) = observer.wait_message(event_topic)
    event = json.loads(message.payload)
    assert event["eventType"] == "disconnected"
    assert event["clientId"] == victim.client_id
    assert event["disconnectReason"] == "API_INITIATED_DISCONNECT"
    assert event["clientInitiatedDisconnect"] is False
    assert abs(event["timestamp"] - time.time() * 1000) < RECENT_MS
    assert victim.disconnected.wait(TIMEOUT)


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("prevent", [False, True], ids=["will-published", "will-prevented"])
def test_delete_connection_publishes_the_will_unless_prevented(server, data, admin_device, clients, observer, v5, prevent):
    victim = clients(server, admin_device, f"victim-{uid()}", v5=v5)
    will_topic = unique_topic("will")
    victim.paho.will_set(will_topic, b"gone", qos=1)
    connected(victim)
    event_topic = presence_disconnected(victim.client_id)
    assert observer.subscribe([(will_topic, 1), (event_topic, 1)]) == [1, 1]

    data.delete_connection(clientId=victim.client_id, preventWillMessage=prevent)

    assert victim.disconnected.wait(TIMEOUT)
    if prevent:
        observer.wait_message(event_topic)  # the disconnect is complete
        assert observer.never(lambda: observer.messages_on(will_topic), within=SETTLE), (
            f"preventWillMessage=True still published the will: {observer.messages_on(will_topic)}"
        )
    else:
        (will,) = observer.wait_message(will_topic)
        assert will.payload == b"gone"


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_delete_connection_keeps_a_persistent_session_by_default(server, data, admin_device, clients, v5):
    client_id = f"victim-{uid()}"
    topic = unique_topic("session")
    first, _ = persistent(clients, server, admin_device, client_id, v5)
    assert first.subscribe(topic, qos=1) == [1]

    data.delete_connection(clientId=client_id)  # cleanSession defaults to false
    assert first.disconnected.wait(TIMEOUT)
    time.sleep(0.3)
    data.publish(topic=topic, qos=1, payload=b"while away")

    second, session_present = persistent(clients, server, admin_device, client_id, v5)
    assert session_present is True, "the session survives DeleteConnection without cleanSession"
    (queued,) = second.wait_message(topic)
    assert queued.payload == b"while away", "QoS 1 messages queued for the offline session are delivered"
    data.publish(topic=topic, qos=1, payload=b"after")
    second.wait_message(topic, count=2)
    assert [m.payload for m in second.messages_on(topic)] == [b"while away", b"after"], "the subscription still delivers"


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_delete_connection_with_clean_session_discards_the_session(server, data, admin_device, clients, v5):
    client_id = f"victim-{uid()}"
    topic = unique_topic("clean")
    first, _ = persistent(clients, server, admin_device, client_id, v5)
    assert first.subscribe(topic, qos=1) == [1]

    data.delete_connection(clientId=client_id, cleanSession=True)
    assert first.disconnected.wait(TIMEOUT)
    time.sleep(0.3)
    data.publish(topic=topic, qos=1, payload=b"nobody is subscribed")

    second, session_present = persistent(clients, server, admin_device, client_id, v5)
    assert session_present is False, "cleanSession=True discards the persistent session"
    data.publish(topic=topic, qos=1, payload=b"still nobody")
    assert second.never(lambda: second.messages_on(topic), within=SETTLE), (
        f"the discarded subscription delivered: {second.messages_on(topic)}"
    )


def test_delete_connection_of_an_unknown_client_is_404(data):
    with data_error("ResourceNotFoundException"):
        data.delete_connection(clientId=f"nobody-{uid()}")


def test_delete_connection_of_a_disconnected_client_is_404(server, data, admin_device, clients):
    client = connected(clients(server, admin_device, f"gone-{uid()}"))
    client.close()
    time.sleep(0.3)
    with data_error("ResourceNotFoundException"):
        data.delete_connection(clientId=client.client_id)


def test_delete_connection_of_a_dollar_client_id_is_invalid(data):
    # The model's pattern ^[^$].* is not checked by botocore: the server must refuse it.
    with data_error("InvalidRequestException"):
        data.delete_connection(clientId=f"$reserved-{uid()}")


# --------------------------------------------------------------------------------------
# 4. restricted principals (a second server with [[credentials]] policies)
# --------------------------------------------------------------------------------------

ADMIN_KEY, ADMIN_SECRET = "AKIDFERROADMIN000001", "admin-secret-0001"
RESTRICTED_KEY, RESTRICTED_SECRET = "AKIDFERRORESTRICTED1", "restricted-secret-0001"
RETAINER_KEY, RETAINER_SECRET = "AKIDFERRORETAINER001", "retainer-secret-0001"

RESTRICTED_POLICY = policy_document(
    allow(["iot:Publish", "iot:GetRetainedMessage"], data_arn("topic", "allowed/*")),
    deny("iot:ListRetainedMessages", "*"),
    allow("iot:DeleteConnection", data_arn("client", "victim-*")),
)
# Like RESTRICTED_POLICY for publishing, plus iot:RetainPublish; nothing about listing.
RETAINER_POLICY = policy_document(
    allow(["iot:Publish", "iot:RetainPublish"], data_arn("topic", "allowed/*")),
)


def toml_literal(text: str) -> str:
    assert "'''" not in text
    return f"'''{text}'''"


RESTRICTED_CONFIG = f"""\
[[credentials]]
access_key_id = "{ADMIN_KEY}"
secret_access_key = "{ADMIN_SECRET}"

[[credentials]]
access_key_id = "{RESTRICTED_KEY}"
secret_access_key = "{RESTRICTED_SECRET}"
policy = {toml_literal(RESTRICTED_POLICY)}

[[credentials]]
access_key_id = "{RETAINER_KEY}"
secret_access_key = "{RETAINER_SECRET}"
policy = {toml_literal(RETAINER_POLICY)}
"""


@pytest.fixture(scope="module")
def restricted_server(tmp_path_factory):
    yield from configured_server(tmp_path_factory, "restricted", RESTRICTED_CONFIG)


def client_for(srv, service: str, access_key: str, secret_key: str):
    return boto3.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION).client(
        service,
        endpoint_url=srv.endpoint,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )


@pytest.fixture(scope="module")
def admin_data(restricted_server):
    return client_for(restricted_server, "iot-data", ADMIN_KEY, ADMIN_SECRET)


@pytest.fixture(scope="module")
def restricted_data(restricted_server):
    return client_for(restricted_server, "iot-data", RESTRICTED_KEY, RESTRICTED_SECRET)


@pytest.fixture(scope="module")
def retainer_data(restricted_server):
    return client_for(restricted_server, "iot-data", RETAINER_KEY, RETAINER_SECRET)


@pytest.fixture(scope="module")
def restricted_device(restricted_server, tmp_path_factory) -> Device:
    """A device on the restricted server (provisioned with the admin key), allowed everything."""
    iot = client_for(restricted_server, "iot", ADMIN_KEY, ADMIN_SECRET)
    device = provision(iot, restricted_server, tmp_path_factory.mktemp("restricted-devices"))
    everything_allowed(iot, device)
    return device


def test_restricted_key_publishes_only_where_its_policy_allows(restricted_server, restricted_data, restricted_device, clients):
    allowed, other = f"allowed/{uid()}", f"other/{uid()}"
    watcher = subscriber(clients, restricted_server, restricted_device, "allowed/#", v5=False)
    assert watcher.subscribe(other, qos=1) == [1]

    restricted_data.publish(topic=allowed, qos=1, payload=b"permitted")
    (message,) = watcher.wait_message(allowed)
    assert message.payload == b"permitted"

    with data_error("ForbiddenException"):
        restricted_data.publish(topic=other, qos=1, payload=b"refused")
    assert watcher.never(lambda: watcher.messages_on(other), within=SETTLE / 2), "a refused publish was routed"


def test_restricted_retain_needs_retain_publish(restricted_data, retainer_data, admin_data):
    refused = f"allowed/{uid()}"
    with data_error("ForbiddenException"):
        restricted_data.publish(topic=refused, qos=1, retain=True, payload=b"no RetainPublish")
    with data_error("ResourceNotFoundException"):
        admin_data.get_retained_message(topic=refused)

    kept = f"allowed/{uid()}"
    retainer_data.publish(topic=kept, qos=1, retain=True, payload=b"with RetainPublish")
    assert admin_data.get_retained_message(topic=kept)["payload"] == b"with RetainPublish"
    with data_error("ForbiddenException"):
        retainer_data.publish(topic=f"other/{uid()}", qos=1, retain=True, payload=b"outside the policy")


def test_restricted_get_retained_message(restricted_data, admin_data):
    allowed, other = f"allowed/{uid()}", f"other/{uid()}"
    admin_data.publish(topic=allowed, qos=1, retain=True, payload=b"readable")
    admin_data.publish(topic=other, qos=1, retain=True, payload=b"not for you")

    stored = restricted_data.get_retained_message(topic=allowed)
    assert (stored["topic"], stored["payload"], stored["qos"]) == (allowed, b"readable", 1)
    with data_error("ForbiddenException"):
        restricted_data.get_retained_message(topic=other)
    with data_error("ResourceNotFoundException"):
        restricted_data.get_retained_message(topic=f"allowed/{uid()}")  # allowed, but nothing stored


def test_restricted_list_retained_messages_is_denied(restricted_data, retainer_data, admin_data):
    topic = f"allowed/{uid()}"
    admin_data.publish(topic=topic, qos=0, retain=True, payload=b"listed")
    assert topic in {item["topic"] for item in admin_data.list_retained_messages(maxResults=200)["retainedTopics"]}
    with data_error("ForbiddenException"):
        restricted_data.list_retained_messages()  # explicit Deny
    with data_error("ForbiddenException"):
        retainer_data.list_retained_messages()  # no Allow: implicit deny


def test_restricted_delete_connection(restricted_server, restricted_data, restricted_device, clients):
    victim = connected(clients(restricted_server, restricted_device, f"victim-{uid()}", v5=True))
    bystander = connected(clients(restricted_server, restricted_device, f"bystander-{uid()}", v5=True))

    with data_error("ForbiddenException"):
        restricted_data.delete_connection(clientId=bystander.client_id)
    with data_error("ForbiddenException"):
        restricted_data.delete_connection(clientId=f"bystander-{uid()}")  # denied before existence is looked at
    with data_error("ResourceNotFoundException"):
        restricted_data.delete_connection(clientId=f"victim-{uid()}")  # allowed, but not connected

    restricted_data.delete_connection(clientId=victim.client_id)
    assert victim.disconnected.wait(TIMEOUT), "an allowed DeleteConnection disconnects the client"
    assert not bystander.disconnected.is_set(), "the denied DeleteConnection left the bystander connected"


def test_restricted_key_cannot_use_shadows_without_permission(restricted_data, admin_data):
    thing = f"thing-{uid()}"
    with data_error("ForbiddenException"):
        restricted_data.get_thing_shadow(thingName=thing)
    with data_error("ForbiddenException"):
        restricted_data.update_thing_shadow(thingName=thing, payload=b'{"state":{"reported":{"a":1}}}')


def test_configured_credentials_replace_the_default_keys(restricted_server, admin_data):
    admin_data.publish(topic=f"allowed/{uid()}", qos=0, payload=b"admin works")
    for service, call in [
        ("iot-data", lambda c: c.publish(topic=f"allowed/{uid()}", qos=0, payload=b"x")),
        ("iot-data", lambda c: c.list_retained_messages()),
        ("iot", lambda c: c.list_things()),
    ]:
        default = client_for(restricted_server, service, ACCESS_KEY, SECRET_KEY)
        with pytest.raises(ClientError) as err:
            call(default)
        code, status = error_of(err.value)
        assert code == "UnrecognizedClientException" or status == 403, (
            f"{service} with test/test on a server with [[credentials]]: {code} {status}"
        )


# --------------------------------------------------------------------------------------
# 5. the AWS CLI
# --------------------------------------------------------------------------------------


@pytest.mark.cli
def test_aws_cli_publish_list_and_get_retained_message(server, tmp_path):
    aws = make_aws_cli(server.endpoint, tmp_path)  # skips when the CLI is missing
    topic = unique_topic("cli")
    payload = '{"from": "aws-cli"}'
    publish = ["iot-data", "publish", "--topic", topic, "--qos", "1", "--retain", "--payload", payload]
    # CLI v2 would read a blob argument as base64 without --cli-binary-format raw-in-base64-out;
    # CLI v1 sends it raw and does not know the option ("Unknown options").
    first = aws([*publish, "--cli-binary-format", "raw-in-base64-out"])
    if first.returncode != 0 and "--cli-binary-format" in first.stderr:
        run_json(aws, publish)
    else:
        assert first.returncode == 0, f"aws iot-data publish exited {first.returncode}\n{first.stdout}{first.stderr}"

    listed = run_json(aws, ["iot-data", "list-retained-messages"])
    mine = [item for item in listed["retainedTopics"] if item["topic"] == topic]
    assert len(mine) == 1, f"{topic} not listed"
    assert (mine[0]["payloadSize"], mine[0]["qos"]) == (len(payload.encode()), 1)

    stored = run_json(aws, ["iot-data", "get-retained-message", "--topic", topic])
    assert stored["topic"] == topic and stored["qos"] == 1
    assert base64.b64decode(stored["payload"]) == payload.encode(), "the CLI prints blobs as base64"
    assert_recent_ms(stored["lastModifiedTime"])


# --------------------------------------------------------------------------------------
# 2 (end). durability: last in the file, it restarts the shared server
# --------------------------------------------------------------------------------------


@pytest.mark.restart
def test_retained_messages_survive_a_restart(server, data):
    if not getattr(server, "can_restart", False):
        pytest.skip("the server was not started by the tests (FERROCORE_ENDPOINT): it cannot be restarted")
    kept, deleted = unique_topic("durable"), unique_topic("durable-deleted")
    data.publish(topic=kept, qos=1, retain=True, payload=b"\x00binary\xff", userProperties=[{"k": "1"}, {"k": "2"}])
    data.publish(topic=deleted, qos=0, retain=True, payload=b"soon gone")
    data.publish(topic=deleted, qos=0, retain=True, payload=b"")
    before = data.get_retained_message(topic=kept)

    server.restart()

    after = data.get_retained_message(topic=kept)
    assert (after["topic"], after["payload"], after["qos"]) == (kept, b"\x00binary\xff", 1)
    assert json_of(after["userProperties"]) == [{"k": "1"}, {"k": "2"}]
    assert after["lastModifiedTime"] == before["lastModifiedTime"], "the stored time is kept, not reset by the restart"
    with data_error("ResourceNotFoundException"):
        data.get_retained_message(topic=deleted)
    listed = {item["topic"]: item for item in all_retained(data)}
    assert kept in listed and deleted not in listed
    assert (listed[kept]["payloadSize"], listed[kept]["qos"]) == (len(b"\x00binary\xff"), 1)
