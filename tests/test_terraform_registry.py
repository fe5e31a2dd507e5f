"""Terraform (hashicorp/aws 5.100.0) applies, re-plans and destroys tests/terraform/registry
against ferrocore. The provider comes from the local filesystem mirror /opt/tf-plugins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from iot_helpers import ACCOUNT_ID, REGION, aws_error, iot_arn

pytestmark = pytest.mark.terraform

CONFIG_DIR = Path(__file__).resolve().parent / "terraform" / "registry"
PLUGIN_MIRROR = Path("/opt/tf-plugins")
PROVIDER_ADDRESS = "registry.terraform.io/hashicorp/aws"
COMMAND_TIMEOUT = 900

CLI_CONFIG = f"""
provider_installation {{
  filesystem_mirror {{
    path    = "{PLUGIN_MIRROR}"
    include = ["{PROVIDER_ADDRESS}"]
  }}
  direct {{
    exclude = ["{PROVIDER_ADDRESS}"]
  }}
}}
"""


class Terraform:
    """Runs terraform in one working directory; every command's output goes to stdout,
    which pytest shows for a failed test."""

    def __init__(self, binary: str, workdir: Path, env: dict):
        self.binary, self.workdir, self.env = binary, workdir, env

    def __call__(self, *args: str, ok_codes=(0,)) -> subprocess.CompletedProcess:
        cmd = [self.binary, *args]
        result = subprocess.run(
            cmd, cwd=self.workdir, env=self.env, capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT,
        )
        print(f"$ {' '.join(cmd)}  (exit {result.returncode})\n{result.stdout}{result.stderr}")
        if result.returncode not in ok_codes:
            pytest.fail(
                f"terraform {args[0]} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
                pytrace=False,
            )
        return result


@pytest.fixture
def terraform(server, tmp_path):
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform is not on PATH: the Terraform registry test did not run")
    if not (PLUGIN_MIRROR / PROVIDER_ADDRESS).is_dir():
        pytest.skip(
            f"no hashicorp/aws provider in the mirror {PLUGIN_MIRROR}: "
            "the Terraform registry test did not run"
        )

    workdir = tmp_path / "registry"
    shutil.copytree(
        CONFIG_DIR, workdir, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
    )
    cli_config = tmp_path / "terraform.rc"
    cli_config.write_text(CLI_CONFIG)

    # nothing inherited may steer terraform or the provider (TF_CLI_ARGS*, TF_VAR_*, profiles);
    # TF_LOG/TF_LOG_PATH are kept for debugging.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TF_")) or k in ("TF_LOG", "TF_LOG_PATH")
    }
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config),  # the inherited one may not exist
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        TF_VAR_endpoint=server.endpoint,
        TF_VAR_suffix=uuid.uuid4().hex[:10],
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),  # absent: ignore the user's profiles
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
    )
    tf = Terraform(binary, workdir, env)
    tf("init", "-input=false", "-no-color")
    yield tf
    # best effort when the test stopped before its own destroy
    if (workdir / "terraform.tfstate").exists():
        state = json.loads((workdir / "terraform.tfstate").read_text() or "{}")
        if state.get("resources"):
            tf("destroy", "-auto-approve", "-input=false", "-no-color", ok_codes=(0, 1))


def gone(call) -> bool:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"] == "ResourceNotFoundException"
    return False


def tags_of(iot, arn: str) -> dict:
    return {t["Key"]: t["Value"] for t in iot.list_tags_for_resource(resourceArn=arn)["tags"]}


def test_apply_replan_destroy(terraform, client_factory):
    iot = client_factory("iot")
    tf = terraform

    tf("apply", "-auto-approve", "-input=false", "-no-color")

    # a second plan right after apply must find nothing to change (exit 0; 2 = diff)
    tf("plan", "-detailed-exitcode", "-input=false", "-no-color")

    out = {k: v["value"] for k, v in json.loads(tf("output", "-json").stdout).items()}
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

    tf("destroy", "-auto-approve", "-input=false", "-no-color")

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
