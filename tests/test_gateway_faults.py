"""Regression tests for the faults real clients and attack probes found (issue 14), with
real clients where the fault shows only on the wire: messages acknowledged and then lost,
MQTT 5 subscription options, revocation and take-over of connections that do not read,
access keys on the control plane, the offline-queue cap, and the listeners' limits.
The router-level halves of these tests are in crates/broker/src/router.rs."""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import ConfiguredServer, configured_server, ferrocore_binary
from gateway_helpers import MqttClient, connected, recv_exact, wait_for
from iot_helpers import REGION
from test_gateway_mqtt import Client, device, everything_allowed, mqtt_string, provision, tls_context  # noqa: F401 (fixture)

# The gateway's answers to hostile and faulty clients: the same on any store, so the PostgreSQL pass of
# scripts/test skips this suite.
pytestmark = pytest.mark.store_neutral

TIMEOUT = 5.0


def raw_connect(server, device, client_id: str, clean: bool) -> ssl.SSLSocket:
    """An MQTT 3.1.1 connection over TLS written by hand, after its CONNACK."""
    raw = socket.create_connection(("localhost", server.mqtt_port), timeout=TIMEOUT)
    tls = tls_context(device).wrap_socket(raw, server_hostname="localhost")
    flags = 0x02 if clean else 0x00
    body = mqtt_string("MQTT") + bytes([4, flags, 0, 60]) + mqtt_string(client_id)
    tls.sendall(bytes([0x10, len(body)]) + body)
    connack = recv_exact(tls, 4)
    assert connack[0] == 0x20 and connack[3] == 0, f"CONNACK {connack!r}"
    return tls


def subscribe_packet(packet_id: int, topic: str, qos: int) -> bytes:
    body = packet_id.to_bytes(2, "big") + mqtt_string(topic) + bytes([qos])
    return bytes([0x82, len(body)]) + body


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int = 1) -> bytes:
    body = mqtt_string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1), len(body)]) + body


def closed_within(sock, seconds: float) -> bool:
    """Reads (and discards) until the server closes the connection or `seconds` pass;
    an HTTP 200 on the way fails the test."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
            assert not data.startswith(b"HTTP/1.1 200"), data[:80]
            if not data:
                return True
        except socket.timeout:
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return True
    return False


# --------------------------------------------------------------------------------------
# messages acknowledged and then lost
# --------------------------------------------------------------------------------------


def test_a_message_acknowledged_right_before_the_connection_closes_reaches_its_session(iot, server, device):
    """SUBSCRIBE t/# (QoS 1), PUBLISH QoS 1 to it, then a QoS 2 PUBLISH the server refuses, without
    waiting: the server acknowledges the message and closes; the persistent session must get it."""
    everything_allowed(iot, device)
    for attempt in range(10):
        topic_root = f"faults/{uuid.uuid4().hex[:8]}"
        with raw_connect(server, device, device.thing, clean=False) as tls:
            tls.sendall(
                subscribe_packet(1, f"{topic_root}/#", 1)
                + publish_packet(f"{topic_root}/a", b"kept", 1, packet_id=2)
                + publish_packet(f"{topic_root}/a", b"refused", 2, packet_id=3)
            )
            received = b""
            tls.settimeout(TIMEOUT)
            try:
                while chunk := tls.recv(4096):
                    received += chunk
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            assert b"\x40\x02\x00\x02" in received, f"attempt {attempt}: the QoS 1 publish was acknowledged"
        # Delivered or not, the message was never acknowledged by the session's client.
        client = connected(MqttClient(server, device.thing, device=device, clean_session=False))
        try:
            assert client.connacks[0][1], f"attempt {attempt}: the session is present"
            assert [m.payload for m in client.wait_message(f"{topic_root}/a")] == [b"kept"], f"attempt {attempt}"
        finally:
            client.close()
        # Leave no session behind for the next attempt.
        connected(MqttClient(server, device.thing, device=device, clean_session=True)).close()


def test_a_persistent_subscriber_reconnecting_under_load_misses_nothing(iot, server, device):
    """QoS 1 messages at a steady rate while a persistent-session subscriber reconnects
    again and again: every acknowledged message arrives (duplicates allowed, losses not)."""
    everything_allowed(iot, device)
    topic = f"faults/{uuid.uuid4().hex[:8]}/flow"
    sub_id = f"{device.thing}-sub"
    received: set[int] = set()
    lock = threading.Lock()

    def subscriber() -> MqttClient:
        client = MqttClient(server, sub_id, device=device, clean_session=False)

        def on_message(_client, _userdata, message):
            with lock:
                received.add(int(message.payload))

        client.paho.on_message = on_message
        return connected(client)

    first = subscriber()
    first.subscribe(topic, qos=1)
    first.close()
    publisher = connected(MqttClient(server, f"{device.thing}-pub", device=device))
    acknowledged: list[int] = []
    stop = threading.Event()

    def publish_loop():
        n = 0
        while not stop.is_set():
            if publisher.publish(topic, str(n), qos=1) == 0:
                acknowledged.append(n)
            n += 1

    flow = threading.Thread(target=publish_loop)
    flow.start()
    try:
        for _ in range(12):
            client = subscriber()
            time.sleep(0.15)
            client.paho.disconnect()
            client.close()
    finally:
        stop.set()
        flow.join()
        publisher.close()
    last = subscriber()
    try:
        wait_for(lambda: received >= set(acknowledged), f"all {len(acknowledged)} acknowledged messages", timeout=20)
    finally:
        last.close()
        connected(MqttClient(server, sub_id, device=device, clean_session=True)).close()
    assert len(acknowledged) > 100, "the load ran"


def test_mqtt5_no_local_retain_as_published_and_retain_handling(iot, server, device):
    everything_allowed(iot, device)
    root = f"faults/{uuid.uuid4().hex[:8]}"
    with connected(MqttClient(server, f"{device.thing}-a", v5=True, device=device)) as me, connected(
        MqttClient(server, f"{device.thing}-b", v5=True, device=device)
    ) as other:
        me.subscribe([(f"{root}/nl", SubscribeOptions(qos=1, noLocal=True))])
        other.subscribe([(f"{root}/nl", SubscribeOptions(qos=1, noLocal=True))])
        assert me.publish(f"{root}/nl", b"mine", qos=1) == 0
        other.wait_message(f"{root}/nl")  # positive control: the same message reached another client
        assert other.publish(f"{root}/nl", b"theirs", qos=1) == 0
        got = me.wait_message(f"{root}/nl")
        assert [m.payload for m in got] == [b"theirs"], "No Local: a client does not get its own publishes"

        # Retain As Published: live copies keep RETAIN=1 only for subscriptions that ask.
        me.subscribe([(f"{root}/rap", SubscribeOptions(qos=1, retainAsPublished=True))])
        other.subscribe([(f"{root}/rap", SubscribeOptions(qos=1))])
        assert other.publish(f"{root}/rap", b"r1", qos=1, retain=True) == 0
        assert [m.retain for m in me.wait_message(f"{root}/rap")] == [True]
        assert [m.retain for m in other.wait_message(f"{root}/rap")] == [False]

        # Retain Handling 2: never the stored copy; 1: only for a new subscription; 0: always.
        handled = f"{root}/rh"
        assert other.publish(handled, b"stored", qos=1, retain=True) == 0
        me.subscribe([(handled, SubscribeOptions(qos=1, retainHandling=2))])
        me.subscribe([(handled, SubscribeOptions(qos=1, retainHandling=1))])  # not new: nothing
        assert other.publish(f"{root}/marker", b"", qos=1) == 0
        me.subscribe([(f"{root}/marker2", SubscribeOptions(qos=1))])
        assert me.messages_on(handled) == [], "retain handling 2 and 1 (existing subscription) send no stored copy"
        me.subscribe([(handled, SubscribeOptions(qos=1, retainHandling=0))])
        assert [m.payload for m in me.wait_message(handled)] == [b"stored"], "retain handling 0 sends it"
        me.unsubscribe(handled)
        me.subscribe([(handled, SubscribeOptions(qos=1, retainHandling=1))])
        assert len(me.wait_message(handled, count=2)) == 2, "retain handling 1 sends it for a new subscription"


# --------------------------------------------------------------------------------------
# revocation and take-over of a connection that does not read
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["inactive", "take-over"])
def test_a_connection_that_stops_reading_is_still_closed_when_revoked_or_taken_over(iot, server, device, how, tmp_path):
    """A subscriber that neither reads nor acknowledges while its topic is flooded (its queues
    fill up) is still closed when its certificate goes INACTIVE or its client id is taken over,
    and what it publishes after that reaches nobody."""
    everything_allowed(iot, device)
    topic = f"faults/{uuid.uuid4().hex[:8]}/flood"
    stuck = raw_connect(server, device, device.thing, clean=True)
    stuck.sendall(subscribe_packet(1, topic, 1))
    time.sleep(0.2)
    others = provision(iot, server, tmp_path, name=f"{device.thing}-w")
    everything_allowed(iot, others)
    gone = f"$aws/events/presence/disconnected/{device.thing}"
    with connected(MqttClient(server, others.thing, device=others)) as watcher:
        watcher.subscribe(f"{topic}/after", qos=1)
        watcher.subscribe(gone, qos=1)
        # Positive control: the stuck client's publishes are delivered before.
        stuck.sendall(publish_packet(f"{topic}/after", b"before", 0))
        watcher.wait_message(f"{topic}/after")
        with connected(MqttClient(server, f"{others.thing}-flood", device=others)) as flooder:
            # 12 MB: more than the socket buffers hold, so the server's writes to it block.
            for _ in range(200):
                flooder.publish(topic, b"x" * 64_000, qos=0, wait=False)
            assert flooder.publish(topic, b"last", qos=1, timeout=30) == 0
            if how == "inactive":
                iot.update_certificate(certificateId=device.cert_id, newStatus="INACTIVE")
            else:
                newcomer = raw_connect(server, device, device.thing, clean=True)
        try:
            try:
                stuck.sendall(publish_packet(f"{topic}/after", b"after", 0))
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            # Closed by the server while the client still does not read (reading would unblock it).
            event = json.loads(watcher.wait_message(gone)[0].payload)
            assert event["disconnectReason"] == ("AUTH_ERROR" if how == "inactive" else "DUPLICATE_CLIENTID")
            assert closed_within(stuck, 5), f"{how}: the stuck connection was closed"
            time.sleep(0.3)
            assert [m.payload for m in watcher.messages_on(f"{topic}/after")] == [b"before"], "nothing after"
        finally:
            stuck.close()
            if how == "inactive":
                iot.update_certificate(certificateId=device.cert_id, newStatus="ACTIVE")
            else:
                newcomer.close()


# --------------------------------------------------------------------------------------
# access keys on the control plane
# --------------------------------------------------------------------------------------

ADMIN_KEY, ADMIN_SECRET = "AKIDFAULTSADMIN00001", "faults-admin-secret"
NARROW_KEY, NARROW_SECRET = "AKIDFAULTSNARROW0001", "faults-narrow-secret"
ACCOUNT = "000000000000"


def narrow_policy() -> str:
    thing_arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/mine"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["iot:CreateThing", "iot:DescribeThing", "iot:UpdateThing"], "Resource": thing_arn},
            {"Effect": "Allow", "Action": "iot:ListThings", "Resource": "*"},
        ],
    })


LIMITS_CONFIG = f"""\
mqtt_session_queue_limit = 50
api_max_connections = 8
api_body_timeout_secs = 2

[[credentials]]
access_key_id = "{ADMIN_KEY}"
secret_access_key = "{ADMIN_SECRET}"

[[credentials]]
access_key_id = "{NARROW_KEY}"
secret_access_key = "{NARROW_SECRET}"
policy = '''{narrow_policy()}'''
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    yield from configured_server(tmp_path_factory, "faults", LIMITS_CONFIG)


def client_for(srv, service: str, key: str, secret: str):
    return boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION).client(
        service, endpoint_url=srv.endpoint, config=Config(retries={"total_max_attempts": 1}, read_timeout=30)
    )


def error_code(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_an_access_key_policy_governs_the_control_plane(limited):
    narrow = client_for(limited, "iot", NARROW_KEY, NARROW_SECRET)
    admin = client_for(limited, "iot", ADMIN_KEY, ADMIN_SECRET)
    assert narrow.create_thing(thingName="mine")["thingName"] == "mine"
    assert narrow.describe_thing(thingName="mine")["thingName"] == "mine"
    assert "things" in narrow.list_things()
    escalation = [
        lambda: narrow.create_thing(thingName="other"),
        lambda: narrow.describe_thing(thingName="other"),
        lambda: narrow.create_keys_and_certificate(setAsActive=True),
        lambda: narrow.create_policy(policyName="everything", policyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]})),
        lambda: narrow.attach_policy(policyName="everything", target=f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/abc"),
        lambda: narrow.delete_thing(thingName="mine"),
    ]
    for call in escalation:
        assert error_code(call) == ("AccessDeniedException", 403)
    # A key without a policy keeps full access.
    created = admin.create_keys_and_certificate(setAsActive=False)
    admin.delete_certificate(certificateId=created["certificateId"])
    assert admin.describe_thing(thingName="mine")["thingName"] == "mine"


# --------------------------------------------------------------------------------------
# resources: the offline queue cap, API connection limits and timeouts, descriptors
# --------------------------------------------------------------------------------------


def metric(srv, name: str, label: str) -> float:
    with urllib.request.urlopen(f"{srv.endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_an_offline_session_keeps_the_newest_messages_up_to_its_limit(limited, tmp_path):
    admin = client_for(limited, "iot", ADMIN_KEY, ADMIN_SECRET)
    device = provision(admin, limited, tmp_path)
    everything_allowed(admin, device)
    topic = f"faults/{uuid.uuid4().hex[:8]}/queued"
    sub = connected(MqttClient(limited, device.thing, device=device, clean_session=False))
    sub.subscribe(topic, qos=1)
    sub.close()
    before = metric(limited, "ferrocore_mqtt_messages_dropped_total", 'reason="session_queue_full"')
    with connected(MqttClient(limited, f"{device.thing}-pub", device=device)) as publisher:
        for n in range(80):
            assert publisher.publish(topic, str(n), qos=1) == 0
    after = metric(limited, "ferrocore_mqtt_messages_dropped_total", 'reason="session_queue_full"')
    assert after - before == 30, "the 30 oldest of 80 were dropped (limit 50) and counted"
    limited.restart()  # the queue is durable, one record per message
    back = connected(MqttClient(limited, device.thing, device=device, clean_session=False))
    try:
        got = back.wait_message(topic, count=50, timeout=15)
        assert [int(m.payload) for m in got] == list(range(30, 80))
    finally:
        back.close()


def test_the_api_closes_slow_and_idle_connections_and_holds_a_bounded_number(limited):
    host, port = "127.0.0.1", limited.api_port
    # A body that stalls gets 408 after api_body_timeout_secs.
    with socket.create_connection((host, port), timeout=10) as slow:
        slow.sendall(b"POST /things/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        answer = slow.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert b"RequestTimeoutException" in answer
        assert time.monotonic() - started < 6
    # Idle and slow-header connections are closed (header read timeout 10 s), while one
    # that sends a whole request is answered (positive control).
    idle = socket.create_connection((host, port), timeout=20)
    partial = socket.create_connection((host, port), timeout=20)
    partial.sendall(b"GET /health HTTP/1.1\r\n")
    answered = socket.create_connection((host, port), timeout=20)
    answered.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answered.recv(100).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    for sock in (idle, partial):
        assert closed_within(sock, 15), "closed by the server"
    assert time.monotonic() - started < 15, "closed within the header timeout"
    for sock in (idle, partial, answered):
        sock.close()
    # At api_max_connections (8) further connections wait; devices are unaffected.
    holders = [socket.create_connection((host, port), timeout=5) for _ in range(8)]
    try:
        waiting = socket.create_connection((host, port), timeout=5)
        waiting.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.settimeout(1.0)
        with pytest.raises(socket.timeout):
            waiting.recv(100)
        holders.pop().close()
        waiting.settimeout(10)
        assert waiting.recv(100).startswith(b"HTTP/1.1 200"), "a freed slot serves the waiting connection"
        waiting.close()
    finally:
        for holder in holders:
            holder.close()


def start_with_descriptor_limit(base, config_text: str, nofile: int) -> ConfiguredServer:
    """A ferrocore of its own whose descriptor limit is `nofile`."""
    (base / "data").mkdir(parents=True)
    config = base / "ferrocore.toml"
    config.write_text(config_text)
    srv = ConfiguredServer(ferrocore_binary(), base / "data", base / "ferrocore.log", config)
    original = subprocess.Popen

    def limited_popen(*args, **kwargs):
        kwargs["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        return original(*args, **kwargs)

    subprocess.Popen = limited_popen
    try:
        srv.start()
    finally:
        subprocess.Popen = original
    return srv


def open_without_waiting(port: int, count: int) -> list[socket.socket]:
    """`count` connection attempts that do not wait for the server (non-blocking connects)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def log_lines(srv) -> int:
    return srv.log_path.read_text(errors="replace").count("\n")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_flood_of_api_connections_at_the_descriptor_limit_does_not_stop_devices(tmp_path):
    """600 idle API connections against a 512-descriptor limit: the API holds its share
    (128 here), devices still connect, and the log stays short."""
    srv = start_with_descriptor_limit(tmp_path / "fd", "api_max_connections = 128\n", 512)
    sockets = open_without_waiting(srv.api_port, 600)
    try:
        admin = client_for(srv, "iot", "test", "test")
        lines = log_lines(srv)
        device_dir = tmp_path / "fd-device"
        device_dir.mkdir()
        for sock in sockets[:200]:
            sock.close()  # room for the API calls that provision the device
        device = provision(admin, srv, device_dir)
        client = Client(srv, device)
        assert client.connect() == 0, "a device connects while the API is flooded"
        client.close()
        assert log_lines(srv) - lines < 50
        assert "connection limits" in srv.log_tail() or re.search(r"api=128", srv.log_path.read_text())
    finally:
        for sock in sockets:
            sock.close()
        srv.stop()


def test_accept_errors_at_the_descriptor_limit_back_off_and_are_logged_rate_limited(tmp_path):
    """A limit set above the descriptors there are (api_max_connections 1000 under 256):
    accept fails with EMFILE; the loop backs off instead of spinning and logs a line per 10 s."""
    srv = start_with_descriptor_limit(tmp_path / "emfile", "api_max_connections = 1000\n", 256)
    sockets = open_without_waiting(srv.api_port, 400)
    try:
        time.sleep(1.0)
        lines, cpu = log_lines(srv), cpu_seconds(srv.proc.pid)
        time.sleep(5.0)
        assert log_lines(srv) - lines < 10, "accept errors are logged rate-limited"
        assert cpu_seconds(srv.proc.pid) - cpu < 1.0, "the accept loop does not spin"
        assert "accept failed" in srv.log_path.read_text(), "positive control: the descriptor limit was reached"
        for sock in sockets:
            sock.close()
        wait_for(lambda: urllib.request.urlopen(f"{srv.endpoint}/health", timeout=2).status == 200,
                 "the API answers again once descriptors are free", timeout=15)
    finally:
        for sock in sockets:
            sock.close()
        srv.stop()
