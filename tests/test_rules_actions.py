"""The rules engine end to end: devices publish over MQTT (TLS, X.509) to a ferrocore whose
[rules] section points every AWS service at moto_server and Lambda at a capturing stub; each
test creates topic rules with boto3 (CreateTopicRule) and reads what arrived in moto
(DynamoDB, S3, SQS, SNS, Kinesis, Firehose, CloudWatch Logs/metrics/alarms), in the stub
(Lambda Invoke, HTTP action, destination confirmation) or on MQTT (republish).

Expected behaviour: shared/reference/aws-iot-core.md section 5 and crates/rules/NOTES.md.
Fixtures and helpers: tests/rules_helpers.py.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from datetime import datetime, timezone
from urllib.parse import urlparse

import pytest

pytest.register_assert_rewrite("rules_helpers")
from botocore.exceptions import ClientError

from rules_helpers import (
    MAX_ATTEMPTS,
    RULE_SETTLE,
    ROLE_ARN,
    check_error_payload,
    current,
    dynamodbv2_action,
    http_action,
    lambda_action,
    lambda_arn,
    lambda_invocation_path,
    logs_action,
    metrics_snapshot,
    metric_sum,
    republish_action,
    s3_action,
    sqs_action,
    unique,
    wait_until,
)

# Rule actions and their targets: the same on any store, so the PostgreSQL pass of
# scripts/test skips this suite.
pytestmark = pytest.mark.store_neutral

pytest_plugins = ["rules_helpers"]

LOG_STREAM = "aws-iot-rules"  # the stream the cloudwatchLogs action writes into (created when missing)
MESSAGES = "ferrocore_rules_messages_total"
ACTIONS = "ferrocore_rules_actions_total"
ERROR_ACTIONS = "ferrocore_rules_error_actions_total"


def root(prefix: str) -> str:
    """A topic level no other test uses."""
    return unique(prefix)


def bodies_json(bodies: list[str]) -> list:
    return [json.loads(body) for body in bodies]


# ======================================================================================
# DynamoDB
# ======================================================================================


def test_dynamodbv2_writes_one_column_per_top_level_key(aws, rules, devices):
    table = aws.table("device_id", "S", "ts", "N")
    top = root("ddb2")
    rules.create(f"SELECT * FROM '{top}/+/telemetry'", [dynamodbv2_action(table)])
    device = devices.connect()
    document = {
        "device_id": device.thing,
        "ts": 1700000000123,
        "value": 22.5,
        "ok": True,
        "tags": ["a", 1],
        "meta": {"fw": "1.2", "n": None},
    }
    device.publish(f"{top}/{device.thing}/telemetry", document)
    items = wait_until(lambda: aws.items(table), what=f"an item in {table}")
    assert items == [{
        "device_id": {"S": device.thing},
        "ts": {"N": "1700000000123"},
        "value": {"N": "22.5"},
        "ok": {"BOOL": True},
        "tags": {"L": [{"S": "a"}, {"N": "1"}]},
        "meta": {"M": {"fw": {"S": "1.2"}, "n": {"NULL": True}}},
    }]


def test_dynamodb_v1_keys_from_templates_and_payload_field(aws, rules, devices):
    table = aws.table("id", "S", "ts", "N")
    top = root("ddb1")
    rules.create(
        f"SELECT * FROM '{top}/+/reading'",
        [{"dynamoDB": {
            "roleArn": ROLE_ARN, "tableName": table,
            "hashKeyField": "id", "hashKeyValue": "${topic(2)}", "hashKeyType": "STRING",
            "rangeKeyField": "ts", "rangeKeyValue": "${ts}", "rangeKeyType": "NUMBER",
            "payloadField": "data",
        }}],
    )
    device = devices.connect()
    device.publish(f"{top}/room-7/reading", {"ts": 1234, "temperature": 20, "unit": "C"})
    items = wait_until(lambda: aws.items(table), what=f"an item in {table}")
    assert items == [{
        "id": {"S": "room-7"},
        "ts": {"N": "1234"},
        "data": {"M": {"ts": {"N": "1234"}, "temperature": {"N": "20"}, "unit": {"S": "C"}}},
    }]


def dynamodb_v1_by_client(aws, rules, select: str, name: str) -> tuple[str, str]:
    """A table keyed by `device` and a dynamoDB (v1) rule writing `select` keyed by client id."""
    table = aws.table("device", "S")
    top = root(name)
    rules.create(
        f"SELECT {select} FROM '{top}/#'",
        [{"dynamoDB": {"roleArn": ROLE_ARN, "tableName": table, "hashKeyField": "device", "hashKeyValue": "${clientid()}"}}],
    )
    return table, top


def test_dynamodb_v1_writes_the_payload_column_by_default(aws, rules, devices):
    table, top = dynamodb_v1_by_client(aws, rules, "temperature", "ddb1d")
    device = devices.connect()
    device.publish(f"{top}/x", {"temperature": 18.25, "ignored": 1})
    items = wait_until(lambda: aws.items(table), what=f"an item in {table}")
    assert items == [{"device": {"S": device.client_id}, "payload": {"M": {"temperature": {"N": "18.25"}}}}]


def test_dynamodb_v1_stores_a_binary_payload_as_binary(aws, rules, devices):
    table, top = dynamodb_v1_by_client(aws, rules, "*", "ddb1b")
    device = devices.connect()
    raw = bytes([0x00, 0xFF, 0x10, 0x80])
    device.publish(f"{top}/x", raw)
    items = wait_until(lambda: aws.items(table), what=f"an item in {table}")
    assert len(items) == 1 and items[0]["device"] == {"S": device.client_id}
    stored = items[0]["payload"]["B"]
    assert (stored if isinstance(stored, bytes) else base64.b64decode(stored)) == raw


# ======================================================================================
# S3
# ======================================================================================


def test_s3_object_key_from_templates(aws, rules, devices):
    bucket = aws.bucket()
    top = root("s3")
    rules.create(f"SELECT * FROM '{top}/+/s3'", [s3_action(bucket, "${topic(2)}/${clientid()}/${deviceId}.json")])
    device = devices.connect()
    document = {"deviceId": "dev-7", "v": 1, "nested": {"a": [1, 2]}}
    device.publish(f"{top}/hall/s3", document)
    objects = wait_until(lambda: aws.objects(bucket), what=f"an object in {bucket}")
    assert list(objects) == [f"hall/{device.client_id}/dev-7.json"]
    assert json.loads(objects[f"hall/{device.client_id}/dev-7.json"]) == document


def test_s3_binary_payload_passes_through_unchanged(aws, rules, devices):
    bucket = aws.bucket()
    top = root("s3bin")
    rules.create(f"SELECT * FROM '{top}/bin'", [s3_action(bucket, "blob")])
    device = devices.connect()
    raw = b"\x00\x01binary\xff\xfe not json"
    device.publish(f"{top}/bin", raw)
    objects = wait_until(lambda: aws.objects(bucket), what=f"an object in {bucket}")
    assert objects == {"blob": raw}


# ======================================================================================
# SQS, SNS
# ======================================================================================


def test_sqs_sends_the_rule_output(aws, rules, devices):
    queue = aws.queue()
    top = root("sqs")
    rules.create(f"SELECT * FROM '{top}/+'", [sqs_action(queue)])
    device = devices.connect()
    document = {"id": 1, "text": "héllo", "list": [True, None]}
    device.publish(f"{top}/a", document)
    assert bodies_json(aws.receive(queue, 1)) == [document]


def test_sqs_use_base64_encodes_the_message(aws, rules, devices):
    queue = aws.queue()
    top = root("sqs64")
    rules.create(f"SELECT * FROM '{top}/+'", [sqs_action(queue, use_base64=True)])
    device = devices.connect()
    document = {"id": 2, "value": 3.5}
    device.publish(f"{top}/a", document)
    (body,) = aws.receive(queue, 1)
    assert json.loads(base64.b64decode(body, validate=True)) == document


def sns_topic_with_queue(aws) -> tuple[str, str]:
    topic_arn = aws.sns.create_topic(Name=unique("rules-topic"))["TopicArn"]
    queue = aws.queue("sns-sub")
    aws.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=aws.queue_arn(queue))
    return topic_arn, queue


def test_sns_publishes_raw_messages(aws, rules, devices):
    topic_arn, queue = sns_topic_with_queue(aws)
    top = root("sns")
    rules.create(f"SELECT * FROM '{top}/+'", [{"sns": {"roleArn": ROLE_ARN, "targetArn": topic_arn}}])  # RAW by default
    device = devices.connect()
    document = {"alert": "door open", "zone": 4}
    device.publish(f"{top}/a", document)
    (body,) = aws.receive(queue, 1)
    envelope = json.loads(body)  # SNS's notification envelope around the message
    assert (envelope["Type"], envelope["TopicArn"]) == ("Notification", topic_arn)
    assert json.loads(envelope["Message"]) == document


def test_sns_json_message_format_selects_the_protocol_message(aws, rules, devices):
    topic_arn, queue = sns_topic_with_queue(aws)
    top = root("snsjson")
    rules.create(
        f"SELECT * FROM '{top}/+'",
        [{"sns": {"roleArn": ROLE_ARN, "targetArn": topic_arn, "messageFormat": "JSON"}}],
    )
    device = devices.connect()
    device.publish(f"{top}/a", {"default": "for everyone", "sqs": "for queues"})
    (body,) = aws.receive(queue, 1)
    assert json.loads(body)["Message"] == "for queues"


# ======================================================================================
# Kinesis, Firehose
# ======================================================================================


def test_kinesis_put_record_with_partition_key_template(aws, rules, devices):
    stream = unique("rules-stream")
    aws.kinesis.create_stream(StreamName=stream, ShardCount=1)
    wait_until(lambda: aws.kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamStatus"] == "ACTIVE")
    top = root("kin")
    rules.create(
        f"SELECT * FROM '{top}/+/k'",
        [{"kinesis": {"roleArn": ROLE_ARN, "streamName": stream, "partitionKey": "${topic(2)}-${seq}"}}],
    )
    device = devices.connect()
    document = {"seq": 9, "value": 1.5}
    device.publish(f"{top}/pump-3/k", document)
    shard = aws.kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]["ShardId"]

    def records():
        iterator = aws.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        return aws.kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]

    got = wait_until(records, what=f"a record in {stream}")
    time.sleep(1.0)
    got = records()
    assert [(r["PartitionKey"], json.loads(r["Data"])) for r in got] == [("pump-3-9", document)]


def firehose_into_bucket(aws, name: str) -> tuple[str, str]:
    """A new bucket and a delivery stream writing into it."""
    bucket = aws.bucket()
    stream = unique(name)
    aws.firehose.create_delivery_stream(
        DeliveryStreamName=stream,
        ExtendedS3DestinationConfiguration={"RoleARN": ROLE_ARN, "BucketARN": f"arn:aws:s3:::{bucket}"},
    )
    return bucket, stream


def moto_firehose_writes_s3(aws) -> bool:
    """moto delivers Firehose records to S3 synchronously (checked with a probe stream)."""
    bucket, stream = firehose_into_bucket(aws, "probe-stream")
    aws.firehose.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": b"probe"}])
    return list(aws.objects(bucket).values()) == [b"probe"]


def test_firehose_records_with_separator_reach_the_s3_destination(aws, rules, devices):
    if not moto_firehose_writes_s3(aws):
        pytest.skip("SKIPPED: this moto does not write Firehose records to the S3 destination, so the delivered content cannot be checked")
    bucket, stream = firehose_into_bucket(aws, "rules-firehose")
    top = root("fh")
    rules.create(
        f"SELECT * FROM '{top}/+'",
        [{"firehose": {"roleArn": ROLE_ARN, "deliveryStreamName": stream, "separator": "\n"}}],
    )
    device = devices.connect()
    documents = [{"n": 1, "v": "a"}, {"n": 2, "v": "b"}]
    for document in documents:
        device.publish(f"{top}/a", document)
    wait_until(lambda: len(aws.objects(bucket)) >= 2, what=f"two objects in {bucket}")
    time.sleep(1.0)
    bodies = list(aws.objects(bucket).values())
    assert len(bodies) == 2, bodies  # one PutRecordBatch (one object in moto) per message
    for body in bodies:
        assert body.endswith(b"\n") and body.count(b"\n") == 1, f"record not terminated by exactly one separator: {body!r}"
    assert sorted((json.loads(b) for b in bodies), key=lambda d: d["n"]) == documents


def test_firehose_batch_mode_sends_one_record_per_array_element(aws, rules, devices):
    if not moto_firehose_writes_s3(aws):
        pytest.skip("SKIPPED: this moto does not write Firehose records to the S3 destination, so the delivered content cannot be checked")
    bucket, stream = firehose_into_bucket(aws, "rules-firehose-batch")
    top = root("fhb")
    rules.create(
        f"SELECT VALUE items FROM '{top}/+'",
        [{"firehose": {"roleArn": ROLE_ARN, "deliveryStreamName": stream, "separator": "\n", "batchMode": True}}],
    )
    device = devices.connect()
    items = [{"i": 1}, {"i": 2}, {"i": 3}]
    device.publish(f"{top}/a", {"items": items})
    objects = wait_until(lambda: aws.objects(bucket), what=f"an object in {bucket}")
    time.sleep(1.0)
    objects = aws.objects(bucket)
    assert len(objects) == 1, objects  # one PutRecordBatch with three records
    (body,) = objects.values()
    assert body.endswith(b"\n") and body.count(b"\n") == 3, body
    assert [json.loads(line) for line in body.splitlines()] == items


# ======================================================================================
# CloudWatch Logs, metrics, alarms
# ======================================================================================


def log_events(aws, group: str, stream: str = LOG_STREAM) -> list[dict]:
    try:
        return aws.logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    except ClientError as err:
        if err.response["Error"]["Code"] == "ResourceNotFoundException":
            return []
        raise


def test_cloudwatch_logs_creates_the_stream_and_logs_the_output(aws, rules, devices):
    group = f"/ferrocore/rules/{unique('logs')}"
    aws.logs.create_log_group(logGroupName=group)
    top = root("logs")
    rules.create(f"SELECT * FROM '{top}/+'", [logs_action(group)])
    device = devices.connect()
    document = {"event": "boot", "uptime": 3}
    before = int(time.time() * 1000)
    device.publish(f"{top}/a", document)
    wait_until(lambda: log_events(aws, group), what=f"a log event in {group}/{LOG_STREAM}")
    time.sleep(1.0)
    after = int(time.time() * 1000)
    streams = [s["logStreamName"] for s in aws.logs.describe_log_streams(logGroupName=group)["logStreams"]]
    assert streams == [LOG_STREAM]
    events = log_events(aws, group)
    assert len(events) == 1, events
    assert json.loads(events[0]["message"]) == document
    assert before - 1000 <= events[0]["timestamp"] <= after + 1000


def test_cloudwatch_logs_batch_mode_writes_one_event_per_element(aws, rules, devices):
    group = f"/ferrocore/rules/{unique('logsbatch')}"
    aws.logs.create_log_group(logGroupName=group)
    top = root("logsb")
    rules.create(f"SELECT VALUE events FROM '{top}/+'", [logs_action(group, batch=True)])
    device = devices.connect()
    now = int(time.time() * 1000)
    events = [{"timestamp": now - 2000, "message": "Test message 1"}, {"timestamp": now - 1000, "message": "Test message 2"}]
    device.publish(f"{top}/a", {"events": events})
    wait_until(lambda: len(log_events(aws, group)) >= 2, what=f"two log events in {group}")
    time.sleep(1.0)
    got = [(e["timestamp"], e["message"]) for e in log_events(aws, group)]
    assert got == [(now - 2000, "Test message 1"), (now - 1000, "Test message 2")]


def test_cloudwatch_metric_from_templates(aws, rules, devices):
    namespace = f"Ferrocore/{unique('ns')}"
    top = root("metric")
    rules.create(
        f"SELECT * FROM '{top}/+'",
        [{"cloudwatchMetric": {
            "roleArn": ROLE_ARN, "metricNamespace": namespace, "metricName": "${name}",
            "metricValue": "${value}", "metricUnit": "Count", "metricTimestamp": "${ts}",
        }}],
    )
    device = devices.connect()
    ts = int(time.time()) - 120  # seconds, as AWS's metricTimestamp
    device.publish(f"{top}/a", {"name": "temperature", "value": 22.5, "ts": ts})
    listed = wait_until(lambda: aws.cloudwatch.list_metrics(Namespace=namespace)["Metrics"], what=f"a metric in {namespace}")
    assert [(m["Namespace"], m["MetricName"], m.get("Dimensions", [])) for m in listed] == [(namespace, "temperature", [])]
    def at(seconds):
        return datetime.fromtimestamp(seconds, tz=timezone.utc)

    # the datapoint carries the message's timestamp: a window around it (and not around now) finds it
    stats = aws.cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName="temperature", StartTime=at(ts - 30), EndTime=at(ts + 30),
        Period=60, Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    assert [(d["Sum"], d["SampleCount"], d["Unit"]) for d in stats] == [(22.5, 1.0, "Count")]


def test_cloudwatch_alarm_state_from_templates(aws, rules, devices):
    alarm = unique("rules-alarm")
    aws.cloudwatch.put_metric_alarm(
        AlarmName=alarm, MetricName="m", Namespace="Ferrocore/Alarm", Statistic="Average", Period=60,
        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
    )
    top = root("alarm")
    rules.create(
        f"SELECT * FROM '{top}/+'",
        [{"cloudwatchAlarm": {"roleArn": ROLE_ARN, "alarmName": alarm, "stateReason": "${reason}", "stateValue": "${state}"}}],
    )
    device = devices.connect()
    device.publish(f"{top}/a", {"state": "ALARM", "reason": "too hot"})

    def state():
        described = aws.cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]
        return described if described["StateValue"] == "ALARM" else None

    described = wait_until(state, what=f"{alarm} in ALARM")
    assert described["StateReason"] == "too hot"


# ======================================================================================
# Lambda (the stub answers the Invoke API)
# ======================================================================================


def test_lambda_is_invoked_asynchronously_with_the_rule_output(rules, devices, rules_server):
    stub = rules_server.lambda_stub
    arn = lambda_arn(unique("fn"))
    path = lambda_invocation_path(arn)
    top = root("lambda")
    rules.create(f"SELECT *, topic() AS topic FROM '{top}/+'", [lambda_action(arn)])
    device = devices.connect()
    device.publish(f"{top}/a", {"reading": 41})
    stub.wait_for(1, path)
    time.sleep(1.0)
    (request,) = stub.matching(path)
    assert request.method == "POST"
    assert request.headers.get("x-amz-invocation-type") == "Event"
    assert request.json() == {"reading": 41, "topic": f"{top}/a"}


def test_lambda_failure_reaches_the_error_action(aws, rules, devices, rules_server):
    stub = rules_server.lambda_stub
    arn = lambda_arn(unique("missing-fn"))
    path = lambda_invocation_path(arn)
    stub.respond(
        path, 404,
        body=json.dumps({"Type": "User", "Message": f"Function not found: {arn}"}).encode(),
        headers={"x-amzn-ErrorType": "ResourceNotFoundException", "Content-Type": "application/json"},
    )
    errors = aws.queue("errors")
    top = root("lambdafail")
    rule = rules.create(f"SELECT * FROM '{top}/+'", [lambda_action(arn)], error_action=sqs_action(errors))
    device = devices.connect()
    raw = b'{"reading": 99}'
    device.publish(f"{top}/a", raw)
    (body,) = aws.receive(errors, 1)
    report = check_error_payload(body, rule, f"{top}/a", device.client_id, raw)
    assert [(f["failedAction"], f["failedResource"]) for f in report["failures"]] == [("LambdaAction", arn)]
    assert len(stub.matching(path)) == 1, "a 404 (ResourceNotFoundException) is not retried"


# ======================================================================================
# HTTP action and topic rule destinations
# ======================================================================================


def confirmation_request(stub, path: str):
    """The destination confirmation POST AWS sends to a new HTTP destination."""
    requests = stub.wait_for(1, path)
    confirmations = [r for r in requests if r.headers.get("x-amz-rules-engine-message-type") == "DestinationConfirmation"]
    assert confirmations, f"no DestinationConfirmation request among {[(r.method, r.path, r.headers) for r in requests]}"
    return confirmations[0]


def action_requests(stub, path: str):
    return [r for r in stub.matching(path) if "x-amz-rules-engine-message-type" not in r.headers]


def destination_for(iot, url: str) -> dict:
    for summary in iot.list_topic_rule_destinations()["destinationSummaries"]:
        if summary.get("httpUrlSummary", {}).get("confirmationUrl") == url:
            return summary
    pytest.fail(f"no topic rule destination for {url}: {iot.list_topic_rule_destinations()['destinationSummaries']}")


def check_confirmation(iot, rules_server, stub, url: str) -> str:
    """Checks the confirmation request and the IN_PROGRESS destination; returns the token."""
    path = urlparse(url).path
    request = confirmation_request(stub, path)
    assert request.method == "POST"
    body = request.json()
    assert set(body) == {"arn", "confirmationToken", "enableUrl", "messageType"}, body
    assert body["messageType"] == "DestinationConfirmation"
    summary = destination_for(iot, url)
    assert summary["status"] == "IN_PROGRESS"
    assert body["arn"] == summary["arn"]
    assert body["arn"].startswith("arn:aws:iot:us-east-1:000000000000:ruledestination/http/")
    assert request.headers.get("x-amz-rules-engine-destination-arn") == summary["arn"]
    token = body["confirmationToken"]
    assert token and body["enableUrl"].endswith(f"/confirmdestination/{token}")
    return token


def confirmed_http_rule(rules, iot, rules_server, stub, sql: str, path: str, headers=None, error_action=None) -> tuple[str, str]:
    url = f"{stub.url}{path}"
    rule = rules.create(sql, [http_action(url, headers)], error_action=error_action)
    token = check_confirmation(iot, rules_server, stub, url)
    iot.confirm_topic_rule_destination(confirmationToken=token)
    assert iot.get_topic_rule_destination(arn=destination_for(iot, url)["arn"])["topicRuleDestination"]["status"] == "ENABLED"
    time.sleep(RULE_SETTLE)
    return rule, url


def test_http_action_posts_to_a_confirmed_destination_with_headers(rules, rules_iot, rules_server, devices, capture):
    stub = capture()
    top = root("http")
    path = f"/hook/{unique('h')}"
    _, url = confirmed_http_rule(
        rules, rules_iot, rules_server, stub, f"SELECT * FROM '{top}/+'", path,
        headers=[{"key": "x-device", "value": "${deviceId}"}, {"key": "x-static", "value": "abc"}],
    )
    device = devices.connect()
    document = {"deviceId": "dev-9", "value": 7}
    device.publish(f"{top}/a", document)
    wait_until(lambda: action_requests(stub, path), what=f"the HTTP action's POST to {url}")
    time.sleep(1.0)
    (request,) = action_requests(stub, path)
    assert (request.method, request.path) == ("POST", path)
    assert request.headers.get("x-device") == "dev-9"
    assert request.headers.get("x-static") == "abc"
    assert request.headers.get("content-type") == "application/json"
    assert request.json() == document


def test_http_destination_confirmed_by_get_on_the_enable_url(rules, rules_iot, rules_server, devices, capture):
    stub = capture()
    top = root("httpget")
    path = f"/hook/{unique('g')}"
    url = f"{stub.url}{path}"
    rules.create(f"SELECT * FROM '{top}/+'", [http_action(url)])
    check_confirmation(rules_iot, rules_server, stub, url)
    enable_url = confirmation_request(stub, path).json()["enableUrl"]
    with urllib.request.urlopen(enable_url, timeout=10) as response:
        assert response.status == 200
    arn = destination_for(rules_iot, url)["arn"]
    assert rules_iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["status"] == "ENABLED"
    time.sleep(RULE_SETTLE)
    device = devices.connect()
    device.publish(f"{top}/a", {"x": 1})
    wait_until(lambda: action_requests(stub, path), what=f"the HTTP action's POST to {url}")
    assert [r.json() for r in action_requests(stub, path)] == [{"x": 1}]


def test_http_action_to_an_unconfirmed_destination_goes_to_the_error_action(aws, rules, rules_iot, rules_server, devices, capture):
    stub = capture()
    errors = aws.queue("errors")
    top = root("httpunconf")
    path = f"/hook/{unique('u')}"
    url = f"{stub.url}{path}"
    rule = rules.create(f"SELECT * FROM '{top}/+'", [http_action(url)], error_action=sqs_action(errors))
    check_confirmation(rules_iot, rules_server, stub, url)  # sent, never confirmed
    device = devices.connect()
    raw = b'{"unconfirmed": true}'
    device.publish(f"{top}/a", raw)
    (body,) = aws.receive(errors, 1)
    report = check_error_payload(body, rule, f"{top}/a", device.client_id, raw)
    assert [(f["failedAction"], f["failedResource"]) for f in report["failures"]] == [("HttpAction", url)]
    assert action_requests(stub, path) == [], "nothing may be POSTed to an unconfirmed destination"


def test_http_action_retries_5xx_and_delivers_once(aws, rules, rules_iot, rules_server, devices, capture):
    stub = capture()
    errors = aws.queue("errors")
    top = root("httpretry")
    path = f"/hook/{unique('r')}"
    rule, url = confirmed_http_rule(
        rules, rules_iot, rules_server, stub, f"SELECT * FROM '{top}/+'", path, error_action=sqs_action(errors)
    )
    stub.respond(path, 500, 500)  # then the default 200
    device = devices.connect()
    device.publish(f"{top}/a", {"try": "me"})
    wait_until(lambda: len(action_requests(stub, path)) >= 3, what="three POSTs (two 500s, then 200)")
    aws.nothing_in(errors)
    requests = action_requests(stub, path)
    assert len(requests) == 3, [r.path for r in requests]
    assert all(r.json() == {"try": "me"} for r in requests)
    samples = metrics_snapshot(rules_server)
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="retried") == 2
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="succeeded") == 1
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="failed") == 0
    assert metric_sum(samples, ERROR_ACTIONS, rule=rule) == 0


def test_http_action_gives_up_after_max_attempts(aws, rules, rules_iot, rules_server, devices, capture):
    stub = capture()
    errors = aws.queue("errors")
    top = root("httpfail")
    path = f"/hook/{unique('f')}"
    rule, url = confirmed_http_rule(
        rules, rules_iot, rules_server, stub, f"SELECT * FROM '{top}/+'", path, error_action=sqs_action(errors)
    )
    stub.respond(path, *([503] * (MAX_ATTEMPTS + 2)))
    device = devices.connect()
    raw = b'{"always": "503"}'
    device.publish(f"{top}/a", raw)
    (body,) = aws.receive(errors, 1)
    report = check_error_payload(body, rule, f"{top}/a", device.client_id, raw)
    assert [(f["failedAction"], f["failedResource"]) for f in report["failures"]] == [("HttpAction", url)]
    assert len(action_requests(stub, path)) == MAX_ATTEMPTS
    samples = metrics_snapshot(rules_server)
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="retried") == MAX_ATTEMPTS - 1
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="failed") == 1
    assert metric_sum(samples, ERROR_ACTIONS, rule=rule) == 1


def test_http_action_does_not_retry_4xx(aws, rules, rules_iot, rules_server, devices, capture):
    stub = capture()
    errors = aws.queue("errors")
    top = root("http4xx")
    path = f"/hook/{unique('c')}"
    rule, url = confirmed_http_rule(
        rules, rules_iot, rules_server, stub, f"SELECT * FROM '{top}/+'", path, error_action=sqs_action(errors)
    )
    stub.respond(path, 400, 400, 400)
    device = devices.connect()
    device.publish(f"{top}/a", {"bad": 1})
    (body,) = aws.receive(errors, 1)
    assert json.loads(body)["failures"][0]["failedAction"] == "HttpAction"
    assert len(action_requests(stub, path)) == 1, "a 400 answer is final"


# ======================================================================================
# SQL
# ======================================================================================


def test_where_filters_messages_with_undefined_semantics(aws, rules, devices, rules_server):
    queue = aws.queue()
    top = root("where")
    rule = rules.create(f"SELECT seq, value FROM '{top}/+/t' WHERE value > 40 OR value < 0", [sqs_action(queue)])
    device = devices.connect()
    messages = [
        {"seq": 1, "value": 22.5},
        {"seq": 2, "value": 45},
        {"seq": 3, "value": -3},
        {"seq": 4, "value": 40},
        {"seq": 5},  # value missing: Undefined, WHERE is false
        {"seq": 6, "value": 41},
        {"seq": 7, "value": "hot"},  # not numeric: Undefined
    ]
    for message in messages:
        device.publish(f"{top}/{device.thing}/t", message)

    def evaluated():
        samples = metrics_snapshot(rules_server)
        return metric_sum(samples, MESSAGES, rule=rule, outcome="matched") + metric_sum(samples, MESSAGES, rule=rule, outcome="filtered") >= 7

    wait_until(evaluated, what="all 7 messages evaluated")
    samples = metrics_snapshot(rules_server)
    assert metric_sum(samples, MESSAGES, rule=rule, outcome="matched") == 3
    assert metric_sum(samples, MESSAGES, rule=rule, outcome="filtered") == 4
    got = sorted(bodies_json(aws.receive(queue, 3)), key=lambda d: d["seq"])
    assert got == [{"seq": 2, "value": 45}, {"seq": 3, "value": -3}, {"seq": 6, "value": 41}]


def test_select_fields_and_aliases_make_exactly_those_columns(aws, rules, devices):
    table = aws.table("device", "S")
    top = root("select")
    rules.create(
        f"SELECT device_id AS device, value AS temperature, topic(2) AS room, clientid() AS client, meta.fw AS firmware "
        f"FROM '{top}/+/t'",
        [dynamodbv2_action(table)],
    )
    device = devices.connect()
    device.publish(f"{top}/kitchen/t", {"device_id": "d-1", "value": 22.5, "humidity": 40, "meta": {"fw": "1.0.3", "serial": "x"}})
    items = wait_until(lambda: aws.items(table), what=f"an item in {table}")
    assert items == [{
        "device": {"S": "d-1"},
        "temperature": {"N": "22.5"},
        "room": {"S": "kitchen"},
        "client": {"S": device.client_id},
        "firmware": {"S": "1.0.3"},
    }]


def test_sql_functions_and_dotted_aliases(aws, rules, devices):
    queue = aws.queue()
    top = root("funcs")
    rules.create(
        "SELECT upper(name) AS name, concat(a, '-', b) AS ab, cast(n AS String) AS ns, encode(*, 'base64') AS raw, "
        f"timestamp() AS ts, value AS reading.celsius, topic() AS topic FROM '{top}/+'",
        [sqs_action(queue)],
    )
    device = devices.connect()
    raw = b'{"name": "abc", "a": "x", "b": "y", "n": 7, "value": 22.5}'
    before = int(time.time() * 1000)
    device.publish(f"{top}/f", raw)
    (body,) = aws.receive(queue, 1)
    after = int(time.time() * 1000)
    got = json.loads(body)
    ts = got.pop("ts")
    assert isinstance(ts, int) and before - 1000 <= ts <= after, f"timestamp() {ts} is not the epoch ms of the message"
    assert got == {
        "name": "ABC",
        "ab": "x-y",
        "ns": "7",
        "raw": base64.b64encode(raw).decode(),
        "reading": {"celsius": 22.5},
        "topic": f"{top}/f",
    }


def test_select_value_and_nested_queries(aws, rules, devices):
    values_queue, nested_queue = aws.queue("value"), aws.queue("nested")
    top = root("nestedq")
    rules.create(f"SELECT VALUE readings FROM '{top}/+'", [sqs_action(values_queue)])
    rules.create(f"SELECT device, (SELECT VALUE v FROM readings WHERE ok = true) AS good FROM '{top}/+'", [sqs_action(nested_queue)])
    device = devices.connect()
    readings = [{"v": 1, "ok": True}, {"v": 2, "ok": False}, {"v": 3, "ok": True}]
    device.publish(f"{top}/a", {"device": "d", "readings": readings})
    assert bodies_json(aws.receive(values_queue, 1)) == [readings]
    assert bodies_json(aws.receive(nested_queue, 1)) == [{"device": "d", "good": [1, 3]}]


# ======================================================================================
# republish, Basic Ingest, shadows, lifecycle events
# ======================================================================================


def test_republish_to_a_topic_from_a_template(rules, devices):
    top = root("rp")
    rules.create(f"SELECT *, topic(3) AS source FROM '{top}/in/+'", [republish_action(f"{top}/out/${{topic(3)}}", qos=1)])
    subscriber = devices.connect()
    subscriber.subscribe_ok(f"{top}/out/#")
    publisher = devices.connect()
    publisher.publish(f"{top}/in/valve-2", {"open": True})
    out = f"{top}/out/valve-2"
    assert json.loads(subscriber.next(out)) == {"open": True, "source": "valve-2"}
    assert subscriber.qos[out] == [1]
    subscriber.nothing_on(out, already=1, within=1.0)
    assert set(subscriber.messages) == {out}, f"messages on other topics: {dict(subscriber.messages)}"


def test_republish_to_a_reserved_shadow_topic_updates_the_shadow(rules, devices, rules_data):
    top = root("rpshadow")
    rules.create(f"SELECT * FROM '{top}/+/state'", [republish_action("$$aws/things/${topic(2)}/shadow/update", qos=1)])
    device = devices.connect()
    device.publish(f"{top}/{device.thing}/state", {"state": {"reported": {"temperature": 21}}})

    def shadow():
        try:
            return json.loads(rules_data.get_thing_shadow(thingName=device.thing)["payload"].read())
        except ClientError as err:
            if err.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise

    document = wait_until(shadow, what=f"the classic shadow of {device.thing}")
    assert document["state"] == {"reported": {"temperature": 21}}
    assert document["version"] == 1


def test_a_rule_republishing_into_its_own_filter_stops_after_eight_hops(rules, devices, rules_server):
    top = root("loop")
    rule = rules.create(f"SELECT * FROM '{top}/#'", [republish_action(f"{top}/again")])
    subscriber = devices.connect()
    subscriber.subscribe_ok(f"{top}/#")
    devices.connect().publish(f"{top}/start", {"n": 1})
    subscriber.next(f"{top}/again", index=7)  # the eighth republished copy
    subscriber.nothing_on(f"{top}/again", already=8, within=1.5)
    assert subscriber.count(f"{top}/start") == 1
    samples = metrics_snapshot(rules_server)
    assert metric_sum(samples, "ferrocore_rules_actions_total", rule=rule, action="republish", outcome="failed") == 1


def test_basic_ingest_reaches_only_the_named_rule(aws, rules, devices):
    ingest_queue, other_queue = aws.queue("ingest"), aws.queue("other")
    top = root("bi")
    rule = rules.create(f"SELECT *, topic() AS t, topic(1) AS first FROM '{top}/#'", [sqs_action(ingest_queue)])
    rules.create(f"SELECT * FROM '{top}/#'", [sqs_action(other_queue)])
    watcher = devices.connect()
    watcher.subscribe_ok(f"{top}/#")
    device = devices.connect()
    assert device.publish(f"$aws/rules/{rule}/{top}/a/b", {"level": 3}) == 0  # PUBACK: handed to the rules engine
    assert bodies_json(aws.receive(ingest_queue, 1)) == [{"level": 3, "t": f"{top}/a/b", "first": top}]
    aws.nothing_in(other_queue, within=1.0)
    assert dict(watcher.messages) == {}, "Basic Ingest messages do not go through the broker"


def test_disabled_rule_runs_only_while_enabled(aws, rules, rules_iot, devices, rules_server):
    queue = aws.queue()
    top = root("disabled")
    rule = rules.create(f"SELECT seq FROM '{top}/+'", [sqs_action(queue)], disabled=True)
    assert rules_iot.get_topic_rule(ruleName=rule)["rule"]["ruleDisabled"] is True
    device = devices.connect()
    device.publish(f"{top}/a", {"seq": 1})
    aws.nothing_in(queue, within=2.0)
    assert current(rules_server, MESSAGES, rule=rule) == 0

    rules_iot.enable_topic_rule(ruleName=rule)
    assert rules_iot.get_topic_rule(ruleName=rule)["rule"]["ruleDisabled"] is False
    time.sleep(RULE_SETTLE)
    device.publish(f"{top}/a", {"seq": 2})
    assert bodies_json(aws.receive(queue, 1)) == [{"seq": 2}]

    rules_iot.disable_topic_rule(ruleName=rule)
    time.sleep(RULE_SETTLE)
    device.publish(f"{top}/a", {"seq": 3})
    aws.nothing_in(queue, within=2.0)


def test_replaced_rule_applies_the_new_sql_and_a_deleted_rule_stops(aws, rules, rules_iot, devices):
    first, second = aws.queue("first"), aws.queue("second")
    top = root("replace")
    rule = rules.create(f"SELECT seq FROM '{top}/+'", [sqs_action(first)])
    device = devices.connect()
    device.publish(f"{top}/a", {"seq": 1, "keep": False})
    assert bodies_json(aws.receive(first, 1)) == [{"seq": 1}]

    rules_iot.replace_topic_rule(ruleName=rule, topicRulePayload={
        "sql": f"SELECT seq, keep FROM '{top}/+' WHERE keep = true", "actions": [sqs_action(second)],
        "awsIotSqlVersion": "2016-03-23",
    })
    time.sleep(RULE_SETTLE)
    device.publish(f"{top}/a", {"seq": 2, "keep": False})
    device.publish(f"{top}/a", {"seq": 3, "keep": True})
    assert bodies_json(aws.receive(second, 1)) == [{"seq": 3, "keep": True}]
    aws.nothing_in(first, within=0.5)

    rules_iot.delete_topic_rule(ruleName=rule)
    time.sleep(RULE_SETTLE)
    device.publish(f"{top}/a", {"seq": 4, "keep": True})
    aws.nothing_in(second, within=2.0)


def test_every_matching_rule_gets_the_message(aws, rules, devices):
    queues = [aws.queue("multi") for _ in range(3)]
    top = root("multi")
    rules.create(f"SELECT 'exact' AS r FROM '{top}/a/b'", [sqs_action(queues[0])])
    rules.create(f"SELECT 'plus' AS r FROM '{top}/+/b'", [sqs_action(queues[1])])
    rules.create(f"SELECT 'hash' AS r FROM '{top}/#'", [sqs_action(queues[2])])
    device = devices.connect()
    device.publish(f"{top}/a/b", {"x": 1})
    assert [bodies_json(aws.receive(q, 1)) for q in queues] == [[{"r": "exact"}], [{"r": "plus"}], [{"r": "hash"}]]


def test_rule_on_shadow_update_accepted(aws, rules, rules_iot, rules_data):
    queue = aws.queue()
    thing = unique("shadow-thing")
    rules_iot.create_thing(thingName=thing)
    rules.create(
        "SELECT state.reported.temperature AS temperature, topic(3) AS thing, version "
        f"FROM '$aws/things/+/shadow/update/accepted' WHERE topic(3) = '{thing}'",
        [sqs_action(queue)],
    )
    rules_data.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"reported": {"temperature": 19}}}))
    assert bodies_json(aws.receive(queue, 1)) == [{"temperature": 19, "thing": thing, "version": 1}]


def test_rule_on_lifecycle_events(aws, rules, devices):
    queue = aws.queue()
    client_id = unique("lifecycle")
    rules.create(
        f"SELECT clientId, eventType FROM '$aws/events/presence/connected/+' WHERE clientId = '{client_id}'",
        [sqs_action(queue)],
    )
    devices.connect(client_id=client_id)
    assert bodies_json(aws.receive(queue, 1)) == [{"clientId": client_id, "eventType": "connected"}]


# ======================================================================================
# error action
# ======================================================================================


def test_error_action_payload_for_a_dynamodbv2_put_into_a_missing_table(aws, rules, devices, rules_server):
    errors = aws.queue("errors")
    table = unique("no-such-table")
    top = root("errddb")
    rule = rules.create(f"SELECT * FROM '{top}/+'", [dynamodbv2_action(table)], error_action=sqs_action(errors))
    device = devices.connect()
    raw = b'{"device_id": "d-err",  "ts": 5}'  # the exact bytes come back, spacing included
    device.publish(f"{top}/x", raw)
    (body,) = aws.receive(errors, 1)
    report = check_error_payload(body, rule, f"{top}/x", device.client_id, raw)
    assert len(report["failures"]) == 1, report
    failure = report["failures"][0]
    assert (failure["failedAction"], failure["failedResource"]) == ("DynamoActionV2", table)
    assert "ResourceNotFoundException" in failure["errorMessage"], failure
    samples = metrics_snapshot(rules_server)
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="failed") == 1
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="retried") == 0, "a missing table is not worth retrying"
    assert metric_sum(samples, ERROR_ACTIONS, rule=rule) == 1


def test_error_action_to_cloudwatch_logs_for_a_missing_bucket(aws, rules, devices):
    group = f"/ferrocore/rules/errors/{unique('g')}"
    aws.logs.create_log_group(logGroupName=group)
    bucket = unique("no-such-bucket")
    top = root("errs3")
    rule = rules.create(f"SELECT * FROM '{top}/+'", [s3_action(bucket, "${topic(2)}")], error_action=logs_action(group))
    device = devices.connect()
    raw = b'{"s3": "fails"}'
    device.publish(f"{top}/k", raw)
    wait_until(lambda: log_events(aws, group), what=f"the error in {group}")
    time.sleep(1.0)
    events = log_events(aws, group)
    assert len(events) == 1, events
    report = check_error_payload(events[0]["message"], rule, f"{top}/k", device.client_id, raw)
    # AWS's own example: failedAction "S3Action", failedResource = the bucket name
    assert [(f["failedAction"], f["failedResource"]) for f in report["failures"]] == [("S3Action", bucket)]
    assert "NoSuchBucket" in report["failures"][0]["errorMessage"]


def test_error_action_gets_one_message_listing_every_failed_action(aws, rules, devices):
    errors, ok_queue = aws.queue("errors"), aws.queue("ok")
    table, bucket = unique("no-table"), unique("no-bucket")
    top = root("errmulti")
    rule = rules.create(
        f"SELECT * FROM '{top}/+'",
        [dynamodbv2_action(table), s3_action(bucket, "k"), sqs_action(ok_queue)],
        error_action=sqs_action(errors),
    )
    device = devices.connect()
    raw = b'{"device_id": "m"}'
    device.publish(f"{top}/x", raw)
    assert bodies_json(aws.receive(ok_queue, 1)) == [{"device_id": "m"}]
    (body,) = aws.receive(errors, 1)
    report = check_error_payload(body, rule, f"{top}/x", device.client_id, raw)
    assert sorted((f["failedAction"], f["failedResource"]) for f in report["failures"]) == [
        ("DynamoActionV2", table), ("S3Action", bucket),
    ]


# ======================================================================================
# metrics
# ======================================================================================


def test_rule_metrics_count_matches_filters_and_actions(aws, rules, devices, rules_server):
    queue = aws.queue()
    top = root("metrics")
    rule = rules.create(f"SELECT value FROM '{top}/+' WHERE value > 0", [sqs_action(queue)])
    device = devices.connect()
    device.publish(f"{top}/a", {"value": 1})
    device.publish(f"{top}/a", {"value": -1})
    device.publish(f"{top}/a", {"value": 2})
    assert sorted(d["value"] for d in bodies_json(aws.receive(queue, 2))) == [1, 2]

    def counted():
        samples = metrics_snapshot(rules_server)
        return metric_sum(samples, MESSAGES, rule=rule, outcome="filtered") == 1 and samples

    samples = wait_until(counted, what="the filtered message counted")
    assert metric_sum(samples, MESSAGES, rule=rule, outcome="matched") == 2
    assert metric_sum(samples, MESSAGES, rule=rule, outcome="evaluation_failed") == 0
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="succeeded") == 2
    assert metric_sum(samples, ACTIONS, rule=rule, outcome="failed") == 0
    assert metric_sum(samples, ACTIONS, rule=rule) == 2
