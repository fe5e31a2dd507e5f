"""IoT policies, policy versions, policy and thing-principal attachments, role aliases,
through boto3.

Expectations are AWS IoT Core's (shared/reference/aws-iot-core.md sections 0, 3.5, 6, 8).
"""

from __future__ import annotations

import json

import pytest

from iot_helpers import ACCOUNT_ID, collect_pages, iot_arn, unique_name
from security_helpers import (
    allow,
    assert_recent,
    aws_error,
    collect_marker_pages,
    data_arn,
    deny,
    make_policy,
    policy_document,
    register_without_ca,
    significant_length,
    unvalidated_client,
    walled_garden_document,
)

DOC_CONNECT = policy_document(allow("iot:Connect", data_arn("client", "*")))
DOC_PUBLISH = policy_document(allow(["iot:Publish", "iot:Receive"], data_arn("topic", "a/*")))


def doc_for_version(n: int) -> str:
    return policy_document(allow("iot:Publish", data_arn("topic", f"version/{n}")))


def same_json(a: str, b: str) -> bool:
    return json.loads(a) == json.loads(b)


def attached(iot, target: str, **kwargs) -> set[str]:
    items, _ = collect_marker_pages(iot.list_attached_policies, "policies", page_size=250, target=target, **kwargs)
    return {p["policyName"] for p in items}


def targets_of(iot, policy: str) -> set[str]:
    items, _ = collect_marker_pages(iot.list_targets_for_policy, "targets", page_size=250, policyName=policy)
    return set(items)


def make_group(iot, parent: str | None = None) -> tuple[str, str]:
    name = unique_name("group")
    response = iot.create_thing_group(thingGroupName=name, **({"parentGroupName": parent} if parent else {}))
    return name, response["thingGroupArn"]


# --------------------------------------------------------------------------------------
# CreatePolicy / GetPolicy / ListPolicies / DeletePolicy
# --------------------------------------------------------------------------------------


def test_create_and_get_policy(iot):
    name = unique_name("policy")
    document = walled_garden_document()
    created = iot.create_policy(policyName=name, policyDocument=document)
    assert created["policyName"] == name
    assert created["policyArn"] == iot_arn("policy", name)
    assert created["policyVersionId"] == "1"
    assert same_json(created["policyDocument"], document)

    got = iot.get_policy(policyName=name)
    assert got["policyName"] == name
    assert got["policyArn"] == iot_arn("policy", name)
    assert got["defaultVersionId"] == "1"
    assert same_json(got["policyDocument"], document)
    # the policy variable is stored as written, not resolved
    assert "${iot:Connection.Thing.ThingName}" in got["policyDocument"]
    assert_recent(got["creationDate"])
    assert got["lastModifiedDate"] >= got["creationDate"]
    assert isinstance(got["generationId"], str) and got["generationId"]


def test_policy_names_allow_the_documented_characters(iot):
    # policy name pattern [\w+=,.@-]+
    name = unique_name("p") + "_+=,.@-x"
    iot.create_policy(policyName=name, policyDocument=DOC_CONNECT)
    assert iot.get_policy(policyName=name)["policyName"] == name


def test_get_unknown_policy(iot):
    with aws_error("ResourceNotFoundException"):
        iot.get_policy(policyName=unique_name("missing"))


def test_duplicate_policy_name_is_refused(iot):
    name, _ = make_policy(iot, DOC_CONNECT)
    with aws_error("ResourceAlreadyExistsException"):
        iot.create_policy(policyName=name, policyDocument=DOC_CONNECT)
    with aws_error("ResourceAlreadyExistsException"):
        iot.create_policy(policyName=name, policyDocument=DOC_PUBLISH)


def test_list_policies_pages_with_marker(iot):
    mine = {make_policy(iot, DOC_CONNECT)[0] for _ in range(5)}
    items, sizes = collect_marker_pages(iot.list_policies, "policies", page_size=2)
    names = [p["policyName"] for p in items]
    assert len(names) == len(set(names)), "a policy was listed twice"
    assert mine <= set(names)
    assert len(sizes) >= 3 and all(size == 2 for size in sizes[:-1]), sizes
    for p in items:
        if p["policyName"] in mine:
            assert p["policyArn"] == iot_arn("policy", p["policyName"])


def test_delete_policy(iot):
    name, _ = make_policy(iot, DOC_CONNECT)
    iot.delete_policy(policyName=name)
    with aws_error("ResourceNotFoundException"):
        iot.get_policy(policyName=name)
    items, _ = collect_marker_pages(iot.list_policies, "policies", page_size=250)
    assert name not in {p["policyName"] for p in items}
    with aws_error("ResourceNotFoundException"):
        iot.delete_policy(policyName=name)
    # the name is free again
    make_policy(iot, DOC_PUBLISH, name=name)
    assert iot.get_policy(policyName=name)["defaultVersionId"] == "1"


# --------------------------------------------------------------------------------------
# document validation
# --------------------------------------------------------------------------------------


def document_of_significant_length(n: int) -> str:
    """A valid policy with exactly n non-whitespace characters, padded with plenty of
    whitespace (indentation and blank lines) so that its raw length is far above 2048."""
    def doc(topic_len: int) -> dict:
        return {
            "Version": "2012-10-17",
            "Statement": [allow("iot:Publish", data_arn("topic", "t" * topic_len))],
        }

    base = significant_length(json.dumps(doc(0), separators=(",", ":")))
    assert base < n
    text = json.dumps(doc(n - base), indent=40) + "\n" * 500 + " " * 1500
    assert significant_length(text) == n
    assert len(text) > 4000
    return text


def test_policy_size_limit_ignores_whitespace(iot):
    # 2048 characters excluding whitespace is the hard limit (reference 3.5, 8)
    document = document_of_significant_length(2048)
    name, _ = make_policy(iot, document)
    assert same_json(iot.get_policy(policyName=name)["policyDocument"], document)
    # the same limit applies to new versions
    iot.create_policy_version(policyName=name, policyDocument=document_of_significant_length(2048))


def test_policy_over_the_size_limit_is_refused(iot):
    name = unique_name("policy")
    with aws_error("InvalidRequestException"):
        iot.create_policy(policyName=name, policyDocument=document_of_significant_length(2049))
    with aws_error("ResourceNotFoundException"):
        iot.get_policy(policyName=name)

    existing, _ = make_policy(iot, DOC_CONNECT)
    with aws_error("InvalidRequestException"):
        iot.create_policy_version(policyName=existing, policyDocument=document_of_significant_length(2049))


MALFORMED = {
    "invalid-json": '{"Version": "2012-10-17", "Statement": [',
    "not-an-object": '["iot:Connect"]',
    "missing-statement": json.dumps({"Version": "2012-10-17"}),
    "bad-effect": json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "iot:Connect", "Resource": "*"}]}
    ),
    "missing-effect": json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Action": "iot:Connect", "Resource": "*"}]}
    ),
    "missing-action": json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}
    ),
    "missing-resource": json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect"}]}
    ),
}


@pytest.mark.parametrize("document", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_policy_is_refused(iot, document):
    name = unique_name("policy")
    with aws_error("MalformedPolicyException"):
        iot.create_policy(policyName=name, policyDocument=document)
    with aws_error("ResourceNotFoundException"):
        iot.get_policy(policyName=name)


@pytest.mark.parametrize("document", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_policy_version_is_refused(iot, document):
    name, _ = make_policy(iot, DOC_CONNECT)
    with aws_error("MalformedPolicyException"):
        iot.create_policy_version(policyName=name, policyDocument=document, setAsDefault=True)
    assert iot.get_policy(policyName=name)["defaultVersionId"] == "1"


# --------------------------------------------------------------------------------------
# policy versions
# --------------------------------------------------------------------------------------


def test_policy_versions(iot):
    name, arn = make_policy(iot, doc_for_version(1))

    v2 = iot.create_policy_version(policyName=name, policyDocument=doc_for_version(2), setAsDefault=True)
    assert v2["policyVersionId"] == "2"
    assert v2["isDefaultVersion"] is True
    assert v2["policyArn"] == arn
    assert same_json(v2["policyDocument"], doc_for_version(2))
    got = iot.get_policy(policyName=name)
    assert got["defaultVersionId"] == "2"
    assert same_json(got["policyDocument"], doc_for_version(2))

    v3 = iot.create_policy_version(policyName=name, policyDocument=doc_for_version(3))
    assert v3["policyVersionId"] == "3"
    assert v3["isDefaultVersion"] is False
    assert iot.get_policy(policyName=name)["defaultVersionId"] == "2"

    version = iot.get_policy_version(policyName=name, policyVersionId="3")
    assert version["policyName"] == name
    assert version["policyArn"] == arn
    assert version["policyVersionId"] == "3"
    assert version["isDefaultVersion"] is False
    assert same_json(version["policyDocument"], doc_for_version(3))
    assert_recent(version["creationDate"])
    assert isinstance(version["generationId"], str) and version["generationId"]

    listed = iot.list_policy_versions(policyName=name)["policyVersions"]
    assert sorted(v["versionId"] for v in listed) == ["1", "2", "3"]
    assert {v["versionId"]: v["isDefaultVersion"] for v in listed} == {"1": False, "2": True, "3": False}
    for v in listed:
        assert_recent(v["createDate"])

    iot.set_default_policy_version(policyName=name, policyVersionId="3")
    assert iot.get_policy(policyName=name)["defaultVersionId"] == "3"
    assert same_json(iot.get_policy(policyName=name)["policyDocument"], doc_for_version(3))
    assert iot.get_policy_version(policyName=name, policyVersionId="3")["isDefaultVersion"] is True
    assert iot.get_policy_version(policyName=name, policyVersionId="2")["isDefaultVersion"] is False

    iot.delete_policy_version(policyName=name, policyVersionId="1")
    with aws_error("ResourceNotFoundException"):
        iot.get_policy_version(policyName=name, policyVersionId="1")
    listed = iot.list_policy_versions(policyName=name)["policyVersions"]
    assert sorted(v["versionId"] for v in listed) == ["2", "3"]

    # version ids keep increasing: a deleted id is not reused
    v4 = iot.create_policy_version(policyName=name, policyDocument=doc_for_version(4))
    assert v4["policyVersionId"] == "4"


def test_at_most_five_policy_versions(iot):
    name, _ = make_policy(iot, doc_for_version(1))
    for n in range(2, 6):
        iot.create_policy_version(policyName=name, policyDocument=doc_for_version(n))
    with aws_error("VersionsLimitExceededException", 409):
        iot.create_policy_version(policyName=name, policyDocument=doc_for_version(6), setAsDefault=True)
    assert len(iot.list_policy_versions(policyName=name)["policyVersions"]) == 5
    assert iot.get_policy(policyName=name)["defaultVersionId"] == "1"

    # what Terraform does on the limit: delete the oldest non-default version, retry
    iot.delete_policy_version(policyName=name, policyVersionId="2")
    v6 = iot.create_policy_version(policyName=name, policyDocument=doc_for_version(6), setAsDefault=True)
    assert v6["policyVersionId"] == "6"


def test_default_policy_version_cannot_be_deleted(iot):
    # API reference: "You cannot delete the default version of a policy using this action."
    name, _ = make_policy(iot, doc_for_version(1))
    iot.create_policy_version(policyName=name, policyDocument=doc_for_version(2), setAsDefault=True)
    with aws_error("InvalidRequestException"):
        iot.delete_policy_version(policyName=name, policyVersionId="2")
    assert iot.get_policy(policyName=name)["defaultVersionId"] == "2"


def test_policy_version_errors(iot):
    name, _ = make_policy(iot, doc_for_version(1))
    with aws_error("ResourceNotFoundException"):
        iot.get_policy_version(policyName=name, policyVersionId="9")
    with aws_error("ResourceNotFoundException"):
        iot.set_default_policy_version(policyName=name, policyVersionId="9")
    with aws_error("ResourceNotFoundException"):
        iot.create_policy_version(policyName=unique_name("missing"), policyDocument=doc_for_version(1))
    with aws_error("ResourceNotFoundException"):
        iot.list_policy_versions(policyName=unique_name("missing"))


def test_delete_policy_with_non_default_versions_is_refused(iot):
    name, _ = make_policy(iot, doc_for_version(1))
    iot.create_policy_version(policyName=name, policyDocument=doc_for_version(2))
    with aws_error("DeleteConflictException"):
        iot.delete_policy(policyName=name)
    iot.delete_policy_version(policyName=name, policyVersionId="2")
    iot.delete_policy(policyName=name)
    with aws_error("ResourceNotFoundException"):
        iot.get_policy(policyName=name)


# --------------------------------------------------------------------------------------
# AttachPolicy / DetachPolicy and the listings
# --------------------------------------------------------------------------------------


def test_attach_policy_to_a_certificate(iot):
    cert = register_without_ca(iot)
    name, arn = make_policy(iot, DOC_CONNECT)
    iot.attach_policy(policyName=name, target=cert.arn)

    listed = iot.list_attached_policies(target=cert.arn)["policies"]
    assert listed == [{"policyName": name, "policyArn": arn}]
    assert targets_of(iot, name) == {cert.arn}
    # deprecated listings, principal and policy passed in headers
    assert cert.arn in iot.list_policy_principals(policyName=name)["principals"]
    principal_policies = iot.list_principal_policies(principal=cert.arn)["policies"]
    assert principal_policies == [{"policyName": name, "policyArn": arn}]

    # attaching again changes nothing
    iot.attach_policy(policyName=name, target=cert.arn)
    assert attached(iot, cert.arn) == {name}

    iot.detach_policy(policyName=name, target=cert.arn)
    assert attached(iot, cert.arn) == set()
    assert targets_of(iot, name) == set()
    assert iot.list_policy_principals(policyName=name).get("principals", []) == []
    assert iot.list_principal_policies(principal=cert.arn).get("policies", []) == []
    # once detached, the policy can be deleted
    iot.delete_policy(policyName=name)


def test_detach_policy_that_is_not_attached_succeeds(iot):
    # Terraform relies on this (reference 6.2, aws_iot_policy_attachment)
    cert = register_without_ca(iot)
    name, _ = make_policy(iot, DOC_CONNECT)
    iot.detach_policy(policyName=name, target=cert.arn)
    assert attached(iot, cert.arn) == set()


def test_attach_unknown_policy(iot):
    cert = register_without_ca(iot)
    with aws_error("ResourceNotFoundException"):
        iot.attach_policy(policyName=unique_name("missing"), target=cert.arn)


def test_delete_attached_policy_is_refused(iot):
    cert = register_without_ca(iot)
    name, _ = make_policy(iot, DOC_CONNECT)
    iot.attach_policy(policyName=name, target=cert.arn)
    with aws_error("DeleteConflictException", 409):
        iot.delete_policy(policyName=name)
    assert iot.get_policy(policyName=name)["policyName"] == name


def test_delete_policy_attached_to_a_thing_group_is_refused(iot):
    _, group_arn = make_group(iot)
    name, _ = make_policy(iot, DOC_CONNECT)
    iot.attach_policy(policyName=name, target=group_arn)
    with aws_error("DeleteConflictException"):
        iot.delete_policy(policyName=name)
    iot.detach_policy(policyName=name, target=group_arn)
    iot.delete_policy(policyName=name)


def test_list_attached_policies_pages_with_marker(iot):
    cert = register_without_ca(iot)
    names = {make_policy(iot, DOC_CONNECT)[0] for _ in range(5)}
    for name in names:
        iot.attach_policy(policyName=name, target=cert.arn)
    items, sizes = collect_marker_pages(iot.list_attached_policies, "policies", page_size=2, target=cert.arn)
    assert sorted(p["policyName"] for p in items) == sorted(names)
    assert sizes[:2] == [2, 2] and sum(sizes) == 5

    principal_items, _ = collect_marker_pages(
        iot.list_principal_policies, "policies", page_size=2, principal=cert.arn
    )
    assert sorted(p["policyName"] for p in principal_items) == sorted(names)


def test_list_targets_and_principals_of_a_policy_page_with_marker(iot):
    name, _ = make_policy(iot, DOC_CONNECT)
    certs = [register_without_ca(iot) for _ in range(3)]
    _, group_arn = make_group(iot)
    for cert in certs:
        iot.attach_policy(policyName=name, target=cert.arn)
    iot.attach_policy(policyName=name, target=group_arn)

    items, sizes = collect_marker_pages(iot.list_targets_for_policy, "targets", page_size=2, policyName=name)
    assert sorted(items) == sorted([c.arn for c in certs] + [group_arn])
    assert sizes[0] == 2

    principals, _ = collect_marker_pages(iot.list_policy_principals, "principals", page_size=2, policyName=name)
    assert {c.arn for c in certs} <= set(principals)


def test_at_most_ten_policies_per_certificate(iot):
    # quota: 10 policies attached per principal (reference 3.1, 8)
    cert = register_without_ca(iot)
    for _ in range(10):
        iot.attach_policy(policyName=make_policy(iot, DOC_CONNECT)[0], target=cert.arn)
    extra, _ = make_policy(iot, DOC_CONNECT)
    with aws_error("LimitExceededException", 410):
        iot.attach_policy(policyName=extra, target=cert.arn)
    assert len(attached(iot, cert.arn)) == 10


def test_attach_policy_to_thing_groups_and_list_recursively(iot):
    parent, parent_arn = make_group(iot)
    child, child_arn = make_group(iot, parent=parent)
    parent_policy, _ = make_policy(iot, DOC_CONNECT)
    child_policy, _ = make_policy(iot, DOC_PUBLISH)
    iot.attach_policy(policyName=parent_policy, target=parent_arn)
    iot.attach_policy(policyName=child_policy, target=child_arn)

    assert attached(iot, child_arn) == {child_policy}
    assert attached(iot, child_arn, recursive=False) == {child_policy}
    # recursive: the policies the group inherits from its ancestors too
    assert attached(iot, child_arn, recursive=True) == {child_policy, parent_policy}
    assert attached(iot, parent_arn, recursive=True) == {parent_policy}
    assert targets_of(iot, parent_policy) == {parent_arn}

    iot.detach_policy(policyName=parent_policy, target=parent_arn)
    assert attached(iot, child_arn, recursive=True) == {child_policy}


# --------------------------------------------------------------------------------------
# thing principals
# --------------------------------------------------------------------------------------


def test_attach_thing_principal(iot):
    cert = register_without_ca(iot)
    thing = unique_name("thing")
    iot.create_thing(thingName=thing)
    iot.attach_thing_principal(thingName=thing, principal=cert.arn)

    assert iot.list_thing_principals(thingName=thing)["principals"] == [cert.arn]
    v2 = iot.list_thing_principals_v2(thingName=thing)["thingPrincipalObjects"]
    # NON_EXCLUSIVE_THING is the default attachment type
    assert v2 == [{"principal": cert.arn, "thingPrincipalType": "NON_EXCLUSIVE_THING"}]
    assert iot.list_principal_things(principal=cert.arn)["things"] == [thing]
    v2 = iot.list_principal_things_v2(principal=cert.arn)["principalThingObjects"]
    assert v2 == [{"thingName": thing, "thingPrincipalType": "NON_EXCLUSIVE_THING"}]

    # attaching again changes nothing
    iot.attach_thing_principal(thingName=thing, principal=cert.arn)
    assert iot.list_thing_principals(thingName=thing)["principals"] == [cert.arn]

    iot.detach_thing_principal(thingName=thing, principal=cert.arn)
    assert iot.list_thing_principals(thingName=thing).get("principals", []) == []
    assert iot.list_thing_principals_v2(thingName=thing).get("thingPrincipalObjects", []) == []
    assert iot.list_principal_things(principal=cert.arn).get("things", []) == []
    assert iot.list_principal_things_v2(principal=cert.arn).get("principalThingObjects", []) == []


def test_non_exclusive_principal_can_be_attached_to_many_things(iot):
    cert = register_without_ca(iot)
    things = sorted(unique_name("thing") for _ in range(3))
    for thing in things:
        iot.create_thing(thingName=thing)
        iot.attach_thing_principal(thingName=thing, principal=cert.arn, thingPrincipalType="NON_EXCLUSIVE_THING")
    listed, sizes = collect_pages(iot.list_principal_things, "things", principal=cert.arn, maxResults=2)
    assert sorted(listed) == things
    assert sizes[0] == 2
    objects = iot.list_principal_things_v2(principal=cert.arn)["principalThingObjects"]
    assert sorted(o["thingName"] for o in objects) == things
    assert {o["thingPrincipalType"] for o in objects} == {"NON_EXCLUSIVE_THING"}


def test_thing_with_many_principals_pages(iot):
    thing = unique_name("thing")
    iot.create_thing(thingName=thing)
    certs = sorted(register_without_ca(iot).arn for _ in range(3))
    for arn in certs:
        iot.attach_thing_principal(thingName=thing, principal=arn)
    listed, sizes = collect_pages(iot.list_thing_principals, "principals", thingName=thing, maxResults=2)
    assert sorted(listed) == certs
    assert sizes[0] == 2
    objects, _ = collect_pages(iot.list_thing_principals_v2, "thingPrincipalObjects", thingName=thing, maxResults=2)
    assert sorted(o["principal"] for o in objects) == certs


def test_exclusive_thing_attachment(iot):
    cert = register_without_ca(iot)
    first, second = unique_name("thing"), unique_name("thing")
    iot.create_thing(thingName=first)
    iot.create_thing(thingName=second)
    iot.attach_thing_principal(thingName=first, principal=cert.arn, thingPrincipalType="EXCLUSIVE_THING")

    assert iot.list_thing_principals_v2(thingName=first)["thingPrincipalObjects"] == [
        {"principal": cert.arn, "thingPrincipalType": "EXCLUSIVE_THING"}
    ]
    assert iot.list_principal_things_v2(principal=cert.arn)["principalThingObjects"] == [
        {"thingName": first, "thingPrincipalType": "EXCLUSIVE_THING"}
    ]

    # "this certificate cannot be associated with any other things". AttachThingPrincipal
    # models no ResourceAlreadyExistsException; InvalidRequestException is the documented fit.
    with aws_error("InvalidRequestException"):
        iot.attach_thing_principal(thingName=second, principal=cert.arn)
    with aws_error("InvalidRequestException"):
        iot.attach_thing_principal(thingName=second, principal=cert.arn, thingPrincipalType="EXCLUSIVE_THING")
    assert iot.list_thing_principals(thingName=second).get("principals", []) == []

    # after detaching, the certificate is free again
    iot.detach_thing_principal(thingName=first, principal=cert.arn)
    iot.attach_thing_principal(thingName=second, principal=cert.arn)
    assert iot.list_principal_things(principal=cert.arn)["things"] == [second]


def test_exclusive_attachment_of_a_shared_principal_is_refused(iot):
    # a certificate already attached to one thing cannot become exclusive to another
    cert = register_without_ca(iot)
    first, second = unique_name("thing"), unique_name("thing")
    iot.create_thing(thingName=first)
    iot.create_thing(thingName=second)
    iot.attach_thing_principal(thingName=first, principal=cert.arn)
    with aws_error("InvalidRequestException"):
        iot.attach_thing_principal(thingName=second, principal=cert.arn, thingPrincipalType="EXCLUSIVE_THING")
    assert iot.list_principal_things(principal=cert.arn)["things"] == [first]


def test_attach_principal_to_unknown_thing(iot):
    cert = register_without_ca(iot)
    with aws_error("ResourceNotFoundException"):
        iot.attach_thing_principal(thingName=unique_name("missing"), principal=cert.arn)


def test_list_principals_of_unknown_thing(iot):
    with aws_error("ResourceNotFoundException"):
        iot.list_thing_principals(thingName=unique_name("missing"))


def test_delete_thing_with_a_principal_is_refused(iot):
    cert = register_without_ca(iot)
    thing = unique_name("thing")
    iot.create_thing(thingName=thing)
    iot.attach_thing_principal(thingName=thing, principal=cert.arn)
    with aws_error("InvalidRequestException"):
        iot.delete_thing(thingName=thing)
    assert iot.describe_thing(thingName=thing)["thingName"] == thing

    iot.detach_thing_principal(thingName=thing, principal=cert.arn)
    iot.delete_thing(thingName=thing)
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing(thingName=thing)


# --------------------------------------------------------------------------------------
# role aliases
# --------------------------------------------------------------------------------------

ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/device-role"
OTHER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/other-device-role"


def test_role_alias_lifecycle(iot):
    alias = unique_name("alias")
    created = iot.create_role_alias(roleAlias=alias, roleArn=ROLE_ARN, credentialDurationSeconds=900)
    assert created["roleAlias"] == alias
    assert created["roleAliasArn"] == iot_arn("rolealias", alias)

    desc = iot.describe_role_alias(roleAlias=alias)["roleAliasDescription"]
    assert desc["roleAlias"] == alias
    assert desc["roleAliasArn"] == iot_arn("rolealias", alias)
    assert desc["roleArn"] == ROLE_ARN
    assert desc["owner"] == ACCOUNT_ID
    assert desc["credentialDurationSeconds"] == 900
    assert_recent(desc["creationDate"])
    assert desc["lastModifiedDate"] >= desc["creationDate"]

    updated = iot.update_role_alias(roleAlias=alias, credentialDurationSeconds=43200)
    assert updated["roleAlias"] == alias
    assert updated["roleAliasArn"] == iot_arn("rolealias", alias)
    desc = iot.describe_role_alias(roleAlias=alias)["roleAliasDescription"]
    assert (desc["credentialDurationSeconds"], desc["roleArn"]) == (43200, ROLE_ARN)

    iot.update_role_alias(roleAlias=alias, roleArn=OTHER_ROLE_ARN)
    desc = iot.describe_role_alias(roleAlias=alias)["roleAliasDescription"]
    assert (desc["credentialDurationSeconds"], desc["roleArn"]) == (43200, OTHER_ROLE_ARN)

    iot.delete_role_alias(roleAlias=alias)
    with aws_error("ResourceNotFoundException"):
        iot.describe_role_alias(roleAlias=alias)
    with aws_error("ResourceNotFoundException"):
        iot.delete_role_alias(roleAlias=alias)


def test_role_alias_default_duration_is_one_hour(iot):
    alias = unique_name("alias")
    iot.create_role_alias(roleAlias=alias, roleArn=ROLE_ARN)
    assert iot.describe_role_alias(roleAlias=alias)["roleAliasDescription"]["credentialDurationSeconds"] == 3600


def test_duplicate_role_alias_is_refused(iot):
    alias = unique_name("alias")
    iot.create_role_alias(roleAlias=alias, roleArn=ROLE_ARN)
    with aws_error("ResourceAlreadyExistsException"):
        iot.create_role_alias(roleAlias=alias, roleArn=ROLE_ARN)


@pytest.mark.parametrize("duration", [899, 43201, 0])
def test_role_alias_duration_out_of_range(server, iot, duration):
    # 900..43200 seconds; botocore checks only the minimum locally, so send unvalidated
    raw = unvalidated_client(server)
    alias = unique_name("alias")
    with aws_error("InvalidRequestException"):
        raw.create_role_alias(roleAlias=alias, roleArn=ROLE_ARN, credentialDurationSeconds=duration)
    with aws_error("ResourceNotFoundException"):
        iot.describe_role_alias(roleAlias=alias)

    iot.create_role_alias(roleAlias=alias, roleArn=ROLE_ARN, credentialDurationSeconds=3600)
    with aws_error("InvalidRequestException"):
        raw.update_role_alias(roleAlias=alias, credentialDurationSeconds=duration)
    assert iot.describe_role_alias(roleAlias=alias)["roleAliasDescription"]["credentialDurationSeconds"] == 3600


def test_update_unknown_role_alias(iot):
    with aws_error("ResourceNotFoundException"):
        iot.update_role_alias(roleAlias=unique_name("missing"), credentialDurationSeconds=900)


def test_list_role_aliases_pages_with_marker(iot):
    mine = {unique_name("alias") for _ in range(3)}
    for alias in mine:
        iot.create_role_alias(roleAlias=alias, roleArn=ROLE_ARN)
    items, sizes = collect_marker_pages(iot.list_role_aliases, "roleAliases", page_size=2)
    assert len(items) == len(set(items))
    assert mine <= set(items)
    assert all(size == 2 for size in sizes[:-1]), sizes


def test_deny_only_policy_is_valid(iot):
    # a document made only of a Deny statement is valid
    name, _ = make_policy(iot, policy_document(deny("iot:*", "*")))
    assert iot.get_policy(policyName=name)["defaultVersionId"] == "1"
