"""Three ferrocore nodes as one AWS IoT Core: one PostgreSQL database, one throw-away
nats-server, real clients (paho, the AWS IoT Device SDK, boto3) connected to different nodes.

Every check here holds "whichever node a device or an API call reaches": messages
cross nodes once and only where subscribed, client ids are unique cluster-wide,
registry writes on one node reach the connections and TLS verifiers of the others,
persistent sessions outlive their node (kill -9), retained messages, rules, presence
events, DeleteConnection and shared subscriptions act cluster-wide, and a node that
loses NATS says so and refuses new devices.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from cluster_helpers import NODES, Counted, forgotten, resumes_with, start_cluster, uid, wait_until
from gateway_helpers import connected



@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory)


def adoptions(node) -> int:
    """How often the node took the parked sessions of a silent peer (its log says so)."""
    return node.log_path.read_text(errors="replace").count("took the parked sessions of a silent peer")


def test_health_names_the_node_and_its_peers(cluster):
    for node in cluster.nodes:
        status, body = node.health()
        assert status == 200 and body["status"] == "ok", body
        assert body["cluster"]["node"] == node.node_id
        assert body["cluster"]["bus"] is True
        peers = [peer["node"] for peer in body["cluster"]["peers"]]
        assert peers == sorted(set(NODES) - {node.node_id})
        assert all(peer["store"] for peer in body["cluster"]["peers"])


def test_a_publish_reaches_each_subscriber_on_every_node_once_at_its_qos(cluster):
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    base = f"cl/{uid()}"
    # Levels NATS could not carry as they are: spaces, dots, NATS wildcards, empty, non-ASCII.
    topic = f"{base}/a b/x.y/*/>//é"
    with (cluster.mqtt(n1, device, f"local-{uid()}") as local,
          cluster.mqtt(n2, device, f"overlap-{uid()}") as overlapping,
          cluster.mqtt(n3, device, f"qos0-{uid()}") as qos0,
          cluster.mqtt(n1, device, f"pub-{uid()}") as publisher):
        for client in (local, overlapping, qos0, publisher):
            connected(client)
        assert local.subscribe(f"{base}/#", qos=1) == [1]
        # Three filters of one subscriber match: it gets the message once, at the highest QoS.
        assert overlapping.subscribe([(f"{base}/#", 0), (f"{base}/+/x.y/#", 1), (topic, 0)]) == [0, 1, 0]
        assert qos0.subscribe(f"{base}/a b/#", qos=0) == [0]
        assert publisher.publish(topic, b"one", qos=1) == 0
        for client, qos in ((local, 1), (overlapping, 1), (qos0, 0)):
            [message] = client.wait_message(topic)
            assert (message.payload, message.qos) == (b"one", qos), client.client_id
        # Nothing more arrives: each node delivered its copy once.
        assert publisher.publish(f"{base}/after", b"marker", qos=1) == 0
        local.wait_message(f"{base}/after")
        overlapping.wait_message(f"{base}/after")
        assert len(overlapping.messages_on(topic)) == 1 and len(local.messages_on(topic)) == 1
        assert len(qos0.messages_on(topic)) == 1


def test_filters_sharing_a_subject_on_one_node_get_one_copy_each(cluster):
    n1, n2, _ = cluster.nodes
    device = cluster.device()
    base = f"same/{uid()}"
    # `base/#` and `base` both need the NATS subject of `base`; two MQTT shared
    # subscriptions of one group name over overlapping filters are two subscriptions.
    with (cluster.mqtt(n2, device, f"hash-{uid()}") as hash_, cluster.mqtt(n2, device, f"exact-{uid()}") as exact,
          cluster.mqtt(n2, device, f"g1-{uid()}") as group_hash, cluster.mqtt(n2, device, f"g2-{uid()}") as group_exact,
          cluster.mqtt(n1, device, f"pub-{uid()}") as publisher):
        for client in (hash_, exact, group_hash, group_exact, publisher):
            connected(client)
        hash_.subscribe(f"{base}/#", qos=1)
        exact.subscribe(base, qos=1)
        group_hash.subscribe(f"$share/g/{base}/#", qos=1)
        group_exact.subscribe(f"$share/g/{base}", qos=1)
        assert publisher.publish(base, b"one", qos=1) == 0
        assert publisher.publish(f"{base}/marker", b"two", qos=1) == 0
        hash_.wait_message(f"{base}/marker")
        group_hash.wait_message(f"{base}/marker")
        for client in (hash_, exact, group_hash, group_exact):
            client.wait_message(base)
        time.sleep(0.5)
        for client in (hash_, exact, group_hash, group_exact):
            assert len(client.messages_on(base)) == 1, client.client_id


def test_shadow_updates_through_different_nodes_lose_nothing(cluster):
    thing = cluster.device().thing
    clients = [node.client("iot-data") for node in cluster.nodes]
    errors: list[Exception] = []

    def update(client, key: str):
        for n in range(15):
            try:
                client.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"reported": {f"{key}{n}": n}}}))
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

    workers = [threading.Thread(target=update, args=(client, f"k{i}_")) for i, client in enumerate(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    document = json.loads(clients[0].get_thing_shadow(thingName=thing)["payload"].read())
    assert len(document["state"]["reported"]) == 45, "every update through every node is in the shadow"
    assert document["version"] == 45


def test_an_aws_iot_device_sdk_client_talks_across_nodes(cluster):
    """The seeds' SDK (AWSIoTPythonSDK) on n2: commands from a controller on n1 reach it,
    its telemetry reaches a watcher on n3, and its shadow update is read through n3's API."""
    sdk = pytest.importorskip("AWSIoTPythonSDK.MQTTLib", reason="AWSIoTPythonSDK is not installed; SKIPPED")
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    endpoint = cluster.iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    files = device.files
    client = sdk.AWSIoTMQTTClient(device.thing)
    client.configureEndpoint(endpoint, n2.mqtt_port)
    client.configureCredentials(str(files / "ca.pem"), str(files / "key.pem"), str(files / "cert.pem"))
    client.configureConnectDisconnectTimeout(10)
    client.configureMQTTOperationTimeout(5)
    commands: list[bytes] = []
    with cluster.mqtt(n1, device, f"controller-{uid()}") as controller, \
            cluster.mqtt(n3, device, f"watch-{uid()}") as watcher:
        connected(controller)
        connected(watcher)
        telemetry = f"sensors/{device.thing}/temperature"
        watcher.subscribe(telemetry, qos=1)
        assert client.connect()
        try:
            assert client.subscribe(f"commands/{device.thing}/#", 1, lambda c, u, m: commands.append(m.payload))
            assert controller.publish(f"commands/{device.thing}/reboot", b"reboot", qos=1) == 0
            wait_until(lambda: commands == [b"reboot"], "the command at the SDK client on n2")
            assert client.publish(telemetry, json.dumps({"temperature": 21.5}), 1)
            [reading] = watcher.wait_message(telemetry)
            assert json.loads(reading.payload) == {"temperature": 21.5}
            update = {"state": {"reported": {"firmware": "1.2"}}}
            assert client.publish(f"$aws/things/{device.thing}/shadow/update", json.dumps(update), 1)
            data = n3.client("iot-data")

            def reported():
                try:
                    shadow = json.loads(data.get_thing_shadow(thingName=device.thing)["payload"].read())
                except data.exceptions.ResourceNotFoundException:
                    return None
                return shadow["state"]["reported"]

            wait_until(lambda: reported() == {"firmware": "1.2"}, "the shadow read through n3")
        finally:
            client.disconnect()


def test_messages_go_only_to_nodes_that_subscribe(cluster):
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    topic = f"interest/{uid()}"
    with cluster.mqtt(n2, device, f"sub-{uid()}") as subscriber, cluster.mqtt(n1, device, f"pub-{uid()}") as publisher:
        connected(subscriber)
        connected(publisher)
        subscriber.subscribe(topic, qos=1)
        before = {node.node_id: node.metric("ferrocore_cluster_messages_in_total") for node in (n2, n3)}
        for n in range(20):
            assert publisher.publish(topic, str(n), qos=1) == 0
        subscriber.wait_message(topic, 20)
        time.sleep(0.5)
        received = {node.node_id: node.metric("ferrocore_cluster_messages_in_total") - before[node.node_id]
                    for node in (n2, n3)}
        assert received["n2"] >= 20, "positive control: the subscribing node received them"
        assert received["n3"] == 0, f"a node without subscribers received {received['n3']} messages"


def test_a_shared_subscription_delivers_each_message_to_one_member_in_the_cluster(cluster):
    device = cluster.device()
    base = f"shared/{uid()}"
    members = [cluster.mqtt(node, device, f"member-{node.node_id}-{uid()}") for node in cluster.nodes]
    with cluster.mqtt(cluster.nodes[0], device, f"pub-{uid()}") as publisher:
        try:
            for member in members:
                connected(member)
                assert member.subscribe(f"$share/workers/{base}/#", qos=1) == [1]
            connected(publisher)
            for n in range(60):
                assert publisher.publish(f"{base}/job", str(n), qos=1) == 0
            wait_until(lambda: sum(len(m.messages_on(f"{base}/job")) for m in members) >= 60, "60 deliveries")
            time.sleep(0.5)
            got = [[int(msg.payload) for msg in m.messages_on(f"{base}/job")] for m in members]
            assert sorted(sum(got, [])) == list(range(60)), "each message once, to one member"
            assert sum(1 for g in got if g) >= 2, f"spread over the nodes: {[len(g) for g in got]}"
        finally:
            for member in members:
                member.close()


def test_a_client_id_connecting_on_another_node_takes_over(cluster):
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    client_id = f"takeover-{uid()}"
    with cluster.mqtt(n3, device, f"watch-{uid()}") as watcher:
        connected(watcher)
        watcher.subscribe(f"$aws/events/presence/+/{client_id}", qos=1)
        first = connected(cluster.mqtt(n1, device, client_id))
        second = connected(cluster.mqtt(n2, device, client_id))
        try:
            first.wait_for(lambda: first.disconnected.is_set(), "the first connection to be taken over")
            assert second.paho.is_connected()
            [event] = watcher.wait_message(f"$aws/events/presence/disconnected/{client_id}")
            assert json.loads(event.payload)["disconnectReason"] == "DUPLICATE_CLIENTID"
        finally:
            first.close()
            second.close()
        third = connected(cluster.mqtt(n3, device, client_id))
        third.close()
        # versionNumber orders a client id's events cluster-wide: it counts on from the
        # node that had the client id before.
        connects = watcher.wait_message(f"$aws/events/presence/connected/{client_id}", 3)
        assert [json.loads(m.payload)["versionNumber"] for m in connects] == [1, 2, 3]


def test_registry_writes_on_one_node_reach_every_node(cluster):
    n1, n2, n3 = cluster.nodes
    # A certificate made through n1 after n2 started is trusted by n2's TLS verifier.
    device = cluster.device(n1.client("iot"))
    client = connected(cluster.mqtt(n2, device))
    other = connected(cluster.mqtt(n3, cluster.device(), f"control-{uid()}"))
    try:
        started = time.monotonic()
        n1.client("iot").update_certificate(certificateId=device.certificate_id, newStatus="INACTIVE")
        client.wait_for(lambda: client.disconnected.is_set(), "the deactivated certificate's connection to close", 5)
        closed_after = time.monotonic() - started
        assert closed_after < 2.0, f"closed {closed_after:.2f}s after the write"
        assert other.paho.is_connected(), "positive control: an unrelated connection stays"
        # And it cannot connect again anywhere.
        for node in (n2, n3):
            again = cluster.mqtt(node, device, f"again-{uid()}")
            try:
                assert again.connect(timeout=5) != 0
            finally:
                again.close()
    finally:
        client.close()
        other.close()


def test_a_detached_policy_closes_the_connection_on_another_node(cluster):
    n1, n2, _ = cluster.nodes
    iot = n1.client("iot")
    device = cluster.device()
    client = connected(cluster.mqtt(n2, device))
    try:
        iot.detach_policy(policyName=cluster.policy, target=device.certificate_arn)
        client.wait_for(lambda: client.disconnected.is_set(), "the connection without iot:Connect to close", 5)
    finally:
        client.close()


def test_a_persistent_session_survives_the_kill_of_its_node(cluster):
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    client_id = f"persistent-{uid()}"
    topic = f"owed/{uid()}"
    session = connected(cluster.mqtt(n2, device, client_id, clean_session=False))
    assert session.subscribe(topic, qos=1) == [1]
    session.close()
    with cluster.mqtt(n1, device, f"pub-{uid()}") as publisher:
        connected(publisher)
        time.sleep(0.3)
        for n in range(20):
            assert publisher.publish(topic, str(n), qos=1) == 0, "acknowledged"
    # The PUBACK on n1 means the messages left for n2; n2 stores them in its parked
    # session's queue a few milliseconds later (the window ARCHITECTURE.md names).
    time.sleep(1.0)
    adopted = adoptions(n1)
    n2.kill()
    try:
        # The first node alive by id (n1) takes n2's parked sessions once n2 is silent:
        # messages published while the client is still away are kept for it.
        wait_until(lambda: adoptions(n1) > adopted, "n1 to take n2's sessions")
        forgotten(cluster, n2)
        with cluster.mqtt(n3, device, f"pub-{uid()}") as publisher:
            connected(publisher)
            for n in range(20, 30):
                assert publisher.publish(topic, str(n), qos=1) == 0, "acknowledged"
        time.sleep(1.0)
        resumed = connected(cluster.mqtt(n3, device, client_id, clean_session=False))
        try:
            assert resumed.connacks[0][1] is True, "session present"
            resumed.wait_message(topic, 30)
            assert sorted(int(m.payload) for m in resumed.messages_on(topic)) == list(range(30))
            # The subscription came along: new messages reach it on its new node.
            with cluster.mqtt(n1, device, f"pub-{uid()}") as publisher:
                connected(publisher)
                assert publisher.publish(topic, b"later", qos=1) == 0
            resumed.wait_for(lambda: any(m.payload == b"later" for m in resumed.messages_on(topic)), "a later message")
        finally:
            resumed.close()
    finally:
        n2.revive()


def test_a_live_persistent_session_and_what_it_had_not_acknowledged_survive_the_kill_of_its_node(cluster):
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    client_id = f"live-{uid()}"
    topic = f"live/{uid()}"
    online = cluster.mqtt(n2, device, client_id, clean_session=False)
    online.paho.manual_ack_set(True)  # receives, never acknowledges
    connected(online)
    assert online.subscribe(topic, qos=1) == [1]
    with cluster.mqtt(n1, device, f"pub-{uid()}") as publisher:
        connected(publisher)
        for n in range(10):
            assert publisher.publish(topic, str(n), qos=1) == 0
    # Each was stored on n2 before it was sent, and is unacknowledged when n2 dies.
    online.wait_message(topic, 10)
    adopted = adoptions(n1)
    n2.kill()
    try:
        online.wait_for(lambda: online.disconnected.is_set(), "the connection to drop with its node")
        online.close()
        wait_until(lambda: adoptions(n1) > adopted, "n1 to take n2's sessions")
        # The session was stored while live: its subscription keeps new messages for it.
        with cluster.mqtt(n1, device, f"pub-{uid()}") as publisher:
            connected(publisher)
            for n in range(10, 15):
                assert publisher.publish(topic, str(n), qos=1) == 0
        resumes_with(cluster, n3, device, client_id, topic, 15)
    finally:
        n2.revive()


def test_a_qos1_publish_is_acknowledged_once_the_subscriber_s_node_has_it(cluster):
    n1, n2, _ = cluster.nodes
    device = cluster.device()
    topic, local = f"receipt/{uid()}", f"here/{uid()}"
    with cluster.mqtt(n2, device, f"sub-{uid()}", clean_session=False) as subscriber, \
            cluster.mqtt(n1, device, f"near-{uid()}") as near, \
            cluster.mqtt(n1, device, f"pub-{uid()}") as publisher:
        for client in (subscriber, near, publisher):
            connected(client)
        assert subscriber.subscribe(topic, qos=1) == [1]
        assert near.subscribe(local, qos=1) == [1]
        assert publisher.publish(topic, b"control", qos=1, timeout=3) == 0, "acknowledged while n2 answers"
        n2.freeze()
        try:
            held = publisher.publish(topic, b"held", qos=1, wait=False)
            after = publisher.publish(local, b"after", qos=1, wait=False)
            # The connection reads on: the next publish reaches its subscriber on n1 meanwhile...
            near.wait_message(local)
            time.sleep(1.0)
            # ...but neither is acknowledged: the first waits for n2, the second for the first.
            assert held not in publisher.pubacks and after not in publisher.pubacks, publisher.pubacks
        finally:
            n2.thaw()
        publisher.wait_for(lambda: publisher.pubacks.get(after) == 0, "the PUBACKs once n2 has the message", 5)
        acknowledged = [mid for mid in publisher.pubacks if mid in (held, after)]
        assert acknowledged == [held, after], "PUBACKs in the order of the publishes"
        subscriber.wait_for(lambda: any(m.payload == b"held" for m in subscriber.messages_on(topic)), "the message")


def test_subscribers_coming_and_going_on_another_node_never_hold_up_a_publisher(cluster):
    n1, n2, _ = cluster.nodes
    device = cluster.device()
    topic = f"churn/{uid()}"
    publisher = connected(cluster.mqtt(n1, device, f"pub-{uid()}"))
    load = Counted(publisher, topic, timeout=3)
    try:
        for n in range(30):
            # Each takes part of the stream, then leaves while messages to it are in flight:
            # receipts still come for what n1 forwarded before it heard of the leaving.
            with cluster.mqtt(n2, device, f"churn-{n}-{uid()}") as subscriber:
                connected(subscriber)
                assert subscriber.subscribe(topic, qos=1) == [1]
                subscriber.wait_message(topic)
        before = len(load.acknowledged)
        wait_until(lambda: len(load.acknowledged) > before + 50, "the publisher to go on")
        assert load.running(), "a publisher was refused because a subscriber left"
    finally:
        load.stop()
        publisher.close()


def test_nothing_acknowledged_is_lost_when_the_subscriber_s_node_is_killed(cluster):
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    client_id = f"sub-{uid()}"
    topic = f"load/{uid()}"
    subscriber = connected(cluster.mqtt(n2, device, client_id, clean_session=False))
    assert subscriber.subscribe(topic, qos=1) == [1]
    publisher = connected(cluster.mqtt(n1, device, f"pub-{uid()}"))
    load = Counted(publisher, topic, timeout=10)
    try:
        wait_until(lambda: len(load.acknowledged) >= 200, "200 acknowledged publishes")
        n2.kill()
        # The publish in flight is refused once n1 counts n2 out: n2 never sent its receipt.
        assert load.finish(15), "the publisher was neither acknowledged nor refused"
        subscriber.close()
        forgotten(cluster, n2)
        resumed = connected(cluster.mqtt(n3, device, client_id, clean_session=False))
        try:
            assert resumed.connacks[0][1] is True, "session present"
            delivered = lambda: {int(m.payload) for m in resumed.messages_on(topic) + subscriber.messages_on(topic)}
            wait_until(lambda: delivered() >= set(load.acknowledged),
                       f"all {len(load.acknowledged)} acknowledged messages delivered", 10)
        finally:
            resumed.close()
    finally:
        load.stop()
        publisher.close()
        n2.revive()


def test_nothing_acknowledged_is_lost_when_the_publisher_s_node_is_killed(cluster):
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    topic = f"load/{uid()}"
    with cluster.mqtt(n3, device, f"sub-{uid()}") as subscriber:
        connected(subscriber)
        subscriber.subscribe(topic, qos=1)
        publisher = connected(cluster.mqtt(n1, device, f"pub-{uid()}"))
        load = Counted(publisher, topic, timeout=3)
        try:
            wait_until(lambda: len(load.acknowledged) >= 200, "200 acknowledged publishes")
            n1.kill()
            load.finish(10)
            assert len(load.acknowledged) >= 200
            wait_until(lambda: {int(m.payload) for m in subscriber.messages_on(topic)} >= set(load.acknowledged),
                       f"all {len(load.acknowledged)} acknowledged messages delivered", 10)
        finally:
            load.stop()
            publisher.close()
            n1.revive()


def test_retained_messages_rules_and_presence_are_one_per_cluster(cluster):
    n1, n2, n3 = cluster.nodes
    iot = n1.client("iot")
    device = cluster.device()
    base = f"once/{uid()}"
    rule = f"cluster_{uid()}"
    iot.create_topic_rule(ruleName=rule, topicRulePayload={
        "sql": f"SELECT * FROM '{base}/in'", "ruleDisabled": False, "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": f"{base}/out", "roleArn": "arn:aws:iam::000000000000:role/r", "qos": 1}}]})
    try:
        with cluster.mqtt(n3, device, f"watch-{uid()}") as watcher, cluster.mqtt(n1, device, f"pub-{uid()}") as publisher:
            connected(watcher)
            connected(publisher)
            watcher.subscribe([(f"{base}/out", 1), ("$aws/events/presence/connected/+", 1)])
            publisher.publish(f"{base}/retained", b"kept", qos=1, retain=True)
            # Rules are loaded on every node; the message's rule runs on n1 only.
            time.sleep(1.0)
            assert publisher.publish(f"{base}/in", b"{}", qos=1) == 0
            watcher.wait_message(f"{base}/out")
            probe_id = f"probe-{uid()}"
            probe = connected(cluster.mqtt(n2, device, probe_id))
            probe.close()
            watcher.wait_for(lambda: any(probe_id in m.topic for m in watcher.messages), "the connected event")
            time.sleep(1.0)
            assert len(watcher.messages_on(f"{base}/out")) == 1, "the rule ran once"
            assert len([m for m in watcher.messages if m.topic.endswith(f"/{probe_id}")]) == 1, "one connected event"
        # A subscriber on another node gets the retained message.
        with cluster.mqtt(n2, device, f"late-{uid()}") as late:
            connected(late)
            late.subscribe(f"{base}/retained", qos=1)
            [kept] = late.wait_message(f"{base}/retained")
            assert (kept.payload, kept.retain) == (b"kept", True)
    finally:
        iot.delete_topic_rule(ruleName=rule)


def test_delete_connection_reaches_a_client_on_another_node(cluster):
    n1, _, n3 = cluster.nodes
    device = cluster.device()
    client_id = f"kicked-{uid()}"
    data = n1.client("iot-data")
    with pytest.raises(data.exceptions.ResourceNotFoundException):
        data.delete_connection(clientId=client_id)
    client = connected(cluster.mqtt(n3, device, client_id))
    try:
        data.delete_connection(clientId=client_id)
        client.wait_for(lambda: client.disconnected.is_set(), "DeleteConnection to close it", 5)
    finally:
        client.close()


def test_a_node_that_loses_nats_refuses_new_devices_and_says_so(cluster):
    n1 = cluster.nodes[0]
    device = cluster.device()
    cluster.nats.stop()
    try:
        wait_until(lambda: n1.health()[0] == 503, "/health to say degraded")
        status, body = n1.health()
        assert body["status"] == "degraded" and body["cluster"]["bus"] is False
        refused = cluster.mqtt(n1, device, f"refused-{uid()}")
        try:
            assert refused.connect(timeout=10) not in (0, None), "CONNACK refuses while NATS is gone"
        finally:
            refused.close()
    finally:
        cluster.nats.start()
    wait_until(lambda: all(node.health()[0] == 200 for node in cluster.nodes), "every node healthy again", 30)
    # What was told while NATS was away may be lost: each node reads the registry again.
    wait_until(lambda: all("back on the message bus" in node.log_tail() for node in cluster.nodes), "every node to resync")
    accepted = connected(cluster.mqtt(n1, device, f"accepted-{uid()}"))
    accepted.close()
