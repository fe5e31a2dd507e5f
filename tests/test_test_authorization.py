"""TestAuthorization: the IoT policy language evaluated by the service (reference section 3).

The main fixture is seed 000's "walled garden": thing T, a certificate attached to T, and a
policy that lets the certificate connect as T and use only T's own $aws/things/T/ topics
through ${iot:Connection.Thing.ThingName}.

Reference Appendix A: moto does no policy evaluation, so this module fails against moto.
"""

from __future__ import annotations

import pytest

from iot_helpers import iot_arn, unique_name
from security_helpers import (
    allow,
    authorize,
    aws_error,
    data_arn,
    decision,
    deny,
    make_device,
    make_policy,
    policy_document,
    policy_names,
    walled_garden_document,
)

ALLOWED, IMPLICIT_DENY, EXPLICIT_DENY = "ALLOWED", "IMPLICIT_DENY", "EXPLICIT_DENY"


def client(client_id: str) -> str:
    return data_arn("client", client_id)


def topic(name: str) -> str:
    return data_arn("topic", name)


def topicfilter(name: str) -> str:
    return data_arn("topicfilter", name)


def shadow_update(thing: str) -> str:
    return f"$aws/things/{thing}/shadow/update"


@pytest.fixture(scope="module")
def garden(client_factory):
    """Thing T, certificate attached to T (NON_EXCLUSIVE), walled-garden policy attached to
    the certificate. Tests must not attach anything else to it."""
    iot = client_factory("iot")
    device = make_device(iot)
    policy, policy_arn = make_policy(iot, walled_garden_document())
    iot.attach_policy(policyName=policy, target=device.cert_arn)
    return device, policy, policy_arn


def device_with_policy(iot, document: str, **device_kwargs):
    """A fresh device whose certificate has exactly one policy (document) attached."""
    device = make_device(iot, **device_kwargs)
    policy, _ = make_policy(iot, document)
    iot.attach_policy(policyName=policy, target=device.cert_arn)
    return device, policy


# --------------------------------------------------------------------------------------
# the walled garden of seed 000
# --------------------------------------------------------------------------------------


def test_connect_as_the_thing_is_allowed(iot, garden):
    device, policy, policy_arn = garden
    result = authorize(iot, device.cert_arn, "CONNECT", client(device.thing), client_id=device.thing)
    assert result["authDecision"] == ALLOWED
    assert result["authInfo"] == {"actionType": "CONNECT", "resources": [client(device.thing)]}
    assert {"policyName": policy, "policyArn": policy_arn} in result["allowed"]["policies"]


def test_connect_as_another_client_is_denied(iot, garden):
    device, _, _ = garden
    other = unique_name("other")
    # no thing named `other` is attached: ThingName does not resolve, nothing allows
    assert decision(iot, device.cert_arn, "CONNECT", client(other), client_id=other) == IMPLICIT_DENY
    # nor may the device claim the thing's client id while connecting as someone else
    assert decision(iot, device.cert_arn, "CONNECT", client(device.thing), client_id=other) == IMPLICIT_DENY


def test_principal_may_be_given_as_certificate_id(iot, garden):
    # [VERIFY] the API reference lists the certificate ARN form; the bare certificate id is
    # accepted as well (as AttachPrincipalPolicy historically did).
    device, _, _ = garden
    assert decision(iot, device.cert_id, "CONNECT", client(device.thing), client_id=device.thing) == ALLOWED


def test_publish_and_receive_on_own_shadow_only(iot, garden):
    device, _, _ = garden
    own, other = shadow_update(device.thing), shadow_update(unique_name("OTHER"))
    for action in ("PUBLISH", "RECEIVE"):
        assert decision(iot, device.cert_arn, action, topic(own), client_id=device.thing) == ALLOWED
        assert decision(iot, device.cert_arn, action, topic(other), client_id=device.thing) == IMPLICIT_DENY
    # outside $aws/things/<thing>/
    assert decision(iot, device.cert_arn, "PUBLISH", topic("telemetry"), client_id=device.thing) == IMPLICIT_DENY


def test_subscribe_on_own_topic_filters_only(iot, garden):
    device, _, _ = garden
    own = f"$aws/things/{device.thing}/shadow/#"
    assert decision(iot, device.cert_arn, "SUBSCRIBE", topicfilter(own), client_id=device.thing) == ALLOWED
    other = f"$aws/things/{unique_name('OTHER')}/shadow/#"
    assert decision(iot, device.cert_arn, "SUBSCRIBE", topicfilter(other), client_id=device.thing) == IMPLICIT_DENY
    # a filter wider than the thing's own ("+" is literal in policies) is not covered
    assert decision(iot, device.cert_arn, "SUBSCRIBE", topicfilter("$aws/things/+/shadow/#"), client_id=device.thing) == IMPLICIT_DENY


def test_one_result_per_auth_info(iot, garden):
    device, _, _ = garden
    infos = [
        {"actionType": "CONNECT", "resources": [client(device.thing)]},
        {"actionType": "PUBLISH", "resources": [topic(shadow_update("someone-else"))]},
        {"actionType": "SUBSCRIBE", "resources": [topicfilter(f"$aws/things/{device.thing}/shadow/update/accepted")]},
    ]
    results = iot.test_authorization(principal=device.cert_arn, clientId=device.thing, authInfos=infos)["authResults"]
    assert len(results) == 3
    # each result echoes its authInfo
    by_action = {r["authInfo"]["actionType"]: r for r in results}
    assert {action: r["authInfo"] for action, r in by_action.items()} == {i["actionType"]: i for i in infos}
    assert by_action["CONNECT"]["authDecision"] == ALLOWED
    assert by_action["PUBLISH"]["authDecision"] == IMPLICIT_DENY
    assert by_action["SUBSCRIBE"]["authDecision"] == ALLOWED


# --------------------------------------------------------------------------------------
# explicit deny, policyNamesToAdd / policyNamesToSkip
# --------------------------------------------------------------------------------------


def test_explicit_deny_beats_allow(iot):
    device, allowing = device_with_policy(iot, walled_garden_document())
    denying, denying_arn = make_policy(
        iot, policy_document(deny("iot:Publish", topic(shadow_update(device.thing))))
    )
    iot.attach_policy(policyName=denying, target=device.cert_arn)

    result = authorize(iot, device.cert_arn, "PUBLISH", topic(shadow_update(device.thing)), client_id=device.thing)
    assert result["authDecision"] == EXPLICIT_DENY
    assert {"policyName": denying, "policyArn": denying_arn} in result["denied"]["explicitDeny"]["policies"]
    assert allowing not in policy_names(result["denied"]["explicitDeny"]["policies"])

    # the Deny covers one topic only
    other = f"$aws/things/{device.thing}/shadow/get"
    assert decision(iot, device.cert_arn, "PUBLISH", topic(other), client_id=device.thing) == ALLOWED
    assert decision(iot, device.cert_arn, "RECEIVE", topic(shadow_update(device.thing)), client_id=device.thing) == ALLOWED


def test_policy_names_to_add_grants_without_attaching(iot):
    device = make_device(iot)
    extra, extra_arn = make_policy(iot, policy_document(allow("iot:Publish", topic("added/*"))))
    assert decision(iot, device.cert_arn, "PUBLISH", topic("added/x"), client_id=device.thing) == IMPLICIT_DENY

    result = authorize(
        iot, device.cert_arn, "PUBLISH", topic("added/x"), client_id=device.thing, policyNamesToAdd=[extra]
    )
    assert result["authDecision"] == ALLOWED
    assert {"policyName": extra, "policyArn": extra_arn} in result["allowed"]["policies"]
    # nothing was attached
    assert iot.list_attached_policies(target=device.cert_arn).get("policies", []) == []
    assert decision(iot, device.cert_arn, "PUBLISH", topic("added/x"), client_id=device.thing) == IMPLICIT_DENY


def test_policy_names_to_skip_removes_an_attached_policy(iot, garden):
    device, policy, _ = garden
    resource = topic(shadow_update(device.thing))
    assert decision(iot, device.cert_arn, "PUBLISH", resource, client_id=device.thing) == ALLOWED
    assert (
        decision(iot, device.cert_arn, "PUBLISH", resource, client_id=device.thing, policyNamesToSkip=[policy])
        == IMPLICIT_DENY
    )
    # still attached afterwards
    assert policy in policy_names(iot.list_attached_policies(target=device.cert_arn)["policies"])


def test_skipping_the_denying_policy_restores_the_allow(iot):
    device, _ = device_with_policy(iot, walled_garden_document())
    denying, _ = make_policy(iot, policy_document(deny("iot:*", "*")))
    iot.attach_policy(policyName=denying, target=device.cert_arn)
    resource = topic(shadow_update(device.thing))
    assert decision(iot, device.cert_arn, "PUBLISH", resource, client_id=device.thing) == EXPLICIT_DENY
    assert (
        decision(iot, device.cert_arn, "PUBLISH", resource, client_id=device.thing, policyNamesToSkip=[denying])
        == ALLOWED
    )


# --------------------------------------------------------------------------------------
# policies attached to thing groups
# --------------------------------------------------------------------------------------


def test_policy_of_the_things_group_applies(iot):
    device = make_device(iot)  # no policy on the certificate
    group = unique_name("group")
    iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=device.thing)
    policy, policy_arn = make_policy(iot, walled_garden_document())
    iot.attach_policy(policyName=policy, target=iot_arn("thinggroup", group))

    result = authorize(iot, device.cert_arn, "CONNECT", client(device.thing), client_id=device.thing)
    assert result["authDecision"] == ALLOWED
    assert {"policyName": policy, "policyArn": policy_arn} in result["allowed"]["policies"]
    assert decision(iot, device.cert_arn, "PUBLISH", topic(shadow_update(device.thing)), client_id=device.thing) == ALLOWED

    # the group's policies reach the certificate through the thing the client id names
    other = unique_name("other")
    assert decision(iot, device.cert_arn, "CONNECT", client(other), client_id=other) == IMPLICIT_DENY

    iot.remove_thing_from_thing_group(thingGroupName=group, thingName=device.thing)
    assert decision(iot, device.cert_arn, "CONNECT", client(device.thing), client_id=device.thing) == IMPLICIT_DENY


def test_policy_of_a_parent_group_is_inherited(iot):
    device = make_device(iot)
    parent, child = unique_name("parent"), unique_name("child")
    iot.create_thing_group(thingGroupName=parent)
    iot.create_thing_group(thingGroupName=child, parentGroupName=parent)
    iot.add_thing_to_thing_group(thingGroupName=child, thingName=device.thing)
    policy, _ = make_policy(iot, policy_document(allow("iot:Publish", topic("fleet/*"))))
    iot.attach_policy(policyName=policy, target=iot_arn("thinggroup", parent))

    result = authorize(iot, device.cert_arn, "PUBLISH", topic("fleet/status"), client_id=device.thing)
    assert result["authDecision"] == ALLOWED
    assert policy in policy_names(result["allowed"]["policies"])


def test_deny_on_a_group_beats_allow_on_the_certificate(iot):
    device, _ = device_with_policy(iot, walled_garden_document())
    group = unique_name("group")
    iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=device.thing)
    denying, _ = make_policy(iot, policy_document(deny("iot:Connect", "*")))
    iot.attach_policy(policyName=denying, target=iot_arn("thinggroup", group))
    result = authorize(iot, device.cert_arn, "CONNECT", client(device.thing), client_id=device.thing)
    assert result["authDecision"] == EXPLICIT_DENY
    assert denying in policy_names(result["denied"]["explicitDeny"]["policies"])


# --------------------------------------------------------------------------------------
# policy variables
# --------------------------------------------------------------------------------------


def test_client_id_variable(iot):
    device, _ = device_with_policy(iot, policy_document(allow("iot:Publish", topic("clients/${iot:ClientId}/*"))))
    assert decision(iot, device.cert_arn, "PUBLISH", topic("clients/abc/data"), client_id="abc") == ALLOWED
    assert decision(iot, device.cert_arn, "PUBLISH", topic("clients/xyz/data"), client_id="abc") == IMPLICIT_DENY


def test_thing_name_variable(iot):
    device, _ = device_with_policy(
        iot, policy_document(allow("iot:Publish", topic("things/${iot:Connection.Thing.ThingName}")))
    )
    assert decision(iot, device.cert_arn, "PUBLISH", topic(f"things/{device.thing}"), client_id=device.thing) == ALLOWED
    assert decision(iot, device.cert_arn, "PUBLISH", topic("things/other"), client_id=device.thing) == IMPLICIT_DENY


def test_thing_attribute_variable(iot):
    document = policy_document(
        allow("iot:Publish", topic("building/floor-${iot:Connection.Thing.Attributes[floor]}/*"))
    )
    device, _ = device_with_policy(
        iot, document, create_thing={"attributePayload": {"attributes": {"floor": "3"}}}
    )
    assert decision(iot, device.cert_arn, "PUBLISH", topic("building/floor-3/temp"), client_id=device.thing) == ALLOWED
    assert decision(iot, device.cert_arn, "PUBLISH", topic("building/floor-4/temp"), client_id=device.thing) == IMPLICIT_DENY


def test_missing_thing_attribute_does_not_match(iot):
    # an attribute the thing lacks leaves the variable unresolved: the statement never matches
    document = policy_document(allow("iot:Publish", topic("room/${iot:Connection.Thing.Attributes[room]}")))
    device, _ = device_with_policy(iot, document)
    assert decision(iot, device.cert_arn, "PUBLISH", topic("room/"), client_id=device.thing) == IMPLICIT_DENY
    assert decision(iot, device.cert_arn, "PUBLISH", topic("room/1"), client_id=device.thing) == IMPLICIT_DENY


def test_thing_type_variable(iot):
    thing_type = unique_name("type")
    iot.create_thing_type(thingTypeName=thing_type)
    document = policy_document(allow("iot:Publish", topic("types/${iot:Connection.Thing.ThingTypeName}/*")))
    device, _ = device_with_policy(iot, document, create_thing={"thingTypeName": thing_type})
    assert decision(iot, device.cert_arn, "PUBLISH", topic(f"types/{thing_type}/x"), client_id=device.thing) == ALLOWED
    assert decision(iot, device.cert_arn, "PUBLISH", topic("types/other/x"), client_id=device.thing) == IMPLICIT_DENY


def test_certificate_common_name_variable(iot):
    cn = unique_name("sensor-cn")
    document = policy_document(allow("iot:Publish", topic("cn/${iot:Certificate.Subject.CommonName}")))
    device, _ = device_with_policy(iot, document, cn=cn)
    # certificate variables do not depend on the thing: any client id
    assert decision(iot, device.cert_arn, "PUBLISH", topic(f"cn/{cn}"), client_id="anything") == ALLOWED
    assert decision(iot, device.cert_arn, "PUBLISH", topic("cn/someone-else"), client_id="anything") == IMPLICIT_DENY


# --------------------------------------------------------------------------------------
# wildcards
# --------------------------------------------------------------------------------------


def test_star_and_question_mark_wildcards(iot):
    document = policy_document(
        allow("iot:Publish", [topic("sensors/*/temp"), topic("dev?")])
    )
    device, _ = device_with_policy(iot, document)

    def publish(name: str) -> str:
        return decision(iot, device.cert_arn, "PUBLISH", topic(name), client_id=device.thing)

    # * is any sequence, slashes included
    assert publish("sensors/a/temp") == ALLOWED
    assert publish("sensors/a/b/c/temp") == ALLOWED
    assert publish("sensors/a/humidity") == IMPLICIT_DENY
    # ? is exactly one character
    assert publish("dev1") == ALLOWED
    assert publish("dev") == IMPLICIT_DENY
    assert publish("dev12") == IMPLICIT_DENY


def test_mqtt_wildcards_are_literal_in_policies(iot):
    document = policy_document(allow("iot:Subscribe", [topicfilter("a/+"), topicfilter("b/#")]))
    device, _ = device_with_policy(iot, document)

    def subscribe(name: str) -> str:
        return decision(iot, device.cert_arn, "SUBSCRIBE", topicfilter(name), client_id=device.thing)

    assert subscribe("a/+") == ALLOWED
    assert subscribe("a/b") == IMPLICIT_DENY
    assert subscribe("b/#") == ALLOWED
    assert subscribe("b/c") == IMPLICIT_DENY
    assert subscribe("b/c/#") == IMPLICIT_DENY


def test_action_wildcard(iot):
    device, _ = device_with_policy(iot, policy_document(allow("iot:*", topic("any/thing"))))
    for action in ("PUBLISH", "RECEIVE"):
        assert decision(iot, device.cert_arn, action, topic("any/thing"), client_id=device.thing) == ALLOWED
    assert decision(iot, device.cert_arn, "CONNECT", client(device.thing), client_id=device.thing) == IMPLICIT_DENY


def test_action_must_match_the_resource_kind(iot):
    # iot:Publish on topic/... does not allow subscribing to the same string
    device, _ = device_with_policy(iot, policy_document(allow("iot:Publish", topic("only/publish"))))
    assert decision(iot, device.cert_arn, "PUBLISH", topic("only/publish"), client_id=device.thing) == ALLOWED
    assert decision(iot, device.cert_arn, "RECEIVE", topic("only/publish"), client_id=device.thing) == IMPLICIT_DENY
    assert decision(iot, device.cert_arn, "SUBSCRIBE", topicfilter("only/publish"), client_id=device.thing) == IMPLICIT_DENY


# --------------------------------------------------------------------------------------
# conditions
# --------------------------------------------------------------------------------------


def test_string_equals_condition_on_client_id(iot):
    document = policy_document(
        allow("iot:Connect", client("*"), {"StringEquals": {"iot:ClientId": "gateway-1"}})
    )
    device, _ = device_with_policy(iot, document)
    assert decision(iot, device.cert_arn, "CONNECT", client("gateway-1"), client_id="gateway-1") == ALLOWED
    assert decision(iot, device.cert_arn, "CONNECT", client("gateway-2"), client_id="gateway-2") == IMPLICIT_DENY


def test_bool_condition_on_is_attached(iot):
    document = policy_document(
        allow("iot:Connect", client("*"), {"Bool": {"iot:Connection.Thing.IsAttached": "true"}})
    )
    device, _ = device_with_policy(iot, document)
    assert decision(iot, device.cert_arn, "CONNECT", client(device.thing), client_id=device.thing) == ALLOWED
    # a client id that names no attached thing: IsAttached is false
    other = unique_name("other")
    assert decision(iot, device.cert_arn, "CONNECT", client(other), client_id=other) == IMPLICIT_DENY

    # a thing that exists but is not attached to this certificate
    stranger = unique_name("stranger")
    iot.create_thing(thingName=stranger)
    assert decision(iot, device.cert_arn, "CONNECT", client(stranger), client_id=stranger) == IMPLICIT_DENY


# --------------------------------------------------------------------------------------
# NON_EXCLUSIVE_THING versus EXCLUSIVE_THING (reference 3.4)
# --------------------------------------------------------------------------------------


def test_non_exclusive_thing_variables_need_client_id_equal_to_thing_name(iot):
    device, _ = device_with_policy(iot, walled_garden_document(), principal_type="NON_EXCLUSIVE_THING")
    resource = topic(shadow_update(device.thing))
    assert decision(iot, device.cert_arn, "PUBLISH", resource, client_id=device.thing) == ALLOWED
    assert decision(iot, device.cert_arn, "PUBLISH", resource, client_id=unique_name("other")) == IMPLICIT_DENY


def test_exclusive_thing_variables_resolve_for_any_client_id(iot):
    device, _ = device_with_policy(iot, walled_garden_document(), principal_type="EXCLUSIVE_THING")
    resource = topic(shadow_update(device.thing))
    assert decision(iot, device.cert_arn, "PUBLISH", resource, client_id=device.thing) == ALLOWED
    assert decision(iot, device.cert_arn, "PUBLISH", resource, client_id=unique_name("other")) == ALLOWED
    # the thing is the exclusive one, never the one the client id names
    other = make_device(iot)
    assert (
        decision(iot, device.cert_arn, "PUBLISH", topic(shadow_update(other.thing)), client_id=other.thing)
        == IMPLICIT_DENY
    )


def test_exclusive_thing_is_attached_for_any_client_id(iot):
    document = policy_document(
        allow("iot:Connect", client("*"), {"Bool": {"iot:Connection.Thing.IsAttached": "true"}})
    )
    device, _ = device_with_policy(iot, document, principal_type="EXCLUSIVE_THING")
    other = unique_name("other")
    assert decision(iot, device.cert_arn, "CONNECT", client(other), client_id=other) == ALLOWED


def test_thing_group_policy_applies_to_exclusive_thing_for_any_client_id(iot):
    device = make_device(iot, principal_type="EXCLUSIVE_THING")
    group = unique_name("group")
    iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=device.thing)
    policy, _ = make_policy(iot, policy_document(allow("iot:Publish", topic("group/*"))))
    iot.attach_policy(policyName=policy, target=iot_arn("thinggroup", group))
    assert decision(iot, device.cert_arn, "PUBLISH", topic("group/x"), client_id=unique_name("other")) == ALLOWED


# --------------------------------------------------------------------------------------
# principal state
# --------------------------------------------------------------------------------------


def test_policies_follow_detachment(iot):
    device, policy = device_with_policy(iot, walled_garden_document())
    resource = client(device.thing)
    assert decision(iot, device.cert_arn, "CONNECT", resource, client_id=device.thing) == ALLOWED
    iot.detach_policy(policyName=policy, target=device.cert_arn)
    assert decision(iot, device.cert_arn, "CONNECT", resource, client_id=device.thing) == IMPLICIT_DENY


def test_new_default_version_takes_effect(iot):
    device, policy = device_with_policy(iot, policy_document(allow("iot:Publish", topic("v1"))))
    assert decision(iot, device.cert_arn, "PUBLISH", topic("v1"), client_id=device.thing) == ALLOWED
    iot.create_policy_version(
        policyName=policy, policyDocument=policy_document(allow("iot:Publish", topic("v2"))), setAsDefault=True
    )
    assert decision(iot, device.cert_arn, "PUBLISH", topic("v1"), client_id=device.thing) == IMPLICIT_DENY
    assert decision(iot, device.cert_arn, "PUBLISH", topic("v2"), client_id=device.thing) == ALLOWED
    # a non-default version has no effect
    iot.create_policy_version(
        policyName=policy, policyDocument=policy_document(allow("iot:Publish", topic("v3"))), setAsDefault=False
    )
    assert decision(iot, device.cert_arn, "PUBLISH", topic("v3"), client_id=device.thing) == IMPLICIT_DENY


def test_unknown_policy_to_add(iot, garden):
    # [VERIFY] undocumented; ResourceNotFoundException is in TestAuthorization's modelled errors
    device, _, _ = garden
    with aws_error("ResourceNotFoundException"):
        authorize(
            iot, device.cert_arn, "CONNECT", client(device.thing), client_id=device.thing,
            policyNamesToAdd=[unique_name("missing")],
        )
