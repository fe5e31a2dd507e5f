"""The device gateway's HTTPS port (server.https_port), end to end:

- HTTPS publish (`POST /topics/<topic>`) authenticated by a client certificate (curl and
  requests) or by SigV4 (boto3 iot-data pointed at the HTTPS port), with the MQTT 5 headers
  and the AWS error answers;
- MQTT over WebSocket (`GET /mqtt?<SigV4 presigned query>`, paho transport="websockets");
- ALPN on the same port: `x-amzn-mqtt-ca` speaks MQTT like 8883, `x-amzn-http-ca` speaks HTTP;
- the transport matrix: a message published over any transport reaches subscribers on
  every other one, and the policies hold on each;
- the lifecycle event of a WebSocket client names its access key.

Everything asserted is AWS IoT Core behaviour (AWS docs: "HTTPS", "MQTT over WebSocket",
"Protocols, port mappings, and authentication", "Publish" in the IoT data plane API).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode

import pytest
import requests
from botocore.exceptions import ClientError

from gateway_helpers import (
    ALPN_HTTP,
    ALPN_MQTT,
    TIMEOUT,
    MqttClient,
    connected,
    iot_data_https,
    make_properties,
    presigned_ws_path,
    require_device_ports,
    require_tool,
    ssl_context,
    ws_upgrade_status,
)
from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY
from security_helpers import allow, data_arn, policy_document
from test_gateway_mqtt import everything_allowed, provision

# The HTTPS and WebSocket transports: the same on any store, so the PostgreSQL pass of
# scripts/test skips this suite.
pytestmark = pytest.mark.store_neutral

MAX_PAYLOAD = 128 * 1024


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _device_ports(server):
    require_device_ports(server)


@pytest.fixture
def open_device(iot, server, tmp_path):
    """A device whose certificate may do everything (walled garden + iot:* on *)."""
    device = provision(iot, server, tmp_path)
    everything_allowed(iot, device)
    return device


@pytest.fixture
def walled_device(iot, server, tmp_path):
    """A device with only the walled-garden policy ($aws/things/<thing>/* topics)."""
    return provision(iot, server, tmp_path)


@pytest.fixture
def limited_device(iot, server, tmp_path):
    """Walled garden plus iot:Publish/iot:Receive on gw/<thing>/* and iot:Subscribe on
    the same filters -- but no iot:RetainPublish anywhere."""
    device = provision(iot, server, tmp_path)
    name = f"{device.thing}-gw"
    iot.create_policy(
        policyName=name,
        policyDocument=policy_document(
            allow(["iot:Publish", "iot:Receive"], data_arn("topic", f"gw/{device.thing}/*")),
            allow(["iot:Subscribe"], data_arn("topicfilter", f"gw/{device.thing}/*")),
        ),
    )
    iot.attach_policy(policyName=name, target=device.cert_arn)
    return device


@pytest.fixture
def clients(server):
    """make(client_id, connect=True, **MqttClient kwargs) -> MqttClient, all closed at teardown."""
    made: list[MqttClient] = []

    def make(client_id: str, connect: bool = True, **kwargs) -> MqttClient:
        client = MqttClient(server, client_id, **kwargs)
        made.append(client)
        if connect:
            connected(client)
        return client

    yield make
    for client in made:
        client.close()


# kinds of MQTT client: how each connects
KINDS = {
    "mqtt311": dict(v5=False),
    "mqtt5": dict(v5=True),
    "websocket311": dict(v5=False, transport="websockets"),
    "websocket5": dict(v5=True, transport="websockets"),
    "alpn311": dict(v5=False, alpn=ALPN_MQTT),
    "alpn5": dict(v5=True, alpn=ALPN_MQTT),
}


def client_of(clients, device, kind: str, client_id: str | None = None, **kwargs) -> MqttClient:
    """A connected client of `kind` using `device`'s certificate (TCP kinds) or its CA and
    the default SigV4 keys (WebSocket kinds)."""
    client_id = client_id or f"{device.thing}-{kind}-{uuid.uuid4().hex[:6]}"
    return clients(client_id, device=device, **{**KINDS[kind], **kwargs})


def new_topic(prefix: str = "gw") -> str:
    return f"{prefix}/{uuid.uuid4().hex}/data"


# --------------------------------------------------------------------------------------
# HTTPS publish with curl and requests
# --------------------------------------------------------------------------------------


class Reply(NamedTuple):
    status: int
    headers: dict  # lower-cased names
    body: bytes

    def json(self):
        return json.loads(self.body)


def topic_path(topic: str, **query) -> str:
    """/topics/<percent-encoded topic, '/' as %2F>?<query>; booleans as true/false."""
    values = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items() if v is not None}
    path = f"/topics/{quote(topic, safe='')}"
    return path + (f"?{urlencode(values, quote_via=quote)}" if values else "")


def https_url(server, path: str) -> str:
    return f"https://127.0.0.1:{server.https_port}{path}"


def post_requests(server, path, payload: bytes, device=None, headers=None, method="POST", with_cert=True) -> Reply:
    cert = (str(device.files / "cert.pem"), str(device.files / "key.pem")) if with_cert else None
    response = requests.request(
        method, https_url(server, path), data=payload, headers=headers or {},
        cert=cert, verify=str(device.files / "ca.pem"), timeout=10,
    )
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)


def post_curl(server, path, payload: bytes, device=None, headers=None, method="POST", with_cert=True, work: Path = None) -> Reply:
    curl = require_tool("curl", "the curl variant of the HTTPS publish test needs it")
    work.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    body_in, body_out, head_out = work / f"in-{tag}", work / f"out-{tag}", work / f"head-{tag}"
    body_in.write_bytes(payload)
    command = [curl, "-sS", "-X", method, "--cacert", str(device.files / "ca.pem"),
               "-o", str(body_out), "-D", str(head_out), "-w", "%{http_code}"]
    if with_cert:
        command += ["--cert", str(device.files / "cert.pem"), "--key", str(device.files / "key.pem")]
    if method == "POST":
        command += ["--data-binary", f"@{body_in}"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(https_url(server, path))
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"curl exited {done.returncode}: {done.stderr}"
    # the last header block (after any 100 Continue)
    blocks = [b for b in head_out.read_text(errors="replace").replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers_out = {}
    for line in blocks[-1].split("\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers_out[name.strip().lower()] = value.strip()
    return Reply(int(done.stdout.strip()), headers_out, body_out.read_bytes() if body_out.exists() else b"")


def https_publish(tool: str, server, device, topic: str, payload: bytes = b"", *, headers=None,
                  work: Path = None, with_cert=True, **query) -> Reply:
    path = topic_path(topic, **query)
    if tool == "curl":
        return post_curl(server, path, payload, device, headers, with_cert=with_cert, work=work)
    return post_requests(server, path, payload, device, headers, with_cert=with_cert)


def assert_ok(reply: Reply) -> None:
    assert reply.status == 200, f"{reply.status} {reply.headers} {reply.body[:500]!r}"
    body = reply.json()
    assert set(body) == {"message", "traceId"} and body["message"] == "OK", body
    uuid.UUID(body["traceId"])


def assert_error(reply: Reply, status: int, code: str) -> None:
    summary = f"{reply.status} {reply.headers} {reply.body[:500]!r}"
    assert reply.status == status, summary
    assert reply.headers.get("x-amzn-errortype", "").split(":")[0] == code, summary
    body = reply.json()
    assert isinstance(body.get("message"), str) and body["message"], summary
    assert body.get("traceId"), summary


TOOLS = ["curl", "requests"]


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@pytest.mark.parametrize("tool", TOOLS)
def test_https_publish_reaches_mqtt311_and_mqtt5_subscribers(server, open_device, clients, tool, tmp_path):
    topic = new_topic()
    v3 = client_of(clients, open_device, "mqtt311")
    v5 = client_of(clients, open_device, "mqtt5")
    assert v3.subscribe(topic, qos=1) == [1]
    assert v5.subscribe(topic, qos=1) == [1]
    payload = json.dumps({"via": tool, "n": 1}).encode()
    assert_ok(https_publish(tool, server, open_device, topic, payload, work=tmp_path))
    for subscriber in (v3, v5):
        (message,) = subscriber.wait_message(topic)
        assert message.payload == payload
        assert message.qos == 0, "qos defaults to 0"
        assert message.retain is False
    # the HTTP Content-Type (curl sends application/x-www-form-urlencoded) is not the MQTT
    # content type: only the contentType query parameter sets that
    assert "ContentType" not in v5.messages_on(topic)[0].properties


@pytest.mark.parametrize("tool", TOOLS)
def test_https_publish_qos1_is_delivered_at_the_subscription_qos(server, open_device, clients, tool, tmp_path):
    topic = new_topic()
    at1 = client_of(clients, open_device, "mqtt311")
    at0 = client_of(clients, open_device, "mqtt5")
    assert at1.subscribe(topic, qos=1) == [1]
    assert at0.subscribe(topic, qos=0) == [0]
    assert_ok(https_publish(tool, server, open_device, topic, b"qos one", work=tmp_path, qos=1))
    assert_ok(https_publish(tool, server, open_device, topic, b"qos zero", work=tmp_path, qos=0))
    got1 = {m.payload: m.qos for m in at1.wait_message(topic, 2)}
    got0 = {m.payload: m.qos for m in at0.wait_message(topic, 2)}
    assert got1 == {b"qos one": 1, b"qos zero": 0}
    assert got0 == {b"qos one": 0, b"qos zero": 0}, "capped by the subscription"


@pytest.mark.parametrize("tool", TOOLS)
def test_https_retained_publish_is_stored_and_an_empty_payload_deletes_it(server, open_device, clients, tool, tmp_path):
    topic = new_topic("retained")
    live = client_of(clients, open_device, "mqtt311")
    assert live.subscribe(topic, qos=1) == [1]
    assert_ok(https_publish(tool, server, open_device, topic, b'{"on": true}', work=tmp_path, qos=1, retain=True))
    live.wait_message(topic)

    later = client_of(clients, open_device, "mqtt5")
    assert later.subscribe(topic, qos=1) == [1]
    (copy,) = later.wait_message(topic)
    assert copy.payload == b'{"on": true}'
    assert copy.retain is True, "a retained copy carries the retain flag"
    assert copy.qos == 1

    # the 200 answers after the retained copy was deleted (whether live subscribers also get
    # the empty message is not asserted here)
    assert_ok(https_publish(tool, server, open_device, topic, b"", work=tmp_path, qos=1, retain=True))
    afterwards = client_of(clients, open_device, "mqtt311")
    assert afterwards.subscribe(topic, qos=1) == [1]
    assert afterwards.never(lambda: afterwards.messages, within=1.0), afterwards.messages


@pytest.mark.parametrize("tool", TOOLS)
def test_https_mqtt5_headers_arrive_as_properties(server, open_device, clients, tool, tmp_path):
    topic = new_topic()
    v5 = client_of(clients, open_device, "mqtt5")
    v3 = client_of(clients, open_device, "mqtt311")
    assert v5.subscribe(topic, qos=1) == [1] and v3.subscribe(topic, qos=1) == [1]
    user_properties = [{"a": "1"}, {"b": "two"}, {"a": "2"}, {"unit": "°C"}]
    correlation = b"\x00\x01corr\xff"
    reply = https_publish(
        tool, server, open_device, topic, "21.5 °C".encode(), work=tmp_path,
        headers={
            "x-amz-mqtt5-user-properties": b64(json.dumps(user_properties)),
            "x-amz-mqtt5-payload-format-indicator": "UTF8_DATA",
            "x-amz-mqtt5-correlation-data": b64(correlation),
        },
        qos=1, contentType="text/plain; charset=utf-8", responseTopic=f"{topic}/reply", messageExpiry=120,
    )
    assert_ok(reply)
    (message,) = v5.wait_message(topic)
    assert message.payload == "21.5 °C".encode()
    props = message.properties
    assert props.get("UserProperty") == [("a", "1"), ("b", "two"), ("a", "2"), ("unit", "°C")], props
    assert props.get("ContentType") == "text/plain; charset=utf-8", props
    assert props.get("PayloadFormatIndicator") == 1, props
    assert props.get("ResponseTopic") == f"{topic}/reply", props
    assert props.get("CorrelationData") == correlation, props
    assert 0 < props.get("MessageExpiryInterval", 0) <= 120, props
    (plain,) = v3.wait_message(topic)
    assert plain.payload == "21.5 °C".encode() and plain.properties == {}


@pytest.mark.parametrize("tool", TOOLS)
def test_https_percent_encoded_topic_with_slashes(server, open_device, clients, tool, tmp_path):
    base = uuid.uuid4().hex
    topic = f"gw/{base}/a b/c"
    subscriber = client_of(clients, open_device, "mqtt311")
    assert subscriber.subscribe(topic, qos=1) == [1]
    # written out by hand: every '/' of the topic is %2F, the space %20
    path = f"/topics/gw%2F{base}%2Fa%20b%2Fc?qos=1"
    if tool == "curl":
        reply = post_curl(server, path, b"encoded", open_device, work=tmp_path)
    else:
        reply = post_requests(server, path, b"encoded", open_device)
    assert_ok(reply)
    (message,) = subscriber.wait_message(topic)
    assert message.payload == b"encoded"


@pytest.mark.parametrize("tool", TOOLS)
def test_https_publish_outside_the_policy_is_forbidden(server, walled_device, open_device, clients, tool, tmp_path):
    topic = new_topic()
    watcher = client_of(clients, open_device, "mqtt311")
    assert watcher.subscribe(topic, qos=1) == [1]
    assert_error(https_publish(tool, server, walled_device, topic, b"nope", work=tmp_path, qos=1), 403, "ForbiddenException")
    assert watcher.never(lambda: watcher.messages, within=1.0), watcher.messages


@pytest.mark.parametrize("tool", TOOLS)
def test_https_retain_needs_retain_publish(server, limited_device, clients, tool, tmp_path):
    topic = f"gw/{limited_device.thing}/state"
    assert_error(
        https_publish(tool, server, limited_device, topic, b"kept?", work=tmp_path, qos=1, retain=True),
        403, "ForbiddenException",
    )
    # the same publish without retain is allowed (iot:Publish is granted)
    watcher = clients(limited_device.thing, device=limited_device)
    assert watcher.subscribe(topic, qos=1) == [1]
    assert_ok(https_publish(tool, server, limited_device, topic, b"live", work=tmp_path, qos=1, retain=False))
    assert [m.payload for m in watcher.wait_message(topic)] == [b"live"]
    assert_error(
        https_publish(tool, server, limited_device, f"gw/not-{limited_device.thing}/state", b"x", work=tmp_path),
        403, "ForbiddenException",
    )


INVALID_REQUESTS = {
    "qos 2": ({"qos": 2}, {}, None),
    "qos text": ({"qos": "one"}, {}, None),
    "plus wildcard": ({}, {}, "gw/+/data"),
    "hash wildcard": ({}, {}, "gw/x/#"),
    "empty topic": ({}, {}, ""),
    "user properties not base64": ({}, {"x-amz-mqtt5-user-properties": "%%% not base64 %%%"}, None),
    "user properties not JSON": ({}, {"x-amz-mqtt5-user-properties": b64("not json")}, None),
    "payload format unknown": ({}, {"x-amz-mqtt5-payload-format-indicator": "TEXT"}, None),
    "correlation data not base64": ({}, {"x-amz-mqtt5-correlation-data": "*** not base64 ***"}, None),
    "message expiry zero": ({"messageExpiry": "0"}, {}, None),
    "message expiry negative": ({"messageExpiry": "-5"}, {}, None),
    "message expiry text": ({"messageExpiry": "soon"}, {}, None),
}


@pytest.mark.parametrize("case", list(INVALID_REQUESTS))
@pytest.mark.parametrize("tool", TOOLS)
def test_https_invalid_requests(server, open_device, tool, case, tmp_path):
    query, headers, topic = INVALID_REQUESTS[case]
    topic = new_topic() if topic is None else topic
    reply = https_publish(tool, server, open_device, topic, b"x", headers=headers, work=tmp_path, **query)
    assert_error(reply, 400, "InvalidRequestException")


@pytest.mark.parametrize("tool", TOOLS)
def test_https_publish_without_certificate_or_signature_is_unauthorized(server, open_device, tool, tmp_path):
    reply = https_publish(tool, server, open_device, new_topic(), b"anonymous", work=tmp_path, with_cert=False)
    assert_error(reply, 401, "UnauthorizedException")


@pytest.mark.parametrize("tool", TOOLS)
def test_https_payload_limit_is_128_kib(server, open_device, clients, tool, tmp_path):
    topic = new_topic()
    subscriber = client_of(clients, open_device, "mqtt5")
    assert subscriber.subscribe(topic, qos=1) == [1]
    assert_error(
        https_publish(tool, server, open_device, topic, b"x" * (MAX_PAYLOAD + 1), work=tmp_path),
        413, "RequestEntityTooLargeException",
    )
    assert_ok(https_publish(tool, server, open_device, topic, b"y" * MAX_PAYLOAD, work=tmp_path))
    (message,) = subscriber.wait_message(topic)
    assert message.payload == b"y" * MAX_PAYLOAD


@pytest.mark.parametrize("tool", TOOLS)
def test_https_unknown_paths_and_methods(server, open_device, tool, tmp_path):
    post = (lambda path, method="POST": post_curl(server, path, b"x", open_device, method=method, work=tmp_path)) \
        if tool == "curl" else (lambda path, method="POST": post_requests(server, path, b"x", open_device, method=method))
    assert post("/nothing/here").status == 404
    assert post("/topic/singular").status == 404
    assert post(topic_path(new_topic()), method="GET").status == 405
    assert post(topic_path(new_topic()), method="PUT").status == 405


# --------------------------------------------------------------------------------------
# SigV4-signed HTTPS publish
# --------------------------------------------------------------------------------------


def test_sigv4_https_publish_with_boto3_iot_data(server, open_device, clients):
    topic = new_topic()
    v3 = client_of(clients, open_device, "mqtt311")
    v5 = client_of(clients, open_device, "mqtt5")
    assert v3.subscribe(topic, qos=1) == [1] and v5.subscribe(topic, qos=1) == [1]
    data = iot_data_https(server, open_device.files / "ca.pem")
    response = data.publish(
        topic=topic, qos=1, payload=b'{"signed": true}',
        userProperties=json.dumps([{"k": "v"}, {"k": "w"}]),
        payloadFormatIndicator="UTF8_DATA", contentType="application/json",
        responseTopic=f"{topic}/reply", correlationData=b64(b"corr-1"),
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    (plain,) = v3.wait_message(topic)
    assert plain.payload == b'{"signed": true}' and plain.qos == 1
    (rich,) = v5.wait_message(topic)
    assert rich.payload == b'{"signed": true}'
    assert rich.properties.get("UserProperty") == [("k", "v"), ("k", "w")], rich.properties
    assert rich.properties.get("ContentType") == "application/json"
    assert rich.properties.get("PayloadFormatIndicator") == 1
    assert rich.properties.get("ResponseTopic") == f"{topic}/reply"
    assert rich.properties.get("CorrelationData") == b"corr-1"


def test_sigv4_https_retained_publish_with_boto3_iot_data(server, open_device, clients):
    topic = new_topic("retained")
    data = iot_data_https(server, open_device.files / "ca.pem")
    data.publish(topic=topic, qos=1, retain=True, payload=b"signed and kept")
    later = client_of(clients, open_device, "mqtt311")
    assert later.subscribe(topic, qos=1) == [1]
    (copy,) = later.wait_message(topic)
    assert copy.payload == b"signed and kept" and copy.retain is True


def test_sigv4_https_publish_with_a_wrong_secret_is_refused(server, open_device, clients):
    topic = new_topic()
    watcher = client_of(clients, open_device, "mqtt311")
    assert watcher.subscribe(topic, qos=1) == [1]
    data = iot_data_https(server, open_device.files / "ca.pem", secret_key="not-the-secret")
    with pytest.raises(ClientError) as excinfo:
        data.publish(topic=topic, qos=1, payload=b"forged")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert watcher.never(lambda: watcher.messages, within=1.0)


@pytest.mark.parametrize("service", ["iotdevicegateway", "iotdata"])
def test_sigv4_https_publish_signed_by_hand(server, open_device, clients, service):
    """A SigV4 Authorization header made with botocore's signer for either service name."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    topic = new_topic()
    watcher = client_of(clients, open_device, "mqtt311")
    assert watcher.subscribe(topic, qos=1) == [1]
    url = https_url(server, topic_path(topic, qos=1))
    request = AWSRequest(method="POST", url=url, data=b"hand signed")
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), service, REGION).add_auth(request)
    response = requests.post(url, data=b"hand signed", headers=dict(request.headers),
                             verify=str(open_device.files / "ca.pem"), timeout=10)
    assert_ok(Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content))
    assert [m.payload for m in watcher.wait_message(topic)] == [b"hand signed"]


# --------------------------------------------------------------------------------------
# MQTT over WebSocket
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["iotdevicegateway", "iotdata"])
@pytest.mark.parametrize("kind", ["websocket311", "websocket5"])
def test_websocket_client_publishes_and_subscribes(server, open_device, clients, kind, service):
    topic = new_topic("ws")
    ws = client_of(clients, open_device, kind, service=service)
    other = client_of(clients, open_device, "mqtt311")
    assert ws.subscribe(topic, qos=1) == [1]
    assert other.subscribe(topic, qos=1) == [1]
    assert ws.publish(topic, b"from the websocket", qos=1) == 0
    assert [m.payload for m in ws.wait_message(topic)] == [b"from the websocket"]
    assert [m.payload for m in other.wait_message(topic)] == [b"from the websocket"]
    assert other.publish(topic, b"from 8883", qos=1) == 0
    ws.wait_message(topic, 2)
    assert {m.payload for m in ws.messages_on(topic)} == {b"from the websocket", b"from 8883"}


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_websocket_signature_covers_the_host_as_sent(server, open_device, clients, host):
    topic = new_topic("ws")
    ws = client_of(clients, open_device, "websocket5", host=host)
    assert ws.subscribe(topic, qos=1) == [1]
    assert ws.publish(topic, b"hello", qos=1) == 0
    ws.wait_message(topic)


@pytest.mark.parametrize("signed", [False, True], ids=["token-appended", "token-signed"])
def test_websocket_with_security_token(server, open_device, clients, signed):
    ws = client_of(clients, open_device, "websocket311", token="FwoGZXIvYXdzEXAMPLE/+=token", token_signed=signed)
    topic = new_topic("ws")
    assert ws.subscribe(topic, qos=1) == [1]
    assert ws.publish(topic, b"with a token", qos=1) == 0
    ws.wait_message(topic)


def test_websocket_raw_upgrade_with_a_valid_signature_switches_protocols(server, open_device):
    host = f"localhost:{server.https_port}"
    status, headers = ws_upgrade_status("localhost", server.https_port, presigned_ws_path(host), open_device.files / "ca.pem")
    assert status == 101, headers
    assert headers.get("upgrade", "").lower() == "websocket"
    assert headers.get("sec-websocket-protocol") == "mqtt"


def refused_paths(port: int) -> dict[str, str]:
    host = f"localhost:{port}"
    return {
        "bad signature": presigned_ws_path(host, secret_key="not-the-secret"),
        "expired": presigned_ws_path(host, expires=60, when=datetime.now(timezone.utc) - timedelta(hours=1)),
        "unknown access key": presigned_ws_path(host, access_key="AKIDUNKNOWN0000000000", secret_key="whatever"),
        "signed for another host": presigned_ws_path(f"example.com:{port}"),
        "no signature": "/mqtt",
    }


@pytest.mark.parametrize("case", ["bad signature", "expired", "unknown access key", "signed for another host", "no signature"])
def test_websocket_refused_without_a_valid_presigned_url(server, open_device, clients, case):
    path = refused_paths(server.https_port)[case]
    status, headers = ws_upgrade_status("localhost", server.https_port, path, open_device.files / "ca.pem")
    assert status == 403, f"{case}: {status} {headers}"
    ws = clients(f"ws-refused-{uuid.uuid4().hex[:8]}", connect=False, device=open_device,
                 transport="websockets", ws_path=path)
    assert ws.connect() is None, f"{case}: the MQTT connection must not be established"


def test_websocket_tampered_signature_is_refused(server, open_device):
    path = presigned_ws_path(f"localhost:{server.https_port}")
    signature = path[-64:]
    tampered = path[:-64] + ("0" if signature[0] != "0" else "1") + signature[1:]
    status, _ = ws_upgrade_status("localhost", server.https_port, tampered, open_device.files / "ca.pem")
    assert status == 403


# --------------------------------------------------------------------------------------
# ALPN on the HTTPS port
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [ALPN_MQTT, ALPN_HTTP])
def test_openssl_s_client_negotiates_alpn(server, open_device, protocol):
    openssl = require_tool("openssl", "the ALPN check uses openssl s_client")
    files = open_device.files
    done = subprocess.run(
        [openssl, "s_client", "-alpn", protocol,
         "-cert", str(files / "cert.pem"), "-key", str(files / "key.pem"), "-CAfile", str(files / "ca.pem"),
         "-connect", f"127.0.0.1:{server.https_port}"],
        input="", capture_output=True, text=True, timeout=30,
    )
    assert f"ALPN protocol: {protocol}" in done.stdout, done.stdout + done.stderr
    assert "Verify return code: 0 (ok)" in done.stdout, done.stdout


@pytest.mark.parametrize("kind", ["alpn311", "alpn5"])
def test_alpn_mqtt_client_on_the_https_port(server, open_device, clients, kind):
    topic = new_topic("alpn")
    alpn = client_of(clients, open_device, kind)
    assert alpn.paho.socket().selected_alpn_protocol() == ALPN_MQTT
    other = client_of(clients, open_device, "mqtt5")
    assert alpn.subscribe(topic, qos=1) == [1] and other.subscribe(topic, qos=1) == [1]
    assert alpn.publish(topic, b"over 443", qos=1) == 0
    assert [m.payload for m in alpn.wait_message(topic)] == [b"over 443"]
    assert [m.payload for m in other.wait_message(topic)] == [b"over 443"]
    assert other.publish(topic, b"from 8883", qos=1) == 0
    alpn.wait_message(topic, 2)
    assert {m.payload for m in alpn.messages_on(topic)} == {b"over 443", b"from 8883"}


def test_alpn_http_publish_with_http_client(server, open_device, clients):
    topic = new_topic("alpn")
    subscriber = client_of(clients, open_device, "mqtt311")
    assert subscriber.subscribe(topic, qos=1) == [1]
    files = open_device.files
    context = ssl_context(files / "ca.pem", files / "cert.pem", files / "key.pem", alpn=ALPN_HTTP)
    connection = http.client.HTTPSConnection("127.0.0.1", server.https_port, context=context, timeout=TIMEOUT)
    try:
        connection.request("POST", topic_path(topic, qos=1), body=b"over x-amzn-http-ca")
        response = connection.getresponse()
        assert connection.sock.selected_alpn_protocol() == ALPN_HTTP
        assert_ok(Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()))
    finally:
        connection.close()
    assert [m.payload for m in subscriber.wait_message(topic)] == [b"over x-amzn-http-ca"]


def mqtt311_connect_packet(client_id: str) -> bytes:
    body = len(b"MQTT").to_bytes(2, "big") + b"MQTT" + bytes([4, 2, 0, 60]) + len(client_id).to_bytes(2, "big") + client_id.encode()
    return bytes([0x10, len(body)]) + body


def alpn_mqtt_probe(server, context: ssl.SSLContext, client_id: str) -> bytes | None:
    """Open a TLS connection with `context` to the HTTPS port, send an MQTT 3.1.1 CONNECT,
    return the first bytes answered (b"" when closed), or None when TLS failed."""
    with socket.create_connection(("localhost", server.https_port), timeout=TIMEOUT) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(mqtt311_connect_packet(client_id))
                return tls.recv(4)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return None
        except socket.timeout:
            pytest.fail("the server neither answered nor closed the connection")


def test_alpn_mqtt_needs_a_client_certificate(server, open_device, clients):
    files = open_device.files
    with_cert = ssl_context(files / "ca.pem", files / "cert.pem", files / "key.pem", alpn=ALPN_MQTT)
    answer = alpn_mqtt_probe(server, with_cert, f"{open_device.thing}-probe")
    assert answer == bytes([0x20, 0x02, 0x00, 0x00]), f"CONNACK accepted with a certificate: {answer!r}"

    without = ssl_context(files / "ca.pem", alpn=ALPN_MQTT)
    answer = alpn_mqtt_probe(server, without, f"{open_device.thing}-anonymous")
    assert not answer, f"no CONNACK without a client certificate: {answer!r}"

    paho = clients(f"{open_device.thing}-nocert", connect=False, device=open_device, alpn=ALPN_MQTT, use_client_cert=False)
    assert paho.connect() is None, "paho gets no CONNACK either"


# --------------------------------------------------------------------------------------
# the transport matrix
# --------------------------------------------------------------------------------------

SUBSCRIBER_KINDS = ["mqtt311", "mqtt5", "websocket311", "websocket5", "alpn311", "alpn5"]
PUBLISHERS = ["https-cert", "https-sigv4", "iot-data-api", *SUBSCRIBER_KINDS]


def publish_via(publisher: str, *, server, device, clients, client_factory, topic: str, payload: bytes) -> bool:
    """Publish `payload` at QoS 1 to `topic` over `publisher`. Returns whether the message
    carries the user property ("via", publisher) (every publisher but MQTT 3.1.1 ones)."""
    via = json.dumps([{"via": publisher}])
    if publisher == "https-cert":
        reply = post_requests(server, topic_path(topic, qos=1), payload, device,
                              headers={"x-amz-mqtt5-user-properties": b64(via)})
        assert_ok(reply)
        return True
    if publisher == "https-sigv4":
        iot_data_https(server, device.files / "ca.pem").publish(topic=topic, qos=1, payload=payload, userProperties=via)
        return True
    if publisher == "iot-data-api":
        client_factory("iot-data").publish(topic=topic, qos=1, payload=payload, userProperties=via)
        return True
    client = client_of(clients, device, publisher)
    properties = make_properties(UserProperty=[("via", publisher)]) if client.v5 else None
    assert client.publish(topic, payload, qos=1, properties=properties) == 0
    return client.v5


@pytest.mark.parametrize("publisher", PUBLISHERS)
def test_matrix_every_transport_reaches_every_subscriber(server, open_device, clients, client_factory, publisher):
    topic = f"matrix/{uuid.uuid4().hex}/{publisher}"
    subscribers = {kind: client_of(clients, open_device, kind) for kind in SUBSCRIBER_KINDS}
    for kind, subscriber in subscribers.items():
        assert subscriber.subscribe(topic, qos=1) == [1], kind
    payload = f"from {publisher} {uuid.uuid4().hex}".encode()
    has_property = publish_via(publisher, server=server, device=open_device, clients=clients,
                               client_factory=client_factory, topic=topic, payload=payload)
    for kind, subscriber in subscribers.items():
        (message,) = subscriber.wait_message(topic)
        assert message.payload == payload, kind
        assert message.qos == 1, kind
        if subscriber.v5 and has_property:
            assert message.properties.get("UserProperty") == [("via", publisher)], (kind, message.properties)


def test_policy_denies_https_publish(server, walled_device, open_device, clients):
    topic = new_topic()
    watcher = client_of(clients, open_device, "mqtt311")
    assert watcher.subscribe(topic, qos=1) == [1]
    assert_error(post_requests(server, topic_path(topic, qos=1), b"denied", walled_device), 403, "ForbiddenException")
    own = f"$aws/things/{walled_device.thing}/shadow/get"
    assert_ok(post_requests(server, topic_path(own, qos=1), b"", walled_device))  # what the policy allows
    assert watcher.never(lambda: watcher.messages, within=1.0), watcher.messages


def test_policy_denies_alpn_mqtt5_publish_with_puback_0x87(server, walled_device, open_device, clients):
    topic = new_topic()
    watcher = client_of(clients, open_device, "mqtt311")
    assert watcher.subscribe(topic, qos=1) == [1]
    device_client = clients(walled_device.thing, device=walled_device, v5=True, alpn=ALPN_MQTT)
    assert device_client.publish(topic, b"denied", qos=1) == 0x87
    assert not device_client.disconnected.is_set(), "MQTT 5 keeps the connection"
    assert watcher.never(lambda: watcher.messages, within=1.0), watcher.messages


def test_policy_denies_alpn_mqtt311_publish_with_a_disconnect(server, walled_device, open_device, clients):
    topic = new_topic()
    watcher = client_of(clients, open_device, "mqtt311")
    assert watcher.subscribe(topic, qos=1) == [1]
    device_client = clients(walled_device.thing, device=walled_device, v5=False, alpn=ALPN_MQTT)
    device_client.publish(topic, b"denied", qos=1, wait=False)
    assert device_client.disconnected.wait(TIMEOUT), "AWS closes 3.1.1 connections on an unauthorized publish"
    assert watcher.never(lambda: watcher.messages, within=1.0), watcher.messages


def test_policy_refuses_alpn_connect_as_another_client_id(server, walled_device, clients):
    device_client = clients(f"not-{walled_device.thing}", connect=False, device=walled_device, v5=True, alpn=ALPN_MQTT)
    rc = device_client.connect()
    assert rc is None or rc == 0x87, f"CONNACK {rc}"


# --------------------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------------------


def test_websocket_presence_events_name_the_access_key(server, open_device, clients):
    ws_id = f"ws-{uuid.uuid4().hex[:12]}"
    monitor = client_of(clients, open_device, "mqtt311")
    assert monitor.subscribe(f"$aws/events/presence/+/{ws_id}", qos=1) == [1]
    ws = client_of(clients, open_device, "websocket311", client_id=ws_id)
    connected_topic = f"$aws/events/presence/connected/{ws_id}"
    (event,) = monitor.wait_message(connected_topic)
    connected_event = json.loads(event.payload)
    assert connected_event["eventType"] == "connected"
    assert connected_event["clientId"] == ws_id
    assert connected_event["principalIdentifier"] == ACCESS_KEY
    ws.close()
    (event,) = monitor.wait_message(f"$aws/events/presence/disconnected/{ws_id}")
    disconnected_event = json.loads(event.payload)
    assert disconnected_event["principalIdentifier"] == ACCESS_KEY
    assert disconnected_event["clientInitiatedDisconnect"] is True
    assert disconnected_event["sessionIdentifier"] == connected_event["sessionIdentifier"]
