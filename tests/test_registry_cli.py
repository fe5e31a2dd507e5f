"""The AWS CLI v1 against ferrocore, running the registry commands of seed 002 verbatim:

    aws iot create-thing-type --thing-type-name "TemperatureSensor" \
        --thing-type-properties "thingTypeDescription=Temperature monitoring sensors"
    aws iot create-thing --thing-name "sensor-001" --thing-type-name "TemperatureSensor" \
        --attribute-payload "attributes={location=warehouse-a,floor=1}"
    aws iot list-things --max-results 10

Only --endpoint-url and --output json are added. The names are the seed's own, so the
module prepares the server for them (and cleans up) rather than using unique names.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from cli_helpers import make_aws_cli, run_json
from iot_helpers import iot_arn, unique_name

pytestmark = pytest.mark.cli

THING_TYPE = "TemperatureSensor"
THING = "sensor-001"
DESCRIPTION = "Temperature monitoring sensors"

SEED_CREATE_THING_TYPE = [
    "iot", "create-thing-type",
    "--thing-type-name", THING_TYPE,
    "--thing-type-properties", f"thingTypeDescription={DESCRIPTION}",
]
SEED_CREATE_THING = [
    "iot", "create-thing",
    "--thing-name", THING,
    "--thing-type-name", THING_TYPE,
    "--attribute-payload", "attributes={location=warehouse-a,floor=1}",
]
SEED_LIST_THINGS = ["iot", "list-things", "--max-results", "10"]


@pytest.fixture(scope="module")
def aws_cli(server, tmp_path_factory):
    return make_aws_cli(server.endpoint, tmp_path_factory.mktemp("awscli"))


@pytest.fixture(scope="module")
def seed_state(client_factory):
    """Make the seed's fixed names usable on a server that may have seen them before."""
    iot = client_factory("iot")

    def remove_thing():
        try:
            iot.delete_thing(thingName=THING)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise

    remove_thing()
    try:
        if iot.describe_thing_type(thingTypeName=THING_TYPE)["thingTypeMetadata"]["deprecated"]:
            iot.deprecate_thing_type(thingTypeName=THING_TYPE, undoDeprecate=True)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    yield iot
    remove_thing()
    try:  # AWS itself would refuse the delete for 5 minutes after deprecation
        iot.deprecate_thing_type(thingTypeName=THING_TYPE)
        iot.delete_thing_type(thingTypeName=THING_TYPE)
    except ClientError:
        pass


@pytest.fixture(scope="module")
def seed_outputs(aws_cli, seed_state):
    """Run the three seed commands once, in order; return their parsed JSON outputs."""
    return {
        "create-thing-type": run_json(aws_cli, SEED_CREATE_THING_TYPE),
        "create-thing": run_json(aws_cli, SEED_CREATE_THING),
        "list-things": run_json(aws_cli, SEED_LIST_THINGS),
    }


def test_create_thing_type_output(seed_outputs):
    out = seed_outputs["create-thing-type"]
    assert out["thingTypeName"] == THING_TYPE
    assert out["thingTypeArn"] == iot_arn("thingtype", THING_TYPE)
    assert out["thingTypeId"]


def test_create_thing_output(seed_outputs):
    out = seed_outputs["create-thing"]
    assert out["thingName"] == THING
    assert out["thingArn"] == iot_arn("thing", THING)
    assert out["thingId"]


def test_list_things_output(aws_cli, seed_outputs):
    first_page = seed_outputs["list-things"]
    assert isinstance(first_page["things"], list)
    assert 1 <= len(first_page["things"]) <= 10

    # --max-results turns off the CLI's auto-pagination: follow nextToken by hand
    things, page = list(first_page["things"]), first_page
    while page.get("nextToken"):
        page = run_json(aws_cli, SEED_LIST_THINGS + ["--next-token", page["nextToken"]])
        assert len(page["things"]) <= 10
        things.extend(page["things"])
    for t in things:
        assert t["thingArn"] == iot_arn("thing", t["thingName"])

    sensor = [t for t in things if t["thingName"] == THING]
    assert len(sensor) == 1, f"{THING} listed {len(sensor)} times"
    assert sensor[0]["thingTypeName"] == THING_TYPE
    assert sensor[0]["attributes"] == {"location": "warehouse-a", "floor": "1"}
    assert sensor[0]["version"] == 1


def test_seed_result_via_describe(aws_cli, seed_outputs):
    thing = run_json(aws_cli, ["iot", "describe-thing", "--thing-name", THING])
    assert thing["thingId"] == seed_outputs["create-thing"]["thingId"]
    assert thing["thingTypeName"] == THING_TYPE
    # the CLI shorthand sends every value as a string
    assert thing["attributes"] == {"location": "warehouse-a", "floor": "1"}

    thing_type = run_json(aws_cli, ["iot", "describe-thing-type", "--thing-type-name", THING_TYPE])
    assert thing_type["thingTypeProperties"]["thingTypeDescription"] == DESCRIPTION
    assert thing_type["thingTypeMetadata"]["deprecated"] is False
    # CLI v1 prints timestamps as ISO 8601 strings or epoch numbers depending on config
    assert thing_type["thingTypeMetadata"]["creationDate"]


def test_seed_commands_are_idempotent(aws_cli, seed_outputs):
    assert run_json(aws_cli, SEED_CREATE_THING_TYPE) == seed_outputs["create-thing-type"]
    assert run_json(aws_cli, SEED_CREATE_THING) == seed_outputs["create-thing"]


def test_cli_reports_service_errors(aws_cli):
    result = aws_cli(["iot", "describe-thing", "--thing-name", unique_name("missing")])
    assert result.returncode != 0
    assert "ResourceNotFoundException" in result.stderr, result.stderr
    assert "DescribeThing" in result.stderr, result.stderr
