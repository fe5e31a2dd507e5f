"""MQTT 5 on the device gateway (issue #8 spec section 3; AWS reference 1.2-1.5), with paho-mqtt
clients (MQTT 5, and 3.1.1 where stated) on the 8883 listener with device certificates:
CONNACK properties, property forwarding and request/response, message expiry (retained,
offline queues, wills), topic aliases, shared subscriptions, subscription identifiers, session
expiry and QoS 2.

Already covered by test_gateway_mqtt.py and not repeated here: the Assigned Client Identifier
for an empty client id, a topic alias round trip on the publishing client itself, the SUBSCRIBE
limits, persistent sessions across a restart.

Every wait is bounded; the only sleeps are the ones message/session expiry needs, and a short
settle after a DISCONNECT before the same client id connects again.
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway_helpers import TIMEOUT, MqttClient, connected, make_properties, recv_exact, ssl_context, wait_for
from security_helpers import allow, data_arn, make_policy, policy_document
from test_gateway_mqtt import everything_allowed, mqtt_string, provision

# MQTT 5 on the wire: the same on any store, so the PostgreSQL pass of
# scripts/test skips this suite.
pytestmark = pytest.mark.store_neutral

QUIET = 0.5  # after the expected deliveries: how long to watch for unexpected ones
SETTLE = 0.3  # after a DISCONNECT, before the same client id connects again

# reason codes (MQTT 5)
GRANTED_QOS1 = 1
NOT_AUTHORIZED = 0x87
TOPIC_FILTER_INVALID = 0x8F
PROTOCOL_ERROR = 0x82
TOPIC_ALIAS_INVALID = 0x94
QOS_NOT_SUPPORTED = 0x9B
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1

# the properties a server forwards from a PUBLISH to MQTT 5 subscribers
FORWARDED = ("UserProperty", "ContentType", "PayloadFormatIndicator", "ResponseTopic", "CorrelationData", "MessageExpiryInterval")


# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture
def device(iot, server, tmp_path):
    """A provisioned thing whose certificate may do everything (any client id, any topic)."""
    dev = provision(iot, server, tmp_path)
    everything_allowed(iot, dev)
    return dev


@pytest.fixture
def topic():
    return f"mqtt5/{uuid.uuid4().hex[:12]}/t"


@pytest.fixture
def clients(server, device):
    """clients(name, v5=True, dev=None, connect=True, **connect kwargs) -> MqttClient with
    client id "<thing>-<name>"; connected (CONNACK 0 asserted) unless connect=False.
    Everything made is closed at teardown."""
    made: list[MqttClient] = []

    def make(name: str, *, v5: bool = True, dev=None, connect: bool = True, **connect_kwargs) -> MqttClient:
        dev = dev or device
        client = MqttClient(server, f"{dev.thing}-{name}", v5=v5, device=dev)
        made.append(client)
        if connect:
            connected(client, **connect_kwargs)
        return client

    yield make
    for client in made:
        client.close()


def session(seconds: int):
    """CONNECT properties asking for a session expiry interval."""
    return make_properties("CONNECT", SessionExpiryInterval=seconds)


def connack_properties(client: MqttClient) -> dict:
    return client.connacks[-1][2]


def session_present(client: MqttClient) -> bool:
    return client.connacks[-1][1]


def payloads(client: MqttClient, topic: str | None = None) -> list[bytes]:
    return [m.payload for m in list(client.messages) if topic is None or m.topic == topic]


def disconnect_with_expiry(client: MqttClient, seconds: int) -> None:
    """A v5 DISCONNECT (reason 0) carrying a Session Expiry Interval, then stop the client."""
    client.paho.disconnect(properties=make_properties("DISCONNECT", SessionExpiryInterval=seconds))
    client.close()  # no longer "connected": only stops the loop, after the DISCONNECT is written


def server_disconnect_reason(client: MqttClient) -> int:
    """The reason code of the first disconnect paho reported (the server's DISCONNECT packet;
    a socket closed without one shows up as 0x80 Unspecified error)."""
    client.wait_for(lambda: client.disconnects, "the server's DISCONNECT")
    return client.disconnects[0][0]


def subscribe_unchecked(client: MqttClient, *filters: str, qos: int = 1) -> list[int]:
    """SUBSCRIBE with filters paho itself refuses to send (e.g. '+' inside a level), by paho's
    packet writer; returns the SUBACK reason codes."""
    result, mid = client.paho._send_subscribe(False, [(f.encode(), SubscribeOptions(qos=qos)) for f in filters])
    assert result == 0, f"SUBSCRIBE not queued: {result}"
    client.wait_for(lambda: mid in client.subacks or client.disconnected.is_set(), f"SUBACK of {filters}")
    assert mid in client.subacks, f"no SUBACK, disconnected: {client.disconnects}"
    return client.subacks[mid]


# --------------------------------------------------------------------------------------
# 1. CONNACK properties
# --------------------------------------------------------------------------------------


def test_connack_advertises_what_aws_supports(clients):
    client = clients("caps")
    props = connack_properties(client)
    assert props.get("MaximumQoS") == 1, props
    assert props.get("RetainAvailable") == 1, props
    assert props.get("WildcardSubscriptionAvailable") == 1, props
    assert props.get("SharedSubscriptionAvailable") == 1, props
    assert props.get("SubscriptionIdentifierAvailable") == 0, props
    assert props.get("TopicAliasMaximum") == 8, props
    assert props.get("ReceiveMaximum") == 100, props
    assert "MaximumPacketSize" in props, props
    assert props["MaximumPacketSize"] >= 128 * 1024, "a PUBLISH with a 128 KiB payload must fit"
    # nothing was adjusted: keep-alive 60 is in 30..1200, a client id was given, expiry 0
    assert "ServerKeepAlive" not in props, props
    assert "AssignedClientIdentifier" not in props, props
    assert props.get("SessionExpiryInterval", 0) == 0, props


@pytest.mark.parametrize(
    "requested, expected",
    [(10, 30), (0, 1200), (1500, 1200), (60, None)],
    ids=["10-raised-to-30", "0-means-1200", "1500-capped-to-1200", "60-unchanged"],
)
def test_server_keep_alive_when_the_requested_keep_alive_is_adjusted(clients, requested, expected):
    client = clients(f"ka{requested}", connect=False)
    try:
        rc = client.connect(keepalive=requested)
    except ValueError as e:  # paho 2.x accepts 0; older versions may not
        pytest.skip(f"paho refuses keepalive={requested}: {e}")
    assert rc == 0, client.disconnects
    assert connack_properties(client).get("ServerKeepAlive") == expected, connack_properties(client)


def test_session_expiry_over_seven_days_is_clamped_and_echoed(clients):
    client = clients("ten-days", clean_start=True, properties=session(10 * 24 * 3600))
    assert connack_properties(client).get("SessionExpiryInterval") == 604800, connack_properties(client)
    disconnect_with_expiry(client, 0)  # leave no session behind


def test_session_expiry_within_the_maximum_is_not_changed(clients):
    client = clients("one-hour", clean_start=True, properties=session(3600))
    # absent means "the client's value is used"; an echo must be the same value
    assert connack_properties(client).get("SessionExpiryInterval", 3600) == 3600, connack_properties(client)
    disconnect_with_expiry(client, 0)


# --------------------------------------------------------------------------------------
# 2. property forwarding, request/response
# --------------------------------------------------------------------------------------


def all_publish_properties(topic: str, expiry: int = 120):
    return make_properties(
        "PUBLISH",
        UserProperty=[("a", "1"), ("b", "2"), ("a", "3"), ("a", "1")],
        ContentType="application/json",
        PayloadFormatIndicator=1,
        ResponseTopic=f"{topic}/reply",
        CorrelationData=b"\x00corr\xff",
        MessageExpiryInterval=expiry,
    )


@pytest.mark.parametrize("qos", [0, 1])
def test_properties_reach_mqtt5_subscribers(clients, topic, qos):
    subscriber = clients("sub")
    assert subscriber.subscribe(topic, qos=1) == [GRANTED_QOS1]
    publisher = clients("pub")
    publisher.publish(topic, b'{"x": 1}', qos=qos, properties=all_publish_properties(topic, expiry=120))
    message = subscriber.wait_message(topic)[0]
    assert message.payload == b'{"x": 1}'
    props = message.properties
    assert props.get("UserProperty") == [("a", "1"), ("b", "2"), ("a", "3"), ("a", "1")], "order and repeats kept"
    assert props.get("ContentType") == "application/json"
    assert props.get("PayloadFormatIndicator") == 1
    assert props.get("ResponseTopic") == f"{topic}/reply"
    assert props.get("CorrelationData") == b"\x00corr\xff"
    assert "MessageExpiryInterval" in props, "the remaining expiry is forwarded"
    assert 110 <= props["MessageExpiryInterval"] <= 120, props["MessageExpiryInterval"]
    assert "TopicAlias" not in props, "the publisher's alias is not forwarded (the subscriber allowed none)"


def test_mqtt5_publish_reaches_mqtt311_subscribers_as_topic_and_payload(clients, topic):
    subscriber = clients("sub311", v5=False)
    assert subscriber.subscribe(topic, qos=1) == [GRANTED_QOS1]
    publisher = clients("pub")
    assert publisher.publish(topic, b"plain", qos=1, properties=all_publish_properties(topic)) == 0
    subscriber.wait_message(topic)
    assert subscriber.never(lambda: len(subscriber.messages) > 1, QUIET)
    assert [(m.topic, m.payload, m.qos) for m in subscriber.messages] == [(topic, b"plain", 1)]


def test_mqtt311_publish_reaches_mqtt5_subscribers_without_properties(clients, topic):
    subscriber = clients("sub5")
    assert subscriber.subscribe(topic, qos=1) == [GRANTED_QOS1]
    publisher = clients("pub311", v5=False)
    assert publisher.publish(topic, b"from 3.1.1", qos=1) == 0
    message = subscriber.wait_message(topic)[0]
    assert message.payload == b"from 3.1.1"
    assert not {name: message.properties[name] for name in FORWARDED if name in message.properties}


def test_request_response_round_trip(clients, topic):
    requests, responses = f"{topic}/requests", f"{topic}/responses"
    seen_requests: list[dict] = []

    responder = clients("responder")

    def answer(client, userdata, message):
        props = message.properties
        seen_requests.append({
            "ResponseTopic": getattr(props, "ResponseTopic", None),
            "CorrelationData": getattr(props, "CorrelationData", None),
        })
        if getattr(props, "ResponseTopic", None) is None:
            return  # nothing to answer to; the assertions below report it
        reply = make_properties("PUBLISH", CorrelationData=getattr(props, "CorrelationData", None))
        client.publish(props.ResponseTopic, b"re: " + message.payload, qos=1, properties=reply)

    responder.paho.message_callback_add(requests, answer)
    assert responder.subscribe(requests, qos=1) == [GRANTED_QOS1]

    requester = clients("requester")
    assert requester.subscribe(responses, qos=1) == [GRANTED_QOS1]
    correlations = {uuid.uuid4().bytes: b"one", uuid.uuid4().bytes: b"two"}
    for correlation, body in correlations.items():
        request = make_properties("PUBLISH", ResponseTopic=responses, CorrelationData=correlation)
        assert requester.publish(requests, body, qos=1, properties=request) == 0

    replies = requester.wait_message(responses, count=2)
    assert len(replies) == 2, replies
    assert {m.properties.get("CorrelationData"): m.payload for m in replies} == {
        correlation: b"re: " + body for correlation, body in correlations.items()
    }
    assert [r["ResponseTopic"] for r in seen_requests] == [responses, responses]
    assert [r["CorrelationData"] for r in seen_requests] == list(correlations)


# --------------------------------------------------------------------------------------
# 3. message expiry
# --------------------------------------------------------------------------------------


def test_retained_messages_expire(clients, topic):
    durable = f"{topic}/durable"
    publisher = clients("pub")
    early = clients("early")
    assert publisher.publish(durable, b"kept", qos=1, retain=True) == 0
    assert publisher.publish(topic, b"short-lived", qos=1, retain=True,
                             properties=make_properties("PUBLISH", MessageExpiryInterval=2)) == 0
    published = time.monotonic()
    try:
        # within the expiry (subscribing well inside 1 s): the stored copy, with what is left of it
        assert early.subscribe(topic, qos=1) == [GRANTED_QOS1]
        copy = early.wait_message(topic)[0]
        assert time.monotonic() - published < 1.5, "the early subscription was too slow to mean anything"
        assert copy.payload == b"short-lived" and copy.retain
        assert "MessageExpiryInterval" in copy.properties, "a retained copy carries its remaining expiry"
        assert copy.properties["MessageExpiryInterval"] <= 2

        time.sleep(max(0.0, published + 3.0 - time.monotonic()))  # past the 2 s expiry
        late = clients("late")
        assert late.subscribe([(topic, 1), (durable, 1)]) == [GRANTED_QOS1, GRANTED_QOS1]
        late.wait_message(durable)
        assert late.never(lambda: late.messages_on(topic), QUIET), "an expired retained message is not delivered"
    finally:
        publisher.publish(durable, b"", qos=1, retain=True)
        publisher.publish(topic, b"", qos=1, retain=True)


def test_messages_queued_for_an_offline_session_expire(clients, topic):
    subscriber = clients("persistent", clean_start=False, properties=session(300))
    assert subscriber.subscribe(topic, qos=1) == [GRANTED_QOS1]
    subscriber.close()
    time.sleep(SETTLE)

    publisher = clients("pub")
    assert publisher.publish(topic, b"expiring", qos=1, properties=make_properties("PUBLISH", MessageExpiryInterval=2)) == 0
    assert publisher.publish(topic, b"durable", qos=1) == 0
    assert publisher.publish(topic, b"long-lived", qos=1, properties=make_properties("PUBLISH", MessageExpiryInterval=60)) == 0
    time.sleep(3.0)  # past the first message's 2 s expiry

    again = clients("persistent", clean_start=False, properties=session(300))
    try:
        assert session_present(again), "the session was kept (expiry 300 s)"
        again.wait_message(topic, count=2)
        assert again.never(lambda: len(again.messages_on(topic)) > 2, QUIET)
        assert payloads(again, topic) == [b"durable", b"long-lived"], "the expired message is dropped from the queue"
        durable, long_lived = again.messages_on(topic)
        assert "MessageExpiryInterval" not in durable.properties, durable.properties
        assert "MessageExpiryInterval" in long_lived.properties
        # at least 3 s of its 60 were spent in the queue: the remaining time is forwarded
        assert 45 <= long_lived.properties["MessageExpiryInterval"] <= 57, long_lived.properties
    finally:
        disconnect_with_expiry(again, 0)


def test_will_expiry_counts_from_the_disconnect_and_its_properties_are_forwarded(clients, device, topic):
    watcher = clients("watcher")
    assert watcher.subscribe(topic, qos=1) == [GRANTED_QOS1]
    # not from `clients`: its socket is closed under paho, so it must not be closed again at teardown
    dying = MqttClient(watcher.server, f"{watcher.client_id}-dying", v5=True, device=device)
    will = make_properties(
        "WILLMESSAGE",
        UserProperty=[("why", "lost"), ("why", "again")],
        ContentType="text/plain",
        MessageExpiryInterval=2,
    )
    dying.paho.will_set(topic, b"gone", qos=1, properties=will)
    try:
        connected(dying)
        time.sleep(3.0)  # longer than the will's expiry: its timer starts at the disconnect, not at CONNECT
    finally:
        dying.paho.loop_stop()
        if dying.paho.socket() is not None:
            dying.paho.socket().close()  # no DISCONNECT: the connection is lost

    message = watcher.wait_message(topic)[0]
    assert message.payload == b"gone"
    assert message.properties.get("UserProperty") == [("why", "lost"), ("why", "again")]
    assert message.properties.get("ContentType") == "text/plain"
    assert "MessageExpiryInterval" in message.properties
    assert message.properties["MessageExpiryInterval"] <= 2


def test_disconnect_with_reason_0x04_sends_the_will_and_a_plain_disconnect_does_not(clients, topic):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    watcher = clients("watcher")
    assert watcher.subscribe(topic, qos=1) == [GRANTED_QOS1]
    presence = f"$aws/events/presence/disconnected/{watcher.client_id.removesuffix('watcher')}with-will"
    assert watcher.subscribe(presence, qos=1) == [GRANTED_QOS1]
    for name, reason, will_expected in [
        ("plain", ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection"), False),
        ("with-will", ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"), True),
    ]:
        leaving = clients(name, connect=False)
        leaving.paho.will_set(topic, f"will of {name}".encode(), qos=1)
        connected(leaving)
        leaving.paho.disconnect(reasoncode=reason)
        if will_expected:
            assert watcher.wait_message(topic)[0].payload == b"will of with-will"
    # The plain DISCONNECT came first: had it sent its will, that would have arrived first.
    assert payloads(watcher, topic) == [b"will of with-will"]
    # A valid DISCONNECT, not a malformed packet: the connection counts as lost, not as a client error.
    event = json.loads(watcher.wait_message(presence)[0].payload)
    assert (event["disconnectReason"], event["clientInitiatedDisconnect"]) == ("CONNECTION_LOST", False)


# --------------------------------------------------------------------------------------
# 4. topic aliases
# --------------------------------------------------------------------------------------


def alias(number: int):
    return make_properties("PUBLISH", TopicAlias=number)


def test_topic_aliases_are_resolved_for_other_subscribers(clients, topic):
    other = f"{topic}/other"
    subscriber5 = clients("sub5")
    subscriber311 = clients("sub311", v5=False)
    for subscriber in (subscriber5, subscriber311):
        assert subscriber.subscribe([(topic, 1), (other, 1)]) == [GRANTED_QOS1, GRANTED_QOS1]

    publisher = clients("pub")
    sent = [
        (topic, b"1", 1),   # alias 1 := topic
        ("", b"2", 1),      # alias 1 alone
        (other, b"3", 8),   # the highest alias the server allows
        ("", b"4", 8),
        (other, b"5", 1),   # alias 1 remapped
        ("", b"6", 1),
        ("", b"7", 8),
    ]
    for name, body, number in sent:
        assert publisher.publish(name, body, qos=1, properties=alias(number)) == 0, body
    expected = [(topic, b"1"), (topic, b"2"), (other, b"3"), (other, b"4"), (other, b"5"), (other, b"6"), (other, b"7")]
    for subscriber in (subscriber5, subscriber311):
        subscriber.wait_for(lambda s=subscriber: len(s.messages) >= len(expected), "every aliased message")
        assert [(m.topic, m.payload) for m in subscriber.messages] == expected, subscriber.client_id
    assert not any("TopicAlias" in m.properties for m in subscriber5.messages), "aliases are per connection"
    assert not publisher.disconnects


@pytest.mark.parametrize("number", [9, 0], ids=["above-maximum", "zero"])
def test_invalid_topic_alias_disconnects_with_0x94(clients, topic, number):
    client = clients("aliases")
    props = make_properties("PUBLISH")
    object.__setattr__(props, "TopicAlias", number)  # paho's setter refuses 0
    client.publish(topic, b"x", qos=1, properties=props, wait=False)
    assert server_disconnect_reason(client) == TOPIC_ALIAS_INVALID


# --------------------------------------------------------------------------------------
# 5. shared subscriptions
# --------------------------------------------------------------------------------------


def test_shared_subscriptions_deliver_each_message_to_one_member_per_group(clients, topic):
    g1 = f"$share/g1/{topic}"
    member_a, member_b = clients("g1-a"), clients("g1-b")
    assert member_a.subscribe(g1, qos=1) == [GRANTED_QOS1]
    assert member_b.subscribe(g1, qos=1) == [GRANTED_QOS1]
    member_311 = clients("g2-311", v5=False)
    assert member_311.subscribe(f"$share/g2/{topic}", qos=1) == [GRANTED_QOS1], "3.1.1 clients may share too"
    plain = clients("plain")
    assert plain.subscribe(topic, qos=1) == [GRANTED_QOS1]

    publisher = clients("pub")
    sent = [f"m{n:02d}".encode() for n in range(20)]
    for body in sent:
        assert publisher.publish(topic, body, qos=1) == 0

    plain.wait_for(lambda: len(plain.messages) >= 20, "20 messages at the plain subscriber")
    member_311.wait_for(lambda: len(member_311.messages) >= 20, "20 messages at group g2's only member")
    wait_for(lambda: len(member_a.messages) + len(member_b.messages) >= 20, "20 messages across group g1")
    time.sleep(QUIET)  # duplicates would arrive now

    assert payloads(plain) == sent
    assert sorted(payloads(member_311)) == sent
    got_a, got_b = payloads(member_a), payloads(member_b)
    assert sorted(got_a + got_b) == sent, "each message reached exactly one g1 member"
    # 20 messages over two online members: both get some unless the choice is pinned to one
    assert got_a and got_b, f"one member got everything: a={len(got_a)} b={len(got_b)}"
    assert all(m.topic == topic for c in (member_a, member_b, member_311) for m in c.messages), \
        "deliveries carry the topic, not the $share filter"


def test_retained_messages_are_not_delivered_on_shared_subscriptions(clients, topic):
    publisher = clients("pub")
    assert publisher.publish(topic, b"stored", qos=1, retain=True) == 0
    try:
        member, exact = clients("member"), clients("exact")
        assert member.subscribe(f"$share/g1/{topic}", qos=1) == [GRANTED_QOS1]
        assert exact.subscribe(topic, qos=1) == [GRANTED_QOS1]
        exact.wait_message(topic)  # the control: the stored copy exists and is delivered
        assert member.never(lambda: member.messages, QUIET), "no retained copy on a shared subscription"
        assert publisher.publish(topic, b"live", qos=1) == 0
        live = member.wait_message(topic)
        assert [(m.payload, m.retain) for m in live] == [(b"live", False)]
    finally:
        publisher.publish(topic, b"", qos=1, retain=True)


def test_unsubscribing_from_a_shared_subscription_stops_delivery(clients, topic):
    share = f"$share/g1/{topic}"
    leaving, staying = clients("leaving"), clients("staying")
    assert leaving.subscribe(share, qos=1) == [GRANTED_QOS1]
    assert staying.subscribe(share, qos=1) == [GRANTED_QOS1]
    publisher = clients("pub")
    for n in range(4):
        assert publisher.publish(topic, f"before {n}".encode(), qos=1) == 0
    wait_for(lambda: len(leaving.messages) + len(staying.messages) >= 4, "the group's deliveries")

    assert leaving.unsubscribe(share) == [0]
    before = len(leaving.messages)
    after = [f"after {n}".encode() for n in range(6)]
    for body in after:
        assert publisher.publish(topic, body, qos=1) == 0
    staying.wait_for(lambda: all(b in payloads(staying) for b in after), "every later message at the remaining member")
    assert leaving.never(lambda: len(leaving.messages) > before, QUIET)
    assert [p for p in payloads(staying) if p.startswith(b"after")] == after


@pytest.mark.parametrize(
    "bad",
    ["$share/a+b/{t}", "$share/a#b/{t}", "$share//{t}", "$share/g"],
    ids=["plus-in-group", "hash-in-group", "empty-group", "no-filter"],
)
def test_invalid_shared_subscription_filters_get_0x8f(clients, topic, bad):
    client = clients("bad-share")
    codes = subscribe_unchecked(client, bad.format(t=topic), topic)
    assert codes == [TOPIC_FILTER_INVALID, GRANTED_QOS1]
    assert not client.disconnects


def test_shared_subscriptions_need_subscribe_permission_on_the_share_filter(iot, server, tmp_path, clients, topic):
    limited = provision(iot, server, tmp_path)
    name, _ = make_policy(iot, policy_document(
        allow(["iot:Connect"], data_arn("client", f"{limited.thing}-*")),
        allow(["iot:Subscribe"], [data_arn("topicfilter", topic), data_arn("topicfilter", f"$share/g2/{topic}")]),
        allow(["iot:Receive"], data_arn("topic", topic)),
    ))
    iot.attach_policy(policyName=name, target=limited.cert_arn)
    client = clients("limited", dev=limited)
    codes = client.subscribe([(topic, 1), (f"$share/g1/{topic}", 1), (f"$share/g2/{topic}", 1)])
    assert codes == [GRANTED_QOS1, NOT_AUTHORIZED, GRANTED_QOS1], "checked on topicfilter/$share/<group>/<filter>"
    assert not client.disconnects


# --------------------------------------------------------------------------------------
# 6. subscription identifiers
# --------------------------------------------------------------------------------------


def test_subscribe_with_a_subscription_identifier_disconnects_with_0xa1(clients, topic):
    client = clients("subid")
    client.subscribe(topic, qos=1, properties=make_properties("SUBSCRIBE", SubscriptionIdentifier=1), wait=False)
    assert server_disconnect_reason(client) == SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED
    assert not client.subacks


# --------------------------------------------------------------------------------------
# 7. session expiry
# --------------------------------------------------------------------------------------


def test_session_with_an_expiry_is_resumed_with_its_subscriptions(clients, topic):
    first = clients("resumable", clean_start=False, properties=session(60))
    assert not session_present(first), "a new client id has no session"
    assert first.subscribe(topic, qos=1) == [GRANTED_QOS1]
    first.close()
    time.sleep(SETTLE)

    again = clients("resumable", clean_start=False, properties=session(60))
    try:
        assert session_present(again)
        publisher = clients("pub")
        assert publisher.publish(topic, b"to the resumed session", qos=1) == 0
        again.wait_message(topic)
        assert payloads(again, topic) == [b"to the resumed session"], "the subscription came back with the session"
    finally:
        disconnect_with_expiry(again, 0)


def test_session_expiry_zero_keeps_no_session(clients, topic):
    first = clients("ephemeral", clean_start=False, properties=session(0))
    assert first.subscribe(topic, qos=1) == [GRANTED_QOS1]
    first.close()
    time.sleep(SETTLE)
    again = clients("ephemeral", clean_start=False, properties=session(60))
    try:
        assert not session_present(again), "expiry 0: the session ended with the connection"
    finally:
        disconnect_with_expiry(again, 0)


def test_disconnect_with_session_expiry_zero_ends_the_session(clients, topic):
    first = clients("ending", clean_start=False, properties=session(60))
    assert first.subscribe(topic, qos=1) == [GRANTED_QOS1]
    disconnect_with_expiry(first, 0)
    time.sleep(SETTLE)
    again = clients("ending", clean_start=False, properties=session(60))
    try:
        assert not session_present(again), "DISCONNECT with expiry 0 ended the session"
        publisher = clients("pub")
        assert publisher.publish(topic, b"nobody listens", qos=1) == 0
        assert again.never(lambda: again.messages, QUIET), "the old subscription is gone"
    finally:
        disconnect_with_expiry(again, 0)





def _read_packet(tls) -> tuple[int, bytes]:
    """(first byte, body) of one MQTT packet."""
    first = recv_exact(tls, 1)[0]
    length, shift = 0, 0
    while True:
        byte = recv_exact(tls, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, recv_exact(tls, length)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_disconnect_cannot_raise_a_zero_session_expiry(server, device):
    """MQTT 5 3.14.2.2.2: a client that connected with expiry 0 may not set one on DISCONNECT;
    the server answers DISCONNECT 0x82 (paho closes its socket right after its DISCONNECT, so
    this speaks MQTT by hand)."""
    context = ssl_context(device.files / "ca.pem", device.files / "cert.pem", device.files / "key.pem")
    with socket.create_connection(("localhost", server.mqtt_port), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            body = mqtt_string("MQTT") + bytes([5, 0x02, 0, 60, 0]) + mqtt_string(f"{device.thing}-raw")
            tls.sendall(bytes([0x10]) + _varint(len(body)) + body)  # clean start, no properties
            kind, connack = _read_packet(tls)
            assert kind == 0x20 and connack[1] == 0, (kind, connack)
            disconnect = bytes([0x00, 5, 0x11]) + (60).to_bytes(4, "big")  # Session Expiry Interval 60
            tls.sendall(bytes([0xE0, len(disconnect)]) + disconnect)
            kind, answer = _read_packet(tls)
            assert kind == 0xE0 and answer[:1] == bytes([PROTOCOL_ERROR]), (hex(kind), answer)


# --------------------------------------------------------------------------------------
# 8. QoS 2
# --------------------------------------------------------------------------------------


def test_qos2_publish_disconnects_with_0x9b(clients, topic):
    watcher = clients("watcher")
    assert watcher.subscribe(topic, qos=1) == [GRANTED_QOS1]
    client = clients("qos2")
    client.publish(topic, b"exactly once?", qos=2, wait=False)
    assert server_disconnect_reason(client) == QOS_NOT_SUPPORTED
    assert watcher.never(lambda: watcher.messages, QUIET), "the QoS 2 message is not routed"
