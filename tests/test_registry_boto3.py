"""Device registry control plane, driven through boto3 exactly as an AWS user would.

The expectations are AWS IoT Core's (shared/reference/aws-iot-core.md sections 0, 6, 8),
not any emulator's. Every test creates its own uniquely named resources.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from iot_helpers import (
    assert_recent,
    tag_dict,
    ACCESS_KEY,
    ACCOUNT_ID,
    EVENT_TYPES,
    REGION,
    SECRET_KEY,
    aws_error,
    check_aws_error,
    collect_pages,
    iot_arn,
    unique_name,
    without_metadata,
)

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------




def attrs(n: int) -> dict:
    return {f"attr{i}": f"value{i}" for i in range(n)}


def make_thing_type(iot, **properties) -> str:
    name = unique_name("type")
    iot.create_thing_type(thingTypeName=name, thingTypeProperties=properties)
    return name


def make_thing(iot, **kwargs) -> str:
    name = unique_name("thing")
    iot.create_thing(thingName=name, **kwargs)
    return name


def make_thing_group(iot, name: str | None = None, **kwargs) -> str:
    name = name or unique_name("group")
    iot.create_thing_group(thingGroupName=name, **kwargs)
    return name


def make_billing_group(iot, name: str | None = None, **kwargs) -> str:
    name = name or unique_name("billing")
    iot.create_billing_group(billingGroupName=name, **kwargs)
    return name


def thing_group_names(response_items: list[dict]) -> set[str]:
    return {g["groupName"] for g in response_items}


@dataclass(frozen=True)
class Kind:
    """A named registry resource that can be created, described and tagged."""

    arn_kind: str
    create: Callable  # (iot, name, variant) -> create response; variants differ in configuration
    describe: Callable  # (iot, name) -> describe response
    id_key: str
    arn_key: str


KINDS = {
    "thing": Kind(
        "thing",
        lambda iot, n, v=1: iot.create_thing(
            thingName=n, attributePayload={"attributes": {"variant": f"v{v}"}}
        ),
        lambda iot, n: iot.describe_thing(thingName=n),
        "thingId",
        "thingArn",
    ),
    "thing_type": Kind(
        "thingtype",
        lambda iot, n, v=1: iot.create_thing_type(
            thingTypeName=n, thingTypeProperties={"thingTypeDescription": f"variant {v}"}
        ),
        lambda iot, n: iot.describe_thing_type(thingTypeName=n),
        "thingTypeId",
        "thingTypeArn",
    ),
    "thing_group": Kind(
        "thinggroup",
        lambda iot, n, v=1: iot.create_thing_group(
            thingGroupName=n, thingGroupProperties={"thingGroupDescription": f"variant {v}"}
        ),
        lambda iot, n: iot.describe_thing_group(thingGroupName=n),
        "thingGroupId",
        "thingGroupArn",
    ),
    "billing_group": Kind(
        "billinggroup",
        lambda iot, n, v=1: iot.create_billing_group(
            billingGroupName=n, billingGroupProperties={"billingGroupDescription": f"variant {v}"}
        ),
        lambda iot, n: iot.describe_billing_group(billingGroupName=n),
        "billingGroupId",
        "billingGroupArn",
    ),
}


# --------------------------------------------------------------------------------------
# things: create / describe / delete
# --------------------------------------------------------------------------------------


def test_create_and_describe_thing(iot):
    name = unique_name("thing")
    created = iot.create_thing(
        thingName=name, attributePayload={"attributes": {"location": "warehouse-a", "floor": "1"}}
    )
    assert created["thingName"] == name
    assert created["thingArn"] == iot_arn("thing", name)
    assert created["thingId"]

    described = iot.describe_thing(thingName=name)
    assert described["thingName"] == name
    assert described["thingArn"] == created["thingArn"]
    assert described["thingId"] == created["thingId"]
    assert described["attributes"] == {"location": "warehouse-a", "floor": "1"}
    assert described["version"] == 1
    assert described["defaultClientId"] == name
    assert "thingTypeName" not in described
    assert "billingGroupName" not in described


def test_thing_ids_are_distinct(iot):
    ids = {iot.create_thing(thingName=unique_name("thing"))["thingId"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    "make_name",
    [
        lambda: "a",  # may exist from an earlier run: an identical create is idempotent
        lambda: unique_name("long").ljust(128, "x"),
        lambda: unique_name("ns:device_01-A"),
    ],
    ids=["one-char", "128-chars", "colon-underscore-dash"],
)
def test_valid_thing_names(iot, make_name):
    name = make_name()
    assert iot.create_thing(thingName=name)["thingArn"] == iot_arn("thing", name)
    assert iot.describe_thing(thingName=name)["thingName"] == name


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize(
    "bad_name",
    ["has space", "bad!name", "x" * 129, "\u00fcmlaut"],
    ids=["space", "punctuation", "129-chars", "non-ascii"],
)
def test_invalid_names_are_rejected(iot, kind, bad_name):
    with aws_error("InvalidRequestException"):
        KINDS[kind].create(iot, bad_name)


def test_describe_missing_thing(iot):
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing(thingName=unique_name("missing"))


def test_delete_thing(iot):
    name = make_thing(iot)
    iot.delete_thing(thingName=name)
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing(thingName=name)


def test_delete_missing_thing_succeeds(iot):
    # API reference: DeleteThing succeeds if the thing doesn't exist.
    response = iot.delete_thing(thingName=unique_name("missing"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_delete_thing_expected_version(iot):
    name = make_thing(iot)
    with aws_error("VersionConflictException"):
        iot.delete_thing(thingName=name, expectedVersion=7)
    assert iot.describe_thing(thingName=name)["version"] == 1

    iot.delete_thing(thingName=name, expectedVersion=1)
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing(thingName=name)


# --------------------------------------------------------------------------------------
# create idempotency (things, thing types, thing groups, billing groups)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_create_with_same_configuration_is_idempotent(iot, kind):
    k = KINDS[kind]
    name = unique_name("idem")
    first = k.create(iot, name, 1)
    second = k.create(iot, name, 1)
    assert second[k.id_key] == first[k.id_key]
    assert second[k.arn_key] == first[k.arn_key] == iot_arn(k.arn_kind, name)
    described = k.describe(iot, name)
    assert described[k.id_key] == first[k.id_key]
    if "version" in described:
        assert described["version"] == 1, "an idempotent create must not bump the version"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_create_with_different_configuration_conflicts(iot, kind):
    k = KINDS[kind]
    name = unique_name("dup")
    first = k.create(iot, name, 1)
    original = without_metadata(k.describe(iot, name))
    with aws_error("ResourceAlreadyExistsException") as excinfo:
        k.create(iot, name, 2)
    # the error body carries resourceId and resourceArn (botocore lifts them into the response)
    assert excinfo.value.response.get("resourceArn") == first[k.arn_key]
    assert excinfo.value.response.get("resourceId")
    assert without_metadata(k.describe(iot, name)) == original, "the original must stay as it was"


def test_create_thing_with_other_thing_type_conflicts(iot):
    type_name = make_thing_type(iot)
    name = make_thing(iot)
    with aws_error("ResourceAlreadyExistsException"):
        iot.create_thing(thingName=name, thingTypeName=type_name)
    assert "thingTypeName" not in iot.describe_thing(thingName=name)


# --------------------------------------------------------------------------------------
# things: attributes, versions, types
# --------------------------------------------------------------------------------------


def test_thing_version_increments_on_every_update(iot):
    name = make_thing(iot, attributePayload={"attributes": {"n": "0"}})
    for expected_version in (2, 3, 4):
        iot.update_thing(
            thingName=name, attributePayload={"attributes": {"n": str(expected_version)}}
        )
        described = iot.describe_thing(thingName=name)
        assert described["version"] == expected_version
        assert described["attributes"] == {"n": str(expected_version)}


def test_update_thing_expected_version(iot):
    name = make_thing(iot, attributePayload={"attributes": {"a": "1"}})
    with aws_error("VersionConflictException"):
        iot.update_thing(
            thingName=name, attributePayload={"attributes": {"a": "2"}}, expectedVersion=5
        )
    described = iot.describe_thing(thingName=name)
    assert described["attributes"] == {"a": "1"}
    assert described["version"] == 1

    iot.update_thing(thingName=name, attributePayload={"attributes": {"a": "2"}}, expectedVersion=1)
    described = iot.describe_thing(thingName=name)
    assert described["attributes"] == {"a": "2"}
    assert described["version"] == 2


def test_update_missing_thing(iot):
    with aws_error("ResourceNotFoundException"):
        iot.update_thing(thingName=unique_name("missing"), attributePayload={"attributes": {}})


@dataclass(frozen=True)
class AttributeOwner:
    create: Callable  # (iot, name, attributes)
    update: Callable  # (iot, name, attributePayload)
    read: Callable  # (iot, name) -> attributes dict


ATTRIBUTE_OWNERS = {
    "thing": AttributeOwner(
        lambda iot, n, a: iot.create_thing(thingName=n, attributePayload={"attributes": a}),
        lambda iot, n, p: iot.update_thing(thingName=n, attributePayload=p),
        lambda iot, n: iot.describe_thing(thingName=n).get("attributes", {}),
    ),
    "thing_group": AttributeOwner(
        lambda iot, n, a: iot.create_thing_group(
            thingGroupName=n, thingGroupProperties={"attributePayload": {"attributes": a}}
        ),
        lambda iot, n, p: iot.update_thing_group(
            thingGroupName=n, thingGroupProperties={"attributePayload": p}
        ),
        lambda iot, n: iot.describe_thing_group(thingGroupName=n)["thingGroupProperties"]
        .get("attributePayload", {})
        .get("attributes", {}),
    ),
}


@pytest.mark.parametrize("owner", sorted(ATTRIBUTE_OWNERS))
@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"attributes": {"c": "3"}}, {"c": "3"}),
        ({"attributes": {"c": "3"}, "merge": False}, {"c": "3"}),
        ({"attributes": {"b": "20", "c": "3"}, "merge": True}, {"a": "1", "b": "20", "c": "3"}),
        ({"attributes": {"a": ""}, "merge": True}, {"b": "2"}),
        ({"attributes": {}}, {}),
    ],
    ids=["replace", "replace-explicit", "merge", "empty-value-removes", "empty-map-clears"],
)
def test_attribute_update_semantics(iot, owner, payload, expected):
    o = ATTRIBUTE_OWNERS[owner]
    name = unique_name("attrs")
    o.create(iot, name, {"a": "1", "b": "2"})
    o.update(iot, name, payload)
    assert o.read(iot, name) == expected


@pytest.mark.parametrize(
    "with_type, count, accepted",
    [(False, 3, True), (False, 4, False), (True, 4, True), (True, 50, True), (True, 51, False)],
    ids=["untyped-3", "untyped-4", "typed-4", "typed-50", "typed-51"],
)
def test_attribute_count_limits(iot, with_type, count, accepted):
    # 3 attributes per thing without a thing type, 50 with one.
    kwargs = {"attributePayload": {"attributes": attrs(count)}}
    if with_type:
        kwargs["thingTypeName"] = make_thing_type(iot)
    name = unique_name("limits")
    if accepted:
        iot.create_thing(thingName=name, **kwargs)
        assert iot.describe_thing(thingName=name)["attributes"] == attrs(count)
    else:
        with aws_error("InvalidRequestException"):
            iot.create_thing(thingName=name, **kwargs)
        with aws_error("ResourceNotFoundException"):
            iot.describe_thing(thingName=name)


def test_update_cannot_exceed_three_attributes_without_type(iot):
    name = make_thing(iot, attributePayload={"attributes": attrs(3)})
    with aws_error("InvalidRequestException"):
        iot.update_thing(
            thingName=name, attributePayload={"attributes": {"extra": "x"}, "merge": True}
        )
    assert iot.describe_thing(thingName=name)["attributes"] == attrs(3)


@pytest.mark.parametrize(
    "attributes, accepted",
    [
        ({"k": "v" * 800}, True),
        ({"k" * 128: "v"}, True),
        ({"k": "a-z_A.Z,0@9/:#=[]"}, True),
        ({"k": "v" * 801}, False),
        ({"k" * 129: "v"}, False),
        ({"k": "two words"}, False),
    ],
    ids=["value-800", "name-128", "value-charset", "value-801", "name-129", "value-space"],
)
def test_attribute_name_and_value_validation(iot, attributes, accepted):
    name = unique_name("attrval")
    if accepted:
        iot.create_thing(thingName=name, attributePayload={"attributes": attributes})
        assert iot.describe_thing(thingName=name)["attributes"] == attributes
    else:
        with aws_error("InvalidRequestException"):
            iot.create_thing(thingName=name, attributePayload={"attributes": attributes})


def test_create_thing_with_unknown_thing_type(iot):
    name = unique_name("thing")
    with aws_error("ResourceNotFoundException"):
        iot.create_thing(thingName=name, thingTypeName=unique_name("nosuchtype"))
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing(thingName=name)


def test_deprecated_thing_type_accepts_no_new_things(iot):
    type_name = make_thing_type(iot)
    iot.deprecate_thing_type(thingTypeName=type_name)
    with aws_error("InvalidRequestException"):
        iot.create_thing(thingName=unique_name("thing"), thingTypeName=type_name)

    iot.deprecate_thing_type(thingTypeName=type_name, undoDeprecate=True)
    name = make_thing(iot, thingTypeName=type_name)
    assert iot.describe_thing(thingName=name)["thingTypeName"] == type_name


def test_change_and_remove_thing_type(iot):
    first, second = make_thing_type(iot), make_thing_type(iot)
    name = make_thing(iot, thingTypeName=first)
    assert iot.describe_thing(thingName=name)["thingTypeName"] == first

    iot.update_thing(thingName=name, thingTypeName=second)
    assert iot.describe_thing(thingName=name)["thingTypeName"] == second

    iot.update_thing(thingName=name, removeThingType=True)
    described = iot.describe_thing(thingName=name)
    assert "thingTypeName" not in described
    assert described["version"] == 3


# --------------------------------------------------------------------------------------
# ListThings: filters and pagination
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"attributeValue": "warehouse-a"}, {"warehouse-a"}),
        ({"attributeValue": "warehouse", "usePrefixAttributeValue": True}, {"warehouse-a", "warehouse-b"}),
        ({"attributeValue": "warehouse"}, set()),
        ({"attributeValue": "office", "usePrefixAttributeValue": False}, {"office"}),
    ],
    ids=["exact", "prefix", "exact-no-partial-match", "prefix-flag-false"],
)
def test_list_things_attribute_filter(iot, query, expected):
    # a unique attribute *name* keeps other tests' things out of the result
    attr = unique_name("site").replace("-", "_")
    by_value = {}
    for value in ("warehouse-a", "warehouse-b", "office"):
        by_value[value] = make_thing(iot, attributePayload={"attributes": {attr: value}})
    make_thing(iot, attributePayload={"attributes": {"other": "warehouse-a"}})

    things, _ = collect_pages(iot.list_things, "things", attributeName=attr, **query)
    assert {t["thingName"] for t in things} == {by_value[v] for v in expected}
    for t in things:
        assert t["thingArn"] == iot_arn("thing", t["thingName"])
        assert t["attributes"][attr] in expected
        assert t["version"] == 1


def test_list_things_by_thing_type(iot):
    type_name = make_thing_type(iot)
    typed = {make_thing(iot, thingTypeName=type_name) for _ in range(2)}
    make_thing(iot)

    things, _ = collect_pages(iot.list_things, "things", thingTypeName=type_name)
    assert {t["thingName"] for t in things} == typed
    assert {t["thingTypeName"] for t in things} == {type_name}


PAGE_SIZE = 2
PAGED_ITEMS = 5


def _paged_things_by_attribute(iot):
    attr = unique_name("batch").replace("-", "_")
    names = {make_thing(iot, attributePayload={"attributes": {attr: "x"}}) for _ in range(PAGED_ITEMS)}
    query = {"attributeName": attr, "attributeValue": "x"}
    return iot.list_things, query, "things", lambda t: t["thingName"], names


def _paged_things_by_type(iot):
    type_name = make_thing_type(iot)
    names = {make_thing(iot, thingTypeName=type_name) for _ in range(PAGED_ITEMS)}
    return iot.list_things, {"thingTypeName": type_name}, "things", lambda t: t["thingName"], names


def _paged_thing_groups(iot):
    prefix = unique_name("pg")
    names = {make_thing_group(iot, f"{prefix}-{i}") for i in range(PAGED_ITEMS)}
    query = {"namePrefixFilter": prefix}
    return iot.list_thing_groups, query, "thingGroups", lambda g: g["groupName"], names


def _paged_billing_groups(iot):
    prefix = unique_name("pb")
    names = {make_billing_group(iot, f"{prefix}-{i}") for i in range(PAGED_ITEMS)}
    query = {"namePrefixFilter": prefix}
    return iot.list_billing_groups, query, "billingGroups", lambda g: g["groupName"], names


def _paged_things_in_thing_group(iot):
    group = make_thing_group(iot)
    names = {make_thing(iot) for _ in range(PAGED_ITEMS)}
    for n in names:
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=n)
    query = {"thingGroupName": group}
    return iot.list_things_in_thing_group, query, "things", lambda n: n, names


def _paged_things_in_billing_group(iot):
    group = make_billing_group(iot)
    names = {make_thing(iot, billingGroupName=group) for _ in range(PAGED_ITEMS)}
    query = {"billingGroupName": group}
    return iot.list_things_in_billing_group, query, "things", lambda n: n, names


@pytest.mark.parametrize(
    "setup",
    [
        _paged_things_by_attribute,
        _paged_things_by_type,
        _paged_thing_groups,
        _paged_billing_groups,
        _paged_things_in_thing_group,
        _paged_things_in_billing_group,
    ],
    ids=lambda f: f.__name__.removeprefix("_paged_"),
)
def test_pagination(iot, setup):
    call, query, key, name_of, expected = setup(iot)
    items, sizes = collect_pages(call, key, maxResults=PAGE_SIZE, **query)
    names = [name_of(i) for i in items]
    assert sorted(names) == sorted(expected), "every item exactly once across pages"
    assert all(size <= PAGE_SIZE for size in sizes), sizes
    assert len(sizes) >= -(-PAGED_ITEMS // PAGE_SIZE), f"maxResults ignored: pages {sizes}"


# --------------------------------------------------------------------------------------
# thing types
# --------------------------------------------------------------------------------------


def test_create_and_describe_thing_type(iot):
    name = unique_name("type")
    created = iot.create_thing_type(
        thingTypeName=name,
        thingTypeProperties={
            "thingTypeDescription": "Temperature monitoring sensors",
            "searchableAttributes": ["location", "floor"],
        },
        tags=[{"Key": "team", "Value": "iot"}],
    )
    assert created["thingTypeName"] == name
    assert created["thingTypeArn"] == iot_arn("thingtype", name)
    assert created["thingTypeId"]

    described = iot.describe_thing_type(thingTypeName=name)
    assert described["thingTypeName"] == name
    assert described["thingTypeId"] == created["thingTypeId"]
    assert described["thingTypeArn"] == created["thingTypeArn"]
    props = described["thingTypeProperties"]
    assert props["thingTypeDescription"] == "Temperature monitoring sensors"
    assert sorted(props["searchableAttributes"]) == ["floor", "location"]
    meta = described["thingTypeMetadata"]
    assert meta["deprecated"] is False
    assert "deprecationDate" not in meta
    assert_recent(meta["creationDate"])

    tags = iot.list_tags_for_resource(resourceArn=created["thingTypeArn"])["tags"]
    assert tag_dict(tags) == {"team": "iot"}


def test_describe_missing_thing_type(iot):
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing_type(thingTypeName=unique_name("missing"))


def test_thing_type_searchable_attribute_limit(iot):
    with aws_error("InvalidRequestException"):
        iot.create_thing_type(
            thingTypeName=unique_name("type"),
            thingTypeProperties={"searchableAttributes": ["a", "b", "c", "d"]},
        )


def test_list_thing_types(iot):
    names = {make_thing_type(iot, thingTypeDescription="listed") for _ in range(2)}
    listed, _ = collect_pages(iot.list_thing_types, "thingTypes")
    by_name = {t["thingTypeName"]: t for t in listed}
    assert names <= set(by_name)
    for n in names:
        assert by_name[n]["thingTypeArn"] == iot_arn("thingtype", n)
        assert by_name[n]["thingTypeProperties"]["thingTypeDescription"] == "listed"
        assert by_name[n]["thingTypeMetadata"]["deprecated"] is False

    one = next(iter(names))
    filtered = iot.list_thing_types(thingTypeName=one)["thingTypes"]
    assert [t["thingTypeName"] for t in filtered] == [one]


def test_deprecate_and_undeprecate_thing_type(iot):
    name = make_thing_type(iot)
    created = iot.describe_thing_type(thingTypeName=name)["thingTypeMetadata"]["creationDate"]

    iot.deprecate_thing_type(thingTypeName=name)
    meta = iot.describe_thing_type(thingTypeName=name)["thingTypeMetadata"]
    assert meta["deprecated"] is True
    assert_recent(meta["deprecationDate"])
    assert meta["deprecationDate"] >= created

    iot.deprecate_thing_type(thingTypeName=name, undoDeprecate=True)
    assert iot.describe_thing_type(thingTypeName=name)["thingTypeMetadata"]["deprecated"] is False


def test_deprecate_missing_thing_type(iot):
    with aws_error("ResourceNotFoundException"):
        iot.deprecate_thing_type(thingTypeName=unique_name("missing"))


def test_delete_thing_type_requires_deprecation(iot):
    # AWS additionally waits 5 minutes after deprecation; ferrocore may make that wait
    # configurable, so only the deprecated/not-deprecated distinction is tested.
    name = make_thing_type(iot)
    with aws_error("InvalidRequestException"):
        iot.delete_thing_type(thingTypeName=name)
    assert iot.describe_thing_type(thingTypeName=name)["thingTypeName"] == name

    iot.deprecate_thing_type(thingTypeName=name)
    iot.delete_thing_type(thingTypeName=name)
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing_type(thingTypeName=name)


def test_delete_thing_type_refused_while_things_use_it(iot):
    type_name = make_thing_type(iot)
    thing = make_thing(iot, thingTypeName=type_name)
    iot.deprecate_thing_type(thingTypeName=type_name)
    with aws_error("InvalidRequestException"):
        iot.delete_thing_type(thingTypeName=type_name)
    assert iot.describe_thing_type(thingTypeName=type_name)["thingTypeName"] == type_name

    iot.delete_thing(thingName=thing)
    iot.delete_thing_type(thingTypeName=type_name)
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing_type(thingTypeName=type_name)


# --------------------------------------------------------------------------------------
# thing groups
# --------------------------------------------------------------------------------------


def test_create_and_describe_thing_group(iot):
    name = unique_name("group")
    created = iot.create_thing_group(
        thingGroupName=name,
        thingGroupProperties={
            "thingGroupDescription": "All sensors in warehouse",
            "attributePayload": {"attributes": {"site": "warehouse-a"}},
        },
        tags=[{"Key": "Environment", "Value": "production"}],
    )
    assert created["thingGroupName"] == name
    assert created["thingGroupArn"] == iot_arn("thinggroup", name)
    assert created["thingGroupId"]

    described = iot.describe_thing_group(thingGroupName=name)
    assert described["thingGroupName"] == name
    assert described["thingGroupId"] == created["thingGroupId"]
    assert described["thingGroupArn"] == created["thingGroupArn"]
    assert described["version"] == 1
    props = described["thingGroupProperties"]
    assert props["thingGroupDescription"] == "All sensors in warehouse"
    assert props["attributePayload"]["attributes"] == {"site": "warehouse-a"}
    meta = described["thingGroupMetadata"]
    assert "parentGroupName" not in meta
    assert meta.get("rootToParentThingGroups", []) == []
    assert_recent(meta["creationDate"])

    tags = iot.list_tags_for_resource(resourceArn=created["thingGroupArn"])["tags"]
    assert tag_dict(tags) == {"Environment": "production"}


def test_describe_missing_thing_group(iot):
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing_group(thingGroupName=unique_name("missing"))


def test_thing_group_hierarchy(iot):
    root = make_thing_group(iot)
    child = make_thing_group(iot, parentGroupName=root)
    grandchild = make_thing_group(iot, parentGroupName=child)

    child_meta = iot.describe_thing_group(thingGroupName=child)["thingGroupMetadata"]
    assert child_meta["parentGroupName"] == root
    assert child_meta["rootToParentThingGroups"] == [
        {"groupName": root, "groupArn": iot_arn("thinggroup", root)}
    ]

    grand_meta = iot.describe_thing_group(thingGroupName=grandchild)["thingGroupMetadata"]
    assert grand_meta["parentGroupName"] == child
    assert grand_meta["rootToParentThingGroups"] == [
        {"groupName": root, "groupArn": iot_arn("thinggroup", root)},
        {"groupName": child, "groupArn": iot_arn("thinggroup", child)},
    ]


def test_update_thing_group_expected_version(iot):
    name = make_thing_group(iot, thingGroupProperties={"thingGroupDescription": "v1"})

    updated = iot.update_thing_group(
        thingGroupName=name, thingGroupProperties={"thingGroupDescription": "v2"}, expectedVersion=1
    )
    assert updated["version"] == 2
    described = iot.describe_thing_group(thingGroupName=name)
    assert described["version"] == 2
    assert described["thingGroupProperties"]["thingGroupDescription"] == "v2"

    with aws_error("VersionConflictException"):
        iot.update_thing_group(
            thingGroupName=name,
            thingGroupProperties={"thingGroupDescription": "stale"},
            expectedVersion=1,
        )
    assert iot.describe_thing_group(thingGroupName=name)["thingGroupProperties"][
        "thingGroupDescription"
    ] == "v2"

    unconditional = iot.update_thing_group(
        thingGroupName=name, thingGroupProperties={"thingGroupDescription": "v3"}
    )
    assert unconditional["version"] == 3


def test_delete_thing_group(iot):
    name = make_thing_group(iot)
    iot.delete_thing_group(thingGroupName=name)
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing_group(thingGroupName=name)


def test_delete_thing_group_expected_version(iot):
    name = make_thing_group(iot)
    with aws_error("VersionConflictException"):
        iot.delete_thing_group(thingGroupName=name, expectedVersion=9)
    assert iot.describe_thing_group(thingGroupName=name)["version"] == 1
    iot.delete_thing_group(thingGroupName=name, expectedVersion=1)
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing_group(thingGroupName=name)


def test_delete_thing_group_refused_while_children_exist(iot):
    parent = make_thing_group(iot)
    child = make_thing_group(iot, parentGroupName=parent)

    with aws_error("InvalidRequestException") as excinfo:
        iot.delete_thing_group(thingGroupName=parent)
    # Terraform retries DeleteThingGroup while the message contains this text.
    assert "there are still child groups attached" in excinfo.value.response["Error"]["Message"]
    assert iot.describe_thing_group(thingGroupName=parent)["thingGroupName"] == parent

    iot.delete_thing_group(thingGroupName=child)
    iot.delete_thing_group(thingGroupName=parent)
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing_group(thingGroupName=parent)


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"parentGroup": "root", "recursive": False}, {"child"}),
        ({"parentGroup": "root", "recursive": True}, {"child", "grand"}),
        ({"namePrefixFilter": "root"}, {"root"}),
        ({"namePrefixFilter": "", "recursive": True}, {"root", "child", "grand"}),
    ],
    ids=["parent-direct", "parent-recursive", "name-prefix", "name-prefix-recursive"],
)
def test_list_thing_groups_filters(iot, query, expected):
    prefix = unique_name("tree")
    group = {role: f"{prefix}-{role}" for role in ("root", "child", "grand")}
    make_thing_group(iot, group["root"])
    make_thing_group(iot, group["child"], parentGroupName=group["root"])
    make_thing_group(iot, group["grand"], parentGroupName=group["child"])

    # symbolic names in the parameters -> this test's real group names / prefixes
    real_query = dict(query)
    if "parentGroup" in real_query:
        real_query["parentGroup"] = group[real_query["parentGroup"]]
    if "namePrefixFilter" in real_query:
        real_query["namePrefixFilter"] = f"{prefix}-{real_query['namePrefixFilter']}"

    listed, _ = collect_pages(iot.list_thing_groups, "thingGroups", **real_query)
    assert thing_group_names(listed) == {group[r] for r in expected}
    for g in listed:
        assert g["groupArn"] == iot_arn("thinggroup", g["groupName"])


def test_thing_group_membership(iot):
    group = make_thing_group(iot)
    child = make_thing_group(iot, parentGroupName=group)
    direct, nested = make_thing(iot), make_thing(iot)

    iot.add_thing_to_thing_group(thingGroupName=group, thingName=direct)
    # the ARN forms of the request are equivalent to the names
    iot.add_thing_to_thing_group(
        thingGroupArn=iot_arn("thinggroup", child), thingArn=iot_arn("thing", nested)
    )

    def members(name, recursive):
        things, _ = collect_pages(
            iot.list_things_in_thing_group, "things", thingGroupName=name, recursive=recursive
        )
        return set(things)

    assert members(group, False) == {direct}
    assert members(group, True) == {direct, nested}
    assert members(child, False) == {nested}

    groups = iot.list_thing_groups_for_thing(thingName=direct)["thingGroups"]
    assert groups == [{"groupName": group, "groupArn": iot_arn("thinggroup", group)}]

    iot.remove_thing_from_thing_group(thingGroupName=group, thingName=direct)
    assert members(group, False) == set()
    assert iot.list_thing_groups_for_thing(thingName=direct)["thingGroups"] == []


def test_add_missing_thing_to_thing_group(iot):
    group = make_thing_group(iot)
    with aws_error("ResourceNotFoundException"):
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=unique_name("missing"))


def test_update_thing_groups_for_thing(iot):
    g1, g2, g3 = (make_thing_group(iot) for _ in range(3))
    thing = make_thing(iot)
    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToAdd=[g1, g2])
    listed, _ = collect_pages(iot.list_thing_groups_for_thing, "thingGroups", thingName=thing)
    assert thing_group_names(listed) == {g1, g2}

    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToAdd=[g3], thingGroupsToRemove=[g1])
    listed, _ = collect_pages(iot.list_thing_groups_for_thing, "thingGroups", thingName=thing)
    assert thing_group_names(listed) == {g2, g3}
    assert iot.list_things_in_thing_group(thingGroupName=g1)["things"] == []
    assert iot.list_things_in_thing_group(thingGroupName=g3)["things"] == [thing]


# --------------------------------------------------------------------------------------
# billing groups
# --------------------------------------------------------------------------------------


def test_billing_group_lifecycle(iot):
    name = unique_name("billing")
    created = iot.create_billing_group(
        billingGroupName=name,
        billingGroupProperties={"billingGroupDescription": "first"},
        tags=[{"Key": "cost-center", "Value": "42"}],
    )
    assert created["billingGroupName"] == name
    assert created["billingGroupArn"] == iot_arn("billinggroup", name)
    assert created["billingGroupId"]

    described = iot.describe_billing_group(billingGroupName=name)
    assert described["billingGroupId"] == created["billingGroupId"]
    assert described["billingGroupArn"] == created["billingGroupArn"]
    assert described["version"] == 1
    assert described["billingGroupProperties"]["billingGroupDescription"] == "first"
    assert_recent(described["billingGroupMetadata"]["creationDate"])
    tags = iot.list_tags_for_resource(resourceArn=created["billingGroupArn"])["tags"]
    assert tag_dict(tags) == {"cost-center": "42"}

    updated = iot.update_billing_group(
        billingGroupName=name,
        billingGroupProperties={"billingGroupDescription": "second"},
        expectedVersion=1,
    )
    assert updated["version"] == 2
    with aws_error("VersionConflictException"):
        iot.update_billing_group(
            billingGroupName=name,
            billingGroupProperties={"billingGroupDescription": "stale"},
            expectedVersion=1,
        )
    described = iot.describe_billing_group(billingGroupName=name)
    assert described["version"] == 2
    assert described["billingGroupProperties"]["billingGroupDescription"] == "second"

    listed = iot.list_billing_groups(namePrefixFilter=name)["billingGroups"]
    assert listed == [{"groupName": name, "groupArn": created["billingGroupArn"]}]

    iot.delete_billing_group(billingGroupName=name)
    with aws_error("ResourceNotFoundException"):
        iot.describe_billing_group(billingGroupName=name)
    assert iot.list_billing_groups(namePrefixFilter=name)["billingGroups"] == []


def test_billing_group_membership(iot):
    first, second = make_billing_group(iot), make_billing_group(iot)
    thing = make_thing(iot)

    def members(group):
        return collect_pages(iot.list_things_in_billing_group, "things", billingGroupName=group)[0]

    iot.add_thing_to_billing_group(billingGroupName=first, thingName=thing)
    assert iot.describe_thing(thingName=thing)["billingGroupName"] == first
    assert members(first) == [thing]

    # a thing belongs to at most one billing group: adding it to another one moves it
    iot.add_thing_to_billing_group(
        billingGroupArn=iot_arn("billinggroup", second), thingArn=iot_arn("thing", thing)
    )
    assert iot.describe_thing(thingName=thing)["billingGroupName"] == second
    assert members(first) == []
    assert members(second) == [thing]

    iot.remove_thing_from_billing_group(billingGroupName=second, thingName=thing)
    assert "billingGroupName" not in iot.describe_thing(thingName=thing)
    assert members(second) == []


def test_create_thing_in_billing_group(iot):
    group = make_billing_group(iot)
    thing = make_thing(iot, billingGroupName=group)
    assert iot.describe_thing(thingName=thing)["billingGroupName"] == group
    assert iot.list_things_in_billing_group(billingGroupName=group)["things"] == [thing]


# --------------------------------------------------------------------------------------
# tags
# --------------------------------------------------------------------------------------


TAGGABLE_KINDS = sorted(set(KINDS) - {"thing"})


@pytest.mark.parametrize("kind", TAGGABLE_KINDS)
def test_tag_untag_list(iot, kind):
    k = KINDS[kind]
    name = unique_name("tagged")
    arn = k.create(iot, name, 1)[k.arn_key]
    assert iot.list_tags_for_resource(resourceArn=arn)["tags"] == []

    iot.tag_resource(
        resourceArn=arn, tags=[{"Key": "env", "Value": "dev"}, {"Key": "owner", "Value": "team-a"}]
    )
    assert tag_dict(iot.list_tags_for_resource(resourceArn=arn)["tags"]) == {
        "env": "dev",
        "owner": "team-a",
    }

    # same key overwrites; empty value is allowed
    iot.tag_resource(resourceArn=arn, tags=[{"Key": "env", "Value": "prod"}, {"Key": "empty", "Value": ""}])
    assert tag_dict(iot.list_tags_for_resource(resourceArn=arn)["tags"]) == {
        "env": "prod",
        "owner": "team-a",
        "empty": "",
    }

    iot.untag_resource(resourceArn=arn, tagKeys=["owner", "empty"])
    assert tag_dict(iot.list_tags_for_resource(resourceArn=arn)["tags"]) == {"env": "prod"}


def test_things_cannot_be_tagged(iot):
    # AWS IoT tags thing groups, thing types, billing groups, policies, rules, jobs, ...
    # but not things (tagging-iot.md; aws_iot_thing and AWS::IoT::Thing have no tags).
    arn = iot.create_thing(thingName=unique_name("thing"))["thingArn"]
    with aws_error("InvalidRequestException"):
        iot.tag_resource(resourceArn=arn, tags=[{"Key": "env", "Value": "dev"}])


@pytest.mark.parametrize(
    "call",
    [
        lambda iot, arn: iot.list_tags_for_resource(resourceArn=arn),
        lambda iot, arn: iot.tag_resource(resourceArn=arn, tags=[{"Key": "k", "Value": "v"}]),
        lambda iot, arn: iot.untag_resource(resourceArn=arn, tagKeys=["k"]),
    ],
    ids=["ListTagsForResource", "TagResource", "UntagResource"],
)
def test_tags_on_unknown_arn(iot, call):
    with aws_error("ResourceNotFoundException"):
        call(iot, iot_arn("thinggroup", unique_name("missing")))


# --------------------------------------------------------------------------------------
# DescribeEndpoint
# --------------------------------------------------------------------------------------

ENDPOINT_TYPES = ["iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs"]
HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


@pytest.mark.parametrize("endpoint_type", ENDPOINT_TYPES)
def test_describe_endpoint_is_a_stable_hostname(iot, endpoint_type):
    address = iot.describe_endpoint(endpointType=endpoint_type)["endpointAddress"]
    assert HOSTNAME.match(address), f"not a bare host name: {address!r}"
    for _ in range(2):
        assert iot.describe_endpoint(endpointType=endpoint_type)["endpointAddress"] == address


def test_describe_endpoint_defaults_to_iot_data(iot):
    assert (
        iot.describe_endpoint()["endpointAddress"]
        == iot.describe_endpoint(endpointType="iot:Data")["endpointAddress"]
    )


def test_describe_endpoint_unknown_type(iot):
    with aws_error("InvalidRequestException"):
        iot.describe_endpoint(endpointType="iot:NoSuchEndpoint")


# --------------------------------------------------------------------------------------
# account-wide configuration singletons
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent, expected",
    [({"Enabled": True}, True), ({"Enabled": False}, False), ({}, False)],
    # the Go SDK v2 (Terraform) omits false booleans: {} means disabled
    ids=["enable", "disable", "omitted-means-disabled"],
)
def test_event_configurations_round_trip(iot, sent, expected):
    before = iot.describe_event_configurations()["eventConfigurations"]
    assert set(before) == set(EVENT_TYPES), "all event types are always listed"

    iot.update_event_configurations(eventConfigurations={"THING": {"Enabled": not expected}})
    iot.update_event_configurations(
        eventConfigurations={"THING": sent, "THING_GROUP": {"Enabled": not expected}}
    )
    configs = iot.describe_event_configurations()["eventConfigurations"]
    assert set(configs) == set(EVENT_TYPES)
    assert configs["THING"] == {"Enabled": expected}, "Enabled is always reported explicitly"
    assert configs["THING_GROUP"] == {"Enabled": not expected}
    for other in set(EVENT_TYPES) - {"THING", "THING_GROUP"}:
        assert configs[other] == before[other], f"{other} changed by an update that omitted it"


@pytest.mark.parametrize(
    "thing_config, group_config",
    [
        (
            {
                "thingIndexingMode": "REGISTRY_AND_SHADOW",
                "thingConnectivityIndexingMode": "STATUS",
                "customFields": [{"name": "attributes.location", "type": "String"}],
            },
            {"thingGroupIndexingMode": "ON"},
        ),
        ({"thingIndexingMode": "REGISTRY"}, {"thingGroupIndexingMode": "OFF"}),
        ({"thingIndexingMode": "OFF"}, {"thingGroupIndexingMode": "OFF"}),
    ],
    ids=["registry-shadow-connectivity", "registry", "off"],
)
def test_indexing_configuration_round_trip(iot, thing_config, group_config):
    iot.update_indexing_configuration(
        thingIndexingConfiguration=thing_config, thingGroupIndexingConfiguration=group_config
    )
    got = iot.get_indexing_configuration()
    thing_got = got["thingIndexingConfiguration"]
    for key, value in thing_config.items():
        if key == "customFields":
            for field in value:
                assert field in thing_got.get("customFields", []), thing_got
        else:
            assert thing_got[key] == value, thing_got
    assert got["thingGroupIndexingConfiguration"]["thingGroupIndexingMode"] == group_config[
        "thingGroupIndexingMode"
    ]


@pytest.mark.parametrize(
    "level, disable_all",
    [("WARN", False), ("DEBUG", False), ("INFO", False), ("ERROR", True), ("DISABLED", False)],
)
def test_v2_logging_options_round_trip(iot, level, disable_all):
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/iot-logging"
    iot.set_v2_logging_options(roleArn=role, defaultLogLevel=level, disableAllLogs=disable_all)
    got = iot.get_v2_logging_options()
    assert got["roleArn"] == role
    assert got["defaultLogLevel"] == level
    assert got["disableAllLogs"] is disable_all


# --------------------------------------------------------------------------------------
# wire protocol: error shape, request ids, authentication, malformed input
# --------------------------------------------------------------------------------------


def test_request_id_on_success_responses(iot):
    ids = []
    for _ in range(2):
        headers = iot.list_thing_types(maxResults=1)["ResponseMetadata"]["HTTPHeaders"]
        assert headers.get("x-amzn-requestid"), headers
        ids.append(headers["x-amzn-requestid"])
    assert ids[0] != ids[1], "request ids must be unique"


def test_error_response_shape(iot):
    try:
        iot.describe_thing(thingName=unique_name("missing"))
    except ClientError as err:
        check_aws_error(err, "ResourceNotFoundException", 404)
        assert err.response["ResponseMetadata"]["RequestId"]
    else:
        pytest.fail("DescribeThing of a missing thing succeeded")


@pytest.mark.parametrize(
    "method, operation",
    [
        ("describe_account_audit_configuration", "DescribeAccountAuditConfiguration"),
        ("list_security_profiles", "ListSecurityProfiles"),
    ],
)
def test_unimplemented_operation_names_itself(iot, method, operation):
    # Device Defender operations, outside ferrocore's registry scope. If one of them gets
    # implemented, replace it here with another operation ferrocore does not serve.
    with pytest.raises(ClientError) as excinfo:
        getattr(iot, method)()
    response = excinfo.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] >= 400
    assert operation in response["Error"].get("Message", ""), response["Error"]


@pytest.mark.parametrize(
    "access_key, secret_key, code",
    [
        (ACCESS_KEY, "wrong-secret", "InvalidSignatureException"),
        ("AKIAUNKNOWNKEY000000", "whatever", "UnrecognizedClientException"),
    ],
    ids=["wrong-secret", "unknown-access-key"],
)
def test_bad_credentials_are_refused(client_factory, access_key, secret_key, code):
    client = client_factory("iot", access_key=access_key, secret_key=secret_key)
    with aws_error(code, 403):
        client.list_things()


def signed_request(endpoint: str, method: str, path: str, body: bytes):
    """Send a SigV4-signed request (service `iot`) with an arbitrary body.

    Returns (status, headers, body).
    """
    request = AWSRequest(
        method=method, url=endpoint + path, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "iot", REGION).add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(prepared.url, data=body, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(raw, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"attributePayload": {"attributes": ', b"[1, 2, 3]", b'{"attributePayload": "x"}'],
    ids=["garbage", "truncated", "not-an-object", "wrong-member-type"],
)
def test_malformed_json_body_is_rejected(server, iot, body):
    name = unique_name("malformed")
    status, headers, payload = signed_request(server.endpoint, "POST", f"/things/{name}", body)
    assert status == 400, (status, payload)
    assert headers.get("x-amzn-ErrorType"), dict(headers)
    assert headers.get("x-amzn-RequestId"), dict(headers)
    assert "message" in json.loads(payload or b"{}"), payload
    with aws_error("ResourceNotFoundException"):
        iot.describe_thing(thingName=name)


def test_signed_raw_request_is_accepted(server, iot):
    # control for the malformed-body test: the same path with a valid body works
    name = unique_name("raw")
    status, _, payload = signed_request(
        server.endpoint, "POST", f"/things/{name}", b'{"attributePayload": {"attributes": {"a": "1"}}}'
    )
    assert status == 200, payload
    assert json.loads(payload)["thingName"] == name
    assert iot.describe_thing(thingName=name)["attributes"] == {"a": "1"}


def test_sts_get_caller_identity(sts):
    identity = sts.get_caller_identity()
    assert identity["Account"] == ACCOUNT_ID
    assert identity["Arn"].startswith("arn:aws:") and ACCOUNT_ID in identity["Arn"]
    assert identity["UserId"]


# --------------------------------------------------------------------------------------
# durability
# --------------------------------------------------------------------------------------


@pytest.mark.restart
def test_registry_survives_restart(server, iot):
    if not server.can_restart:
        pytest.skip("FERROCORE_ENDPOINT is set: the tests cannot restart an external server")
    type_name = make_thing_type(
        iot, thingTypeDescription="kept", searchableAttributes=["location"]
    )
    deprecated_type = make_thing_type(iot)
    iot.deprecate_thing_type(thingTypeName=deprecated_type)
    billing = make_billing_group(iot, billingGroupProperties={"billingGroupDescription": "kept"})
    root = make_thing_group(
        iot,
        thingGroupProperties={"attributePayload": {"attributes": {"k": "v"}}},
        tags=[{"Key": "kept", "Value": "yes"}],
    )
    child = make_thing_group(iot, parentGroupName=root)
    thing = make_thing(
        iot,
        thingTypeName=type_name,
        billingGroupName=billing,
        attributePayload={"attributes": {"location": "a"}},
    )
    iot.update_thing(thingName=thing, attributePayload={"attributes": {"floor": "2"}, "merge": True})
    iot.add_thing_to_thing_group(thingGroupName=child, thingName=thing)
    iot.update_event_configurations(eventConfigurations={"THING_TYPE": {"Enabled": True}})
    iot.set_v2_logging_options(
        roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/kept", defaultLogLevel="ERROR", disableAllLogs=False
    )

    def snapshot():
        calls = {
            "thing": lambda: iot.describe_thing(thingName=thing),
            "type": lambda: iot.describe_thing_type(thingTypeName=type_name),
            "deprecated type": lambda: iot.describe_thing_type(thingTypeName=deprecated_type),
            "root": lambda: iot.describe_thing_group(thingGroupName=root),
            "child": lambda: iot.describe_thing_group(thingGroupName=child),
            "billing": lambda: iot.describe_billing_group(billingGroupName=billing),
            "members": lambda: iot.list_things_in_thing_group(thingGroupName=child),
            "groups of thing": lambda: iot.list_thing_groups_for_thing(thingName=thing),
            "billing members": lambda: iot.list_things_in_billing_group(billingGroupName=billing),
            "tags": lambda: iot.list_tags_for_resource(resourceArn=iot_arn("thinggroup", root)),
            "events": lambda: iot.describe_event_configurations()["eventConfigurations"],
            "logging": lambda: iot.get_v2_logging_options(),
            **{
                f"endpoint {t}": (lambda t=t: iot.describe_endpoint(endpointType=t))
                for t in ENDPOINT_TYPES
            },
        }
        return {key: without_metadata(call()) for key, call in calls.items()}

    before = snapshot()
    assert before["thing"]["version"] == 2
    server.restart()
    after = snapshot()
    for key in before:
        assert after[key] == before[key], f"{key} changed across restart"

    # the store keeps working after the restart
    iot.update_thing(thingName=thing, attributePayload={"attributes": {"floor": "3"}, "merge": True})
    assert iot.describe_thing(thingName=thing)["version"] == 3
    assert iot.describe_thing(thingName=make_thing(iot))["version"] == 1
