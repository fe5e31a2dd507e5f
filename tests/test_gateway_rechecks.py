"""Targeted re-checks (issue 15): a registry write re-checks only the live connections
whose permissions it can change, seen with real clients (paho 3.1.1/5) and boto3, and
counted by `ferrocore_mqtt_permission_rechecks_total` on /metrics. The Rust halves are in
crates/registry/src/dependencies.rs, crates/registry/tests/registry.rs and
crates/broker/tests/gateway.rs."""

from __future__ import annotations

import json
import time
import uuid

from gateway_helpers import MqttClient, connected, wait_for
from iot_helpers import REGION
from rules_helpers import current
from test_gateway_mqtt import everything_allowed, provision

RECHECKS = "ferrocore_mqtt_permission_rechecks_total"


def rechecks_settle(server, expected: float) -> float:
    """Waits until the counter reaches `expected`, then a little longer, and answers it
    (re-checks run in order after each write, so a later count includes every earlier write)."""
    wait_for(lambda: current(server, RECHECKS) >= expected, f"{RECHECKS} >= {expected}")
    time.sleep(0.3)
    return current(server, RECHECKS)


def test_a_write_rechecks_only_the_connections_whose_permissions_it_can_change(iot, server, tmp_path):
    a, b = provision(iot, server, tmp_path), provision(iot, server, tmp_path)
    for device in (a, b):
        everything_allowed(iot, device)
    topic = f"rechecks/{uuid.uuid4().hex[:8]}"
    with MqttClient(server, a.thing, v5=True, device=a) as client_a, MqttClient(server, b.thing, device=b) as client_b:
        connected(client_a)
        connected(client_b)
        client_b.subscribe(f"{topic}/#", qos=1)
        assert client_a.publish(f"{topic}/1", b"allowed", qos=1) == 0
        client_b.wait_message(f"{topic}/1")
        before = current(server, RECHECKS)

        # Writes that cannot change a's or b's permissions.
        group = f"rechecks-{uuid.uuid4().hex[:8]}"
        group_arn = iot.create_thing_group(thingGroupName=group)["thingGroupArn"]
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=a.thing)
        after_membership = rechecks_settle(server, before + 1)
        assert after_membership == before + 1, "joining a group re-checks the thing's connection only"
        iot.create_thing(thingName=f"unrelated-{uuid.uuid4().hex[:8]}")
        iot.create_keys_and_certificate(setAsActive=False)
        iot.tag_resource(resourceArn=group_arn, tags=[{"Key": "site", "Value": "north"}])
        iot.update_thing_group(thingGroupName=group, thingGroupProperties={"thingGroupDescription": "floor 1"})
        deny = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": "iot:Publish", "Resource": f"arn:aws:iot:{REGION}:*:topic/{topic}/*"}]}
        iot.create_policy(policyName=f"{group}-deny", policyDocument=json.dumps(deny))

        # A write that changes a's permissions: attaching the policy to a's group.
        iot.attach_policy(policyName=f"{group}-deny", target=group_arn)
        assert rechecks_settle(server, after_membership + 1) == after_membership + 1, "only a was re-checked"
        assert client_a.publish(f"{topic}/2", b"denied", qos=1) == 0x87, "a's live connection has the new policy"
        assert client_b.publish(f"{topic}/3", b"from b", qos=1) == 0
        client_b.wait_message(f"{topic}/3")
        assert not client_a.disconnected.is_set()

        # Revoking b's certificate re-checks and closes b alone, at once.
        revoked = time.monotonic()
        iot.update_certificate(certificateId=b.cert_id, newStatus="INACTIVE")
        client_b.wait_for(lambda: client_b.disconnected.is_set(), "b closed after revocation")
        assert time.monotonic() - revoked < 2.0
        assert rechecks_settle(server, after_membership + 2) == after_membership + 2
        assert client_a.publish(f"{topic}-other/x", b"still here", qos=1) == 0
