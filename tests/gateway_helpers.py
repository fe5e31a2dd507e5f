"""Shared helpers for the device-gateway suites (HTTPS publish, MQTT over WebSocket, ALPN
on the HTTPS port, MQTT 5 features, the iot-data API).

- `presigned_ws_path(...)`: the SigV4 presigned `/mqtt?...` path AWS IoT expects for MQTT over
  WebSocket (AWS docs, "Signing AWS API requests" / "MQTT over the WebSocket protocol").
- `MqttClient`: a paho-mqtt 2.x client (MQTT 3.1.1 or 5; TCP+TLS on 8883, TCP+TLS with ALPN
  `x-amzn-mqtt-ca` on the HTTPS port, or WebSocket with a presigned URL) that records what
  happens to it; every wait is bounded and driven by a condition variable, not by sleeps.
- `wait_for(predicate, what, timeout)`: a bounded poll for things that are not MqttClient events.

Device files (cert.pem, key.pem, ca.pem) come from `test_gateway_mqtt.provision`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import shutil
import ssl
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NamedTuple
from urllib.parse import quote

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY

TIMEOUT = 5.0

ALPN_MQTT = "x-amzn-mqtt-ca"
ALPN_HTTP = "x-amzn-http-ca"

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# --------------------------------------------------------------------------------------
# waiting, tools, server facts
# --------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], what: str = "condition", timeout: float = TIMEOUT):
    """Poll `predicate` until it is truthy (returns its value) or fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def recv_exact(sock, size: int) -> bytes:
    """Exactly `size` bytes from a socket; fails the test if it closes first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    return data


def require_tool(name: str, why: str = "") -> str:
    """Path of an executable, or skip the test (visibly, with the reason)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed{': ' + why if why else ''}: the test did not run")
    return path


def require_device_ports(server) -> None:
    """Skip when the server does not expose the device listeners to the tests (FERROCORE_ENDPOINT)."""
    if not getattr(server, "mqtt_port", None) or not getattr(server, "https_port", None):
        pytest.skip("the device ports of an external server (FERROCORE_ENDPOINT) are unknown")


def server_ca(server, directory: Path) -> Path:
    """Download the CA that signs the server's TLS certificate (GET /ca.pem on the API port)
    into directory/ca.pem (kept if it is already there) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ca.pem"
    if not path.exists():
        with urllib.request.urlopen(f"{server.endpoint}/ca.pem", timeout=10) as response:
            path.write_bytes(response.read())
    return path


def ssl_context(ca, cert=None, key=None, alpn: list[str] | str | None = None) -> ssl.SSLContext:
    """A client TLS context trusting `ca`, with an optional client certificate and ALPN list."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    if alpn:
        context.set_alpn_protocols([alpn] if isinstance(alpn, str) else list(alpn))
    return context


def iot_data_https(server, ca, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, region: str = REGION):
    """boto3 `iot-data` pointed at the HTTPS (device) port, SigV4-signed, trusting `ca`."""
    import boto3
    from botocore.config import Config

    return boto3.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
    ).client(
        "iot-data",
        endpoint_url=f"https://127.0.0.1:{server.https_port}",
        verify=str(ca),
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )


# --------------------------------------------------------------------------------------
# SigV4 presigned WebSocket URL
# --------------------------------------------------------------------------------------


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(("AWS4" + secret_key).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def _q(value: str) -> str:
    """SigV4 URI encoding: everything but unreserved characters, '/' included."""
    return quote(value, safe="-_.~")


def presigned_ws_path(
    host: str,
    region: str = REGION,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    service: str = "iotdevicegateway",
    token: str | None = None,
    token_signed: bool = False,
    expires: int | None = 86400,
    when: datetime | None = None,
    path: str = "/mqtt",
) -> str:
    """The `/mqtt?X-Amz-...` path of a SigV4 presigned WebSocket URL.

    `host` is the Host header exactly as the client sends it (paho sends "<host>:<port>"
    unless the port is 443). `token` is appended after signing (AWS IoT's documented
    recipe) unless `token_signed`, then it is part of the canonical query. `expires=None`
    leaves out X-Amz-Expires. `when` (default now, UTC) is the X-Amz-Date.
    """
    when = when or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = when.strftime("%Y%m%d")
    scope = f"{date}/{region}/{service}/aws4_request"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-SignedHeaders": "host",
    }
    if expires is not None:
        params["X-Amz-Expires"] = str(expires)
    if token is not None and token_signed:
        params["X-Amz-Security-Token"] = token
    canonical_query = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(params.items()))
    canonical_request = "\n".join(
        ["GET", path, canonical_query, f"host:{host}\n", "host", EMPTY_SHA256]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    signature = hmac.new(
        _signing_key(secret_key, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    query = f"{canonical_query}&X-Amz-Signature={signature}"
    if token is not None and not token_signed:
        query += f"&X-Amz-Security-Token={_q(token)}"
    return f"{path}?{query}"


def ws_upgrade_status(
    host: str, port: int, path: str, ca, *, headers: dict | None = None, timeout: float = TIMEOUT
) -> tuple[int, dict]:
    """Send one WebSocket upgrade request (TLS, Host "<host>:<port>") and return the HTTP
    status and (lower-cased) headers of the answer, without speaking WebSocket afterwards."""
    context = ssl_context(ca)
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        request_headers = {
            "Host": f"{host}:{port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": "mqtt",
            **(headers or {}),
        }
        for name, value in request_headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


# --------------------------------------------------------------------------------------
# MQTT 5 properties
# --------------------------------------------------------------------------------------


def code_value(code) -> int:
    """An int from a paho ReasonCode / int / None (None -> -1)."""
    if code is None:
        return -1
    return int(getattr(code, "value", code))


def properties_dict(props: Properties | None) -> dict:
    """The properties paho decoded, keyed by paho's attribute names: UserProperty (a list of
    (key, value) pairs in wire order), ContentType, PayloadFormatIndicator, ResponseTopic,
    CorrelationData (bytes), MessageExpiryInterval, TopicAlias, SubscriptionIdentifier, ..."""
    if props is None:
        return {}
    out = {}
    for name in props.names:
        attribute = name.replace(" ", "")
        if hasattr(props, attribute):
            out[attribute] = getattr(props, attribute)
    return out


def make_properties(packet: str = "PUBLISH", **values) -> Properties:
    """`make_properties("PUBLISH", ContentType="x", UserProperty=[("a","1"),("a","2")])`:
    paho Properties for a packet type; UserProperty takes a list of pairs (order kept)."""
    props = Properties(getattr(PacketTypes, packet))
    for name, value in values.items():
        if value is None:
            continue
        if name == "UserProperty":
            for pair in value:
                props.UserProperty = tuple(pair)
        else:
            setattr(props, name, value)
    return props


# --------------------------------------------------------------------------------------
# the recording paho client
# --------------------------------------------------------------------------------------


class Message(NamedTuple):
    topic: str
    payload: bytes
    properties: dict
    retain: bool
    qos: int


class MqttClient:
    """A paho-mqtt client that records everything that happens to it.

    transport:
      "tcp"         TLS to `port` (default server.mqtt_port; server.https_port when `alpn`
                    is given) with the device certificate (if any) and optional ALPN list.
      "websockets"  TLS WebSocket to server.https_port; the path is a SigV4 presigned
                    URL for access_key/secret_key (or `ws_path` as given). No client certificate.

    Certificates: `device` (anything with a `.files` directory holding cert.pem, key.pem,
    ca.pem, e.g. test_gateway_mqtt.Device), overridable with ca=/cert=/key= paths.

    Records (all guarded by one condition variable; use `wait_for`):
      messages     list[Message]  (topic, payload, properties dict, retain, qos)
      connacks     list[(reason code int, session_present bool, properties dict)]
      subacks      {mid: [reason code ints]}
      unsubacks    {mid: [reason code ints]}
      pubacks      {mid: reason code int}  (QoS 0: 0 once written)
      disconnects  list[(reason code int, properties dict)]
      disconnected threading.Event
      connect_error the exception paho.connect raised (TLS / WebSocket handshake), or None
    The client does not reconnect by itself.
    """

    def __init__(
        self,
        server,
        client_id: str,
        *,
        v5: bool = False,
        transport: str = "tcp",
        device=None,
        ca=None,
        cert=None,
        key=None,
        alpn: list[str] | str | None = None,
        host: str = "localhost",
        port: int | None = None,
        ws_path: str | None = None,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        region: str = REGION,
        service: str = "iotdevicegateway",
        token: str | None = None,
        token_signed: bool = False,
        clean_session: bool | None = None,
        use_client_cert: bool = True,
    ):
        if transport not in ("tcp", "websockets"):
            raise ValueError(f"transport {transport!r}")
        self.server = server
        self.client_id = client_id
        self.v5 = v5
        self.transport = transport
        self.host = host
        files = Path(device.files) if device is not None else None
        self.ca = Path(ca) if ca else (files / "ca.pem" if files else None)
        if self.ca is None:
            raise ValueError("MqttClient needs device= or ca=")
        if transport == "tcp" and use_client_cert:
            self.cert = Path(cert) if cert else (files / "cert.pem" if files else None)
            self.key = Path(key) if key else (files / "key.pem" if files else None)
        else:
            self.cert = self.key = None
        if port is None:
            port = server.https_port if (transport == "websockets" or alpn) else server.mqtt_port
        self.port = port

        kwargs: dict = {"client_id": client_id, "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311, "transport": transport}
        if not v5 and clean_session is not None:
            kwargs["clean_session"] = clean_session
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.paho.reconnect_delay_set(min_delay=300, max_delay=600)  # no reconnect within a test
        self.paho.tls_set_context(ssl_context(self.ca, self.cert, self.key, alpn))
        if transport == "websockets":
            self.ws_path = ws_path or presigned_ws_path(
                f"{host}:{port}" if port != 443 else host,
                region, access_key, secret_key, service=service, token=token, token_signed=token_signed,
            )
            self.paho.ws_set_options(path=self.ws_path)
        else:
            self.ws_path = None

        self._cond = threading.Condition()
        self.messages: list[Message] = []
        self.connacks: list[tuple[int, bool, dict]] = []
        self.subacks: dict[int, list[int]] = {}
        self.unsubacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.disconnects: list[tuple[int, dict]] = []
        self.disconnected = threading.Event()
        self.connect_error: BaseException | None = None
        self._started = False
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self.paho.on_publish = self._on_publish
        self.paho.on_disconnect = self._on_disconnect

    # -- callbacks -------------------------------------------------------------------

    def _record(self, action: Callable[[], None]) -> None:
        with self._cond:
            action()
            self._cond.notify_all()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        session_present = bool(getattr(flags, "session_present", False))
        self._record(lambda: self.connacks.append((code_value(reason_code), session_present, properties_dict(properties))))

    def _on_message(self, client, userdata, message):
        props = properties_dict(getattr(message, "properties", None)) if self.v5 else {}
        self._record(lambda: self.messages.append(
            Message(message.topic, bytes(message.payload), props, bool(message.retain), int(message.qos))
        ))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        self._record(lambda: self.subacks.__setitem__(mid, [code_value(c) for c in reason_codes]))

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties=None):
        codes = [code_value(c) for c in reason_codes] if isinstance(reason_codes, list) else [code_value(reason_codes)]
        self._record(lambda: self.unsubacks.__setitem__(mid, codes))

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        self._record(lambda: self.pubacks.__setitem__(mid, code_value(reason_code) if reason_code is not None else 0))

    def _on_disconnect(self, client, userdata, flags, reason_code=None, properties=None):
        def record():
            self.disconnects.append((code_value(reason_code), properties_dict(properties)))
            self.disconnected.set()

        self._record(record)

    # -- waiting ---------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], what: str = "condition", timeout: float = TIMEOUT):
        """Wait (bounded) until `predicate()` is truthy, re-checking on every recorded event;
        returns its value or fails the test."""
        with self._cond:
            value = self._cond.wait_for(predicate, timeout)
        if not value:
            pytest.fail(f"{self.client_id}: timed out after {timeout}s waiting for {what}")
        return value

    def never(self, predicate: Callable[[], Any], within: float = 1.0) -> bool:
        """True if `predicate()` stays falsy for `within` seconds (a bounded negative check)."""
        with self._cond:
            return not self._cond.wait_for(predicate, within)

    def messages_on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_message(self, topic: str, count: int = 1, timeout: float = TIMEOUT) -> list[Message]:
        """Wait until at least `count` messages arrived on `topic`; returns them all."""
        self.wait_for(lambda: len([m for m in self.messages if m.topic == topic]) >= count,
                      f"{count} message(s) on {topic}", timeout)
        return self.messages_on(topic)

    # -- operations ------------------------------------------------------------------

    def connect(self, keepalive: int = 60, timeout: float = TIMEOUT, **kwargs) -> int | None:
        """Connect and wait for the CONNACK. Returns its reason code (0 = accepted), or None
        when the connection failed or closed before a CONNACK (connect_error says why).
        kwargs go to paho's connect (clean_start=, properties=)."""
        try:
            self.paho.connect(self.host, self.port, keepalive=keepalive, **kwargs)
        except (OSError, ssl.SSLError, mqtt.WebsocketConnectionError) as e:
            self.connect_error = e
            self.disconnected.set()
            return None
        self.paho.loop_start()
        self._started = True
        with self._cond:
            self._cond.wait_for(lambda: self.connacks or self.disconnected.is_set(), timeout)
            return self.connacks[0][0] if self.connacks else None

    def subscribe(self, topic, qos: int = 1, properties: Properties | None = None, wait: bool = True):
        """Subscribe (a filter, or a list of (filter, qos)); returns the SUBACK reason codes
        (granted QoS or error codes) when `wait`, else the mid."""
        args = (topic,) if isinstance(topic, list) else (topic, qos)
        result, mid = self.paho.subscribe(*args, properties=properties)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {result}"
        if not wait:
            return mid
        return self.wait_for(lambda: self.subacks.get(mid) or self.disconnected.is_set(), f"SUBACK of {topic}") and self.subacks.get(mid)

    def unsubscribe(self, topic, properties: Properties | None = None, wait: bool = True):
        result, mid = self.paho.unsubscribe(topic, properties=properties)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe not sent: {result}"
        if wait:
            self.wait_for(lambda: mid in self.unsubacks or self.disconnected.is_set(), f"UNSUBACK of {topic}")
        return self.unsubacks.get(mid)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        wait: bool = True,
        timeout: float = TIMEOUT,
    ) -> int | None:
        """Publish; when `wait`, wait for the PUBACK (QoS 1) or the write (QoS 0) and return
        its reason code (MQTT 5 PUBACK codes such as 0x87; 0 otherwise), or None when the
        connection closed first. Without `wait`, returns the mid."""
        info = self.paho.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if not wait:
            return info.mid
        with self._cond:
            self._cond.wait_for(lambda: info.mid in self.pubacks or self.disconnected.is_set(), timeout)
            return self.pubacks.get(info.mid)

    def close(self) -> None:
        try:
            if self.paho.is_connected():
                self.paho.disconnect()
        finally:
            if self._started:
                self.paho.loop_stop()
                self._started = False

    def __enter__(self) -> "MqttClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connected(client: MqttClient, **kwargs) -> MqttClient:
    """Connect `client` and assert the CONNACK accepted it; returns the client."""
    rc = client.connect(**kwargs)
    assert rc == 0, f"{client.client_id}: CONNACK {rc} ({client.connect_error!r}, disconnects {client.disconnects})"
    return client
