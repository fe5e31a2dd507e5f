"""Seed 002's Rules Engine section with Terraform, end to end ("Done when" of the issue):

tests/terraform/seed002/main.tf holds the seed's rules.tf as written (IAM role + two inline
policies, the sensor-data table with TTL, StoreSensorData with its cloudwatch_logs error
action, the /aws/iot/rules/errors log group, AnomalyDetection with a lambda action) plus the
anomaly_handler Lambda function the seed references. The IoT resources go to ferrocore, the
others to moto_server; ferrocore's [rules] config sends DynamoDB and CloudWatch Logs actions
to the same moto_server and Lambda invocations to a capturing stub.

Then: apply is clean, a second plan finds no changes, a reading lands in moto's sensor-data
table, an anomalous reading also reaches the Lambda stub, a reading without the table's range
key fails the DynamoDB put and the error lands in /aws/iot/rules/errors, destroy is clean.

Skipped (loudly, see -ra) without terraform, the provider mirror or moto_server.
"""

from __future__ import annotations

import json
import time
import zipfile

import pytest

pytest.register_assert_rewrite("rules_helpers")
from botocore.exceptions import ClientError

from rules_helpers import check_error_payload, lambda_invocation_path, wait_until
from terraform_helpers import APPLY, DESTROY, PLAN_CHECK, destroy_leftovers, prepare, terraform_binary_or_skip

pytestmark = pytest.mark.terraform
pytest_plugins = ["rules_helpers"]

TABLE = "sensor-data"
LOG_GROUP = "/aws/iot/rules/errors"
FUNCTION = "anomaly-handler"
TOPIC = "sensors/sensor-1/temperature"


@pytest.fixture
def terraform_or_skip():
    """Skips before any server starts when terraform or the provider mirror is missing."""
    return terraform_binary_or_skip("the seed 002 rules engine Terraform test")


def lambda_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    print(event)\n    return {'anomaly': True}\n")
    return path


def missing(call, code: str = "ResourceNotFoundException") -> bool:
    try:
        call()
    except ClientError as err:
        return err.response["Error"]["Code"] == code
    return False


def test_seed002_rules_engine_with_terraform(terraform_or_skip, rules_server, rules_iot, aws, devices, tmp_path):
    dynamodb, logs, lambdas = aws.client("dynamodb"), aws.client("logs"), aws.client("lambda")
    stub = rules_server.lambda_stub
    tf = prepare(
        rules_server, tmp_path, "seed002",
        {"aws_endpoint": aws.moto.url, "lambda_zip": lambda_zip(tmp_path / "anomaly_handler.zip")},
    )
    try:
        tf(*APPLY)
        tf(*PLAN_CHECK)  # exit 0: no changes (2 would be a diff)
        out = tf.outputs()

        # ---- what Terraform made -------------------------------------------------------
        role_arn = out["role_arn"]
        function_arn = lambdas.get_function(FunctionName=FUNCTION)["Configuration"]["FunctionArn"]
        assert out["lambda_arn"] == function_arn
        assert (out["table_name"], out["log_group_name"]) == (TABLE, LOG_GROUP)

        store = rules_iot.get_topic_rule(ruleName="StoreSensorData")
        assert store["ruleArn"] == out["store_rule_arn"]
        rule = store["rule"]
        assert (rule["sql"], rule["awsIotSqlVersion"], rule["ruleDisabled"]) == (
            "SELECT * FROM 'sensors/+/temperature'", "2016-03-23", False,
        )
        assert rule["description"] == "Store sensor readings in DynamoDB"
        assert rule["actions"] == [{"dynamoDBv2": {"roleArn": role_arn, "putItem": {"tableName": TABLE}}}]
        error_logs = rule["errorAction"]["cloudwatchLogs"]
        assert (error_logs["logGroupName"], error_logs["roleArn"]) == (LOG_GROUP, role_arn)
        assert error_logs.get("batchMode", False) is False

        anomaly = rules_iot.get_topic_rule(ruleName="AnomalyDetection")
        assert anomaly["ruleArn"] == out["anomaly_rule_arn"]
        assert anomaly["rule"]["sql"] == "SELECT * FROM 'sensors/+/temperature' WHERE value > 40 OR value < 0"
        assert anomaly["rule"]["actions"] == [{"lambda": {"functionArn": function_arn}}]

        time.sleep(1.5)  # rules apply within ~1 s of their creation
        device = devices.connect()
        invocations = lambda_invocation_path(function_arn)

        def item(timestamp: int):
            key = {"device_id": {"S": "sensor-1"}, "timestamp": {"N": str(timestamp)}}
            return dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")

        # ---- a normal reading: stored, no anomaly -------------------------------------
        ts1 = int(time.time() * 1000)
        normal = {"device_id": "sensor-1", "timestamp": ts1, "value": 22.5}
        device.publish(TOPIC, normal)
        stored = wait_until(lambda: item(ts1), what=f"the reading in {TABLE}")
        assert stored == {"device_id": {"S": "sensor-1"}, "timestamp": {"N": str(ts1)}, "value": {"N": "22.5"}}

        # ---- an anomalous reading: stored and sent to the Lambda function ---------------
        ts2 = ts1 + 1
        hot = {"device_id": "sensor-1", "timestamp": ts2, "value": 45}
        device.publish(TOPIC, hot)
        stored = wait_until(lambda: item(ts2), what=f"the anomalous reading in {TABLE}")
        assert stored == {"device_id": {"S": "sensor-1"}, "timestamp": {"N": str(ts2)}, "value": {"N": "45"}}
        stub.wait_for(1, invocations)
        time.sleep(1.0)
        calls = stub.matching(invocations)
        assert len(calls) == 1, f"only the reading above 40 reaches the Lambda function: {[c.body for c in calls]}"
        assert calls[0].method == "POST"
        assert calls[0].headers.get("x-amz-invocation-type") == "Event"
        assert calls[0].json() == hot

        # ---- no range key: the put fails, the error action logs it ----------------------
        raw = json.dumps({"device_id": "sensor-1", "value": 21.0}).encode()
        device.publish(TOPIC, raw)

        def errors():
            return logs.filter_log_events(logGroupName=LOG_GROUP)["events"]

        wait_until(errors, timeout=15, what=f"the error in {LOG_GROUP}")
        time.sleep(1.0)
        events = errors()
        assert len(events) == 1, [e["message"] for e in events]
        report = check_error_payload(events[0]["message"], "StoreSensorData", TOPIC, device.client_id, raw)
        assert [(f["failedAction"], f["failedResource"]) for f in report["failures"]] == [("DynamoActionV2", TABLE)]
        assert "ValidationException" in report["failures"][0]["errorMessage"], report
        assert len(stub.matching(invocations)) == 1, "21.0 is no anomaly"
        items = dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
        assert sorted(int(i["timestamp"]["N"]) for i in items) == [ts1, ts2]

        # ---- destroy --------------------------------------------------------------------
        tf(*DESTROY)
        names = {r["ruleName"] for r in rules_iot.list_topic_rules()["rules"]}
        assert not names & {"StoreSensorData", "AnomalyDetection"}, names
        # AWS answers GetTopicRule on a missing rule with UnauthorizedException
        assert missing(lambda: rules_iot.get_topic_rule(ruleName="StoreSensorData"), "UnauthorizedException")
        assert missing(lambda: dynamodb.describe_table(TableName=TABLE))
        assert missing(lambda: lambdas.get_function(FunctionName=FUNCTION))
        assert logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"] == []
        assert missing(lambda: aws.client("iam").get_role(RoleName="iot-rules-role"), "NoSuchEntity")
    finally:
        destroy_leftovers(tf)
