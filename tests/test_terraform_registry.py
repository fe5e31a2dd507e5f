"""Terraform (hashicorp/aws 5.100.0) applies, re-plans and destroys tests/terraform/registry
against ferrocore. The provider comes from the local filesystem mirror /opt/tf-plugins.
"""

from __future__ import annotations

import pytest

from iot_helpers import ACCOUNT_ID, REGION, aws_error, iot_arn
from terraform_helpers import APPLY, DESTROY, PLAN_CHECK, destroy_leftovers, gone, prepare

pytestmark = pytest.mark.terraform


@pytest.fixture
def terraform(server, tmp_path):
    tf = prepare(server, tmp_path, "registry")
    yield tf
    destroy_leftovers(tf)


def tags_of(iot, arn: str) -> dict:
    return {t["Key"]: t["Value"] for t in iot.list_tags_for_resource(resourceArn=arn)["tags"]}


def test_apply_replan_destroy(terraform, client_factory):
    iot = client_factory("iot")
    tf = terraform

    tf(*APPLY)

    # a second plan right after apply must find nothing to change (exit 0; 2 = diff)
    tf(*PLAN_CHECK)

    out = tf.outputs()
    assert out["account_id"] == ACCOUNT_ID
    assert out["region"] == REGION
    assert out["iot_endpoint"] == iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert out["thing_arn"] == iot_arn("thing", out["thing_name"])

    # what Terraform created is what the API shows
    thing = iot.describe_thing(thingName=out["thing_name"])
    assert thing["thingTypeName"] == out["thing_type_name"]
    assert thing["attributes"] == {"location": "warehouse-a", "floor": "1"}

    thing_type = iot.describe_thing_type(thingTypeName=out["thing_type_name"])
    assert sorted(thing_type["thingTypeProperties"]["searchableAttributes"]) == ["floor", "location"]
    assert tags_of(iot, thing_type["thingTypeArn"]) == {"Environment": "test"}

    parent = iot.describe_thing_group(thingGroupName=out["parent_group_name"])
    assert parent["thingGroupProperties"]["thingGroupDescription"] == "All sensors in warehouse"
    assert parent["thingGroupProperties"]["attributePayload"]["attributes"] == {"site": "warehouse-a"}
    assert tags_of(iot, parent["thingGroupArn"]) == {"Environment": "production"}

    child = iot.describe_thing_group(thingGroupName=out["child_group_name"])
    assert child["thingGroupMetadata"]["parentGroupName"] == out["parent_group_name"]
    assert iot.list_things_in_thing_group(thingGroupName=out["child_group_name"])["things"] == [
        out["thing_name"]
    ]

    billing = iot.describe_billing_group(billingGroupName=out["billing_group_name"])
    assert billing["billingGroupProperties"]["billingGroupDescription"] == (
        "Billing group for the warehouse fleet"
    )
    assert tags_of(iot, billing["billingGroupArn"]) == {"CostCenter": "42"}

    # the provider's Go SDK sends {} for false; the server must still report Enabled: false
    events = iot.describe_event_configurations()["eventConfigurations"]
    assert events["THING"] == {"Enabled": True}
    assert events["THING_TYPE"] == {"Enabled": False}

    logging = iot.get_v2_logging_options()
    assert logging["roleArn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/iot-logging"
    assert logging["defaultLogLevel"] == "WARN"

    indexing = iot.get_indexing_configuration()
    assert indexing["thingIndexingConfiguration"]["thingIndexingMode"] == "REGISTRY"
    assert indexing["thingGroupIndexingConfiguration"]["thingGroupIndexingMode"] == "ON"

    tf(*DESTROY)

    for label, call in {
        "thing": lambda: iot.describe_thing(thingName=out["thing_name"]),
        "child group": lambda: iot.describe_thing_group(thingGroupName=out["child_group_name"]),
        "parent group": lambda: iot.describe_thing_group(thingGroupName=out["parent_group_name"]),
        "billing group": lambda: iot.describe_billing_group(billingGroupName=out["billing_group_name"]),
        "thing type": lambda: iot.describe_thing_type(thingTypeName=out["thing_type_name"]),
    }.items():
        assert gone(call), f"{label} still exists after terraform destroy"
    with aws_error("ResourceNotFoundException"):
        iot.list_thing_groups_for_thing(thingName=out["thing_name"])
