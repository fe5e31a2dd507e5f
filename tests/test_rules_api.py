"""Topic rules and topic rule destinations: the control plane of the rules engine, driven
through boto3 (and the AWS CLI) exactly as an AWS user would.

The expectations are AWS IoT Core's (shared/reference/aws-iot-core.md sections 0, 5.1, 5.5
and 6.2; crates/rules/NOTES.md sections g and j), not any emulator's. Every test creates
its own uniquely named rules and destinations, and removes them again.

HTTP destinations are confirmed against a small HTTP server the module runs on 127.0.0.1:
ferrocore POSTs the confirmation request there, as AWS does to the confirmationUrl.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

from cli_helpers import make_aws_cli, run_json
from security_helpers import unvalidated_client
from iot_helpers import (
    assert_recent,
    tag_dict,
    ACCOUNT_ID,
    REGION,
    aws_error,
    collect_pages,
    iot_arn,
    without_metadata,
)

ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/iot-rules-role"
DEFAULT_SQL_VERSION = "2015-10-08"
CONFIRMATION_WAIT = 10.0  # seconds to wait for a destination confirmation POST
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def rule_name(prefix: str = "rule") -> str:
    """A rule name valid for ^[a-zA-Z0-9_]+$, unique per call."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def unique_topic(prefix: str = "rules") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}/telemetry"


def rule_arn(name: str) -> str:
    return iot_arn("rule", name)


def republish(topic: str = "out/topic") -> dict:
    return {"republish": {"topic": topic, "roleArn": ROLE_ARN, "qos": 1}}


def simple_payload(topic: str | None = None, **extra) -> dict:
    payload = {
        "sql": f"SELECT * FROM '{topic or unique_topic()}'",
        "actions": [republish()],
    }
    payload.update(extra)
    return payload


def ignore_missing(call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except ClientError:
        pass


def all_destinations(iot) -> list[dict]:
    items, _ = collect_pages(iot.list_topic_rule_destinations, "destinationSummaries", maxResults=250)
    return items


def destinations_for(iot, confirmation_url: str) -> list[dict]:
    """Destination summaries whose confirmationUrl is exactly `confirmation_url`."""
    return [
        d
        for d in all_destinations(iot)
        if d.get("httpUrlSummary", {}).get("confirmationUrl") == confirmation_url
    ]


def rules_on(iot, topic: str, **kwargs) -> list[dict]:
    items, _ = collect_pages(iot.list_topic_rules, "rules", topic=topic, **kwargs)
    return items


# --------------------------------------------------------------------------------------
# a local endpoint that receives destination confirmation requests
# --------------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict  # lower-cased names
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that answers 200 to everything and records requests."""

    base: str
    requests: list = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def url(self, label: str = "dest") -> str:
        """A fresh confirmation URL no other test uses."""
        return f"{self.base}/{label}/{uuid.uuid4().hex}"

    def received(self, url: str) -> list[Received]:
        path = url[len(self.base):]
        with self.cond:
            return [r for r in self.requests if r.path.startswith(path)]

    def wait_for(self, url: str, count: int = 1, timeout: float = CONFIRMATION_WAIT) -> list[Received]:
        """The requests made to `url` (or below it), once there are at least `count`."""
        path = url[len(self.base):]
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [r for r in self.requests if r.path.startswith(path)]
                if len(hits) >= count:
                    return hits
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} request(s) to {url} within {timeout}s, got {len(hits)}; "
                        f"all requests seen: {[(r.method, r.path) for r in self.requests]}"
                    )
                self.cond.wait(remaining)


@pytest.fixture(scope="module")
def receiver():
    holder: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rec = holder["receiver"]
            with rec.cond:
                rec.requests.append(
                    Received(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                rec.cond.notify_all()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET = do_PUT = _record

        def log_message(self, *args):  # keep pytest output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    holder["receiver"] = Receiver(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, name="confirmation-receiver", daemon=True)
    thread.start()
    try:
        yield holder["receiver"]
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------------------
# fixtures that create and clean up rules and destinations
# --------------------------------------------------------------------------------------


@pytest.fixture
def raw_iot(server):
    """An iot client without client-side parameter validation, to send what boto3 would refuse."""
    return unvalidated_client(server)


@pytest.fixture
def rules(iot):
    """make(payload, name=None, **kwargs) -> name: CreateTopicRule, deleted after the test."""
    created: list[str] = []

    def make(payload: dict, name: str | None = None, **kwargs) -> str:
        name = name or rule_name()
        created.append(name)
        response = iot.create_topic_rule(ruleName=name, topicRulePayload=payload, **kwargs)
        assert without_metadata(response) == {}, response
        return name

    yield make
    for name in created:
        ignore_missing(iot.delete_topic_rule, ruleName=name)


@pytest.fixture
def destinations(iot):
    """Creates destinations and deletes them (and any made for tracked URLs) after the test."""

    class Destinations:
        def __init__(self):
            self.arns: list[str] = []
            self.urls: list[str] = []

        def http(self, url: str) -> dict:
            self.urls.append(url)
            created = iot.create_topic_rule_destination(
                destinationConfiguration={"httpUrlConfiguration": {"confirmationUrl": url}}
            )["topicRuleDestination"]
            self.arns.append(created["arn"])
            return created

        def vpc(self, **overrides) -> dict:
            config = {
                "subnetIds": [f"subnet-{uuid.uuid4().hex[:8]}", f"subnet-{uuid.uuid4().hex[:8]}"],
                "securityGroups": [f"sg-{uuid.uuid4().hex[:8]}"],
                "vpcId": f"vpc-{uuid.uuid4().hex[:8]}",
                "roleArn": ROLE_ARN,
            }
            config.update(overrides)
            created = iot.create_topic_rule_destination(
                destinationConfiguration={"vpcConfiguration": config}
            )["topicRuleDestination"]
            self.arns.append(created["arn"])
            return created

        def track(self, url: str) -> None:
            """Delete, after the test, whatever destination the server makes for `url`."""
            self.urls.append(url)

    tracker = Destinations()
    yield tracker
    arns = set(tracker.arns)
    if tracker.urls:
        wanted = set(tracker.urls)
        for d in all_destinations(iot):
            if d.get("httpUrlSummary", {}).get("confirmationUrl") in wanted:
                arns.add(d["arn"])
    for arn in arns:
        ignore_missing(iot.delete_topic_rule_destination, arn=arn)


def confirmation_of(receiver: Receiver, url: str, count: int = 1) -> dict:
    """The body of the `count`-th confirmation request sent to `url`."""
    hits = [r for r in receiver.wait_for(url, count) if r.method == "POST"]
    assert len(hits) >= count, [(r.method, r.path) for r in receiver.received(url)]
    return hits[count - 1].json()


# --------------------------------------------------------------------------------------
# CreateTopicRule / GetTopicRule
# --------------------------------------------------------------------------------------


def test_create_and_get_minimal_rule(iot, rules):
    topic = unique_topic()
    payload = {"sql": f"SELECT temperature FROM '{topic}' WHERE temperature > 40", "actions": [republish()]}
    name = rules(payload)

    got = iot.get_topic_rule(ruleName=name)
    assert got["ruleArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:rule/{name}"
    rule = got["rule"]
    assert rule["ruleName"] == name
    assert rule["sql"] == payload["sql"]
    assert rule["actions"] == payload["actions"]
    assert rule["ruleDisabled"] is False
    assert rule["awsIotSqlVersion"] == DEFAULT_SQL_VERSION, "2015-10-08 is AWS's default SQL version"
    assert "errorAction" not in rule
    assert_recent(rule["createdAt"])


def test_rich_payload_round_trip(iot, rules, receiver, destinations):
    """Every common action kind of §5.5, with its optional members, comes back exactly as sent."""
    endpoint = receiver.url("rich")
    destinations.track(endpoint)
    actions = [
        {
            "republish": {
                "topic": "$$aws/things/${topic(2)}/shadow/update",
                "roleArn": ROLE_ARN,
                "qos": 1,
                "headers": {
                    "payloadFormatIndicator": "UTF8_DATA",
                    "contentType": "rule/contentType",
                    "responseTopic": "replies/${clientid()}",
                    "correlationData": "cnVsZSBjb3JyZWxhdGlvbiBkYXRh",
                    "messageExpiry": "3600",
                    "userProperties": [
                        {"key": "ruleKey1", "value": "ruleValue1"},
                        {"key": "ruleKey2", "value": "${topic()}"},
                    ],
                },
            }
        },
        {"lambda": {"functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:process:live"}},
        {
            "dynamoDB": {
                "tableName": "Readings",
                "roleArn": ROLE_ARN,
                "operation": "INSERT",
                "hashKeyField": "device",
                "hashKeyValue": "${clientid()}",
                "hashKeyType": "STRING",
                "rangeKeyField": "ts",
                "rangeKeyValue": "${timestamp()}",
                "rangeKeyType": "NUMBER",
                "payloadField": "data",
            }
        },
        {"dynamoDBv2": {"roleArn": ROLE_ARN, "putItem": {"tableName": "ReadingsV2"}}},
        {
            "s3": {
                "roleArn": ROLE_ARN,
                "bucketName": "telemetry-archive",
                "key": "${topic()}/${timestamp()}",
                "cannedAcl": "bucket-owner-full-control",
            }
        },
        {
            "sns": {
                "targetArn": f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:alerts",
                "roleArn": ROLE_ARN,
                "messageFormat": "JSON",
            }
        },
        {
            "sqs": {
                "roleArn": ROLE_ARN,
                "queueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/readings",
                "useBase64": True,
            }
        },
        {"kinesis": {"roleArn": ROLE_ARN, "streamName": "readings", "partitionKey": "${topic()}"}},
        {
            "firehose": {
                "roleArn": ROLE_ARN,
                "deliveryStreamName": "readings-firehose",
                "separator": "\n",
                "batchMode": False,
            }
        },
        {
            "cloudwatchMetric": {
                "roleArn": ROLE_ARN,
                "metricNamespace": "Devices",
                "metricName": "Temperature",
                "metricValue": "${temperature}",
                "metricUnit": "None",
                "metricTimestamp": "${timestamp() / 1000}",
            }
        },
    ]
    # at most 10 actions per rule: the other kinds go into a second rule
    more_actions = [
        {"cloudwatchLogs": {"roleArn": ROLE_ARN, "logGroupName": "/iot/rules", "batchMode": False}},
        {
            "cloudwatchAlarm": {
                "roleArn": ROLE_ARN,
                "alarmName": "HighTemperature",
                "stateReason": "temperature above ${threshold}",
                "stateValue": "ALARM",
            }
        },
        {
            "http": {
                "url": endpoint + "/ingest/${topic()}",
                "confirmationUrl": endpoint,
                "headers": [
                    {"key": "x-device", "value": "${clientid()}"},
                    {"key": "content-type", "value": "application/json"},
                ],
                "auth": {
                    "sigv4": {"signingRegion": REGION, "serviceName": "execute-api", "roleArn": ROLE_ARN}
                },
                "enableBatching": True,
                "batchConfig": {
                    "maxBatchOpenMs": 50,
                    "maxBatchSize": 5,
                    "maxBatchSizeBytes": 4096,
                },
            }
        },
    ]
    error_action = {
        "s3": {
            "roleArn": ROLE_ARN,
            "bucketName": "rule-errors",
            "key": "${replace(topic(), '/', '-') + '-' + timestamp() + '-' + newuuid()}",
        }
    }
    topic = unique_topic()
    first = {
        "sql": f"SELECT *, topic() AS source FROM '{topic}' WHERE temperature > 40",
        "description": "every action kind, with optional members",
        "actions": actions,
        "ruleDisabled": True,
        "awsIotSqlVersion": "2016-03-23",
        "errorAction": error_action,
    }
    second = dict(
        first,
        actions=more_actions,
        description="the rest",
        errorAction={"lambda": {"functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:errors"}},
    )

    for payload in (first, second):
        name = rules(payload)
        got = iot.get_topic_rule(ruleName=name)
        rule = got["rule"]
        assert rule["ruleName"] == name
        assert rule["sql"] == payload["sql"]
        assert rule["description"] == payload["description"]
        assert rule["actions"] == payload["actions"], "actions must be returned exactly as configured"
        assert rule["errorAction"] == payload["errorAction"]
        assert rule["ruleDisabled"] is True
        assert rule["awsIotSqlVersion"] == "2016-03-23"
        assert got["ruleArn"] == rule_arn(name)


@pytest.mark.parametrize("version", ["2015-10-08", "2016-03-23", "beta"])
def test_sql_versions_are_accepted(iot, rules, version):
    name = rules(simple_payload(awsIotSqlVersion=version))
    assert iot.get_topic_rule(ruleName=name)["rule"]["awsIotSqlVersion"] == version


def test_unknown_sql_version_is_rejected(iot):
    name = rule_name()
    with aws_error("InvalidRequestException"):
        iot.create_topic_rule(ruleName=name, topicRulePayload=simple_payload(awsIotSqlVersion="2020-01-01"))
    with aws_error("UnauthorizedException"):
        iot.get_topic_rule(ruleName=name)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM",
        "SELEC * FROM 'a/b'",
        "SELECT * FROM 'a/b' WHERE",
        "SELECT * FROM a/b",
        "SELECT temperature FROM 'a/b' WHERE (temperature > 1",
        "SELECT * FROM 'a/b' ORDER BY temperature",
    ],
    ids=["no-topic", "misspelled-select", "empty-where", "unquoted-topic", "unbalanced", "order-by"],
)
def test_invalid_sql_is_a_sql_parse_exception(iot, sql):
    name = rule_name()
    with aws_error("SqlParseException", 400) as excinfo:
        iot.create_topic_rule(ruleName=name, topicRulePayload={"sql": sql, "actions": [republish()]})
    assert excinfo.value.response["Error"]["Message"]
    with aws_error("UnauthorizedException"):  # nothing was stored
        iot.get_topic_rule(ruleName=name)


@pytest.mark.parametrize(
    "bad_name",
    ["has-dash", "has space", "dot.name", "colon:name", "x" * 129, "\u00fcmlaut"],
    ids=["dash", "space", "dot", "colon", "129-chars", "non-ascii"],
)
def test_invalid_rule_names_are_rejected(iot, bad_name):
    with aws_error("InvalidRequestException"):
        iot.create_topic_rule(ruleName=bad_name, topicRulePayload=simple_payload())


def test_longest_and_shortest_valid_rule_names(iot, rules):
    long_name = rule_name("L").ljust(128, "x")
    assert rules(simple_payload(), name=long_name) == long_name
    assert iot.get_topic_rule(ruleName=long_name)["rule"]["ruleName"] == long_name
    short = "r"
    ignore_missing(iot.delete_topic_rule, ruleName=short)  # may exist from an earlier run
    rules(simple_payload(), name=short)
    assert iot.get_topic_rule(ruleName=short)["ruleArn"] == rule_arn(short)


def test_duplicate_rule_name_is_rejected(iot, rules):
    payload = simple_payload(description="the original")
    name = rules(payload)
    with aws_error("ResourceAlreadyExistsException", 409) as excinfo:
        iot.create_topic_rule(ruleName=name, topicRulePayload=simple_payload(description="a second one"))
    # the error body carries resourceId and resourceArn (botocore lifts them into the response)
    assert excinfo.value.response.get("resourceArn") == rule_arn(name)
    # the original is untouched
    rule = iot.get_topic_rule(ruleName=name)["rule"]
    assert rule["description"] == "the original"
    assert rule["sql"] == payload["sql"]


def test_ten_actions_are_accepted_eleven_are_not(iot, rules):
    ten = [republish(f"out/{i}") for i in range(10)]
    name = rules(simple_payload(actions=ten))
    assert iot.get_topic_rule(ruleName=name)["rule"]["actions"] == ten

    other = rule_name()
    eleven = [republish(f"out/{i}") for i in range(11)]
    with aws_error("InvalidRequestException"):
        iot.create_topic_rule(ruleName=other, topicRulePayload=simple_payload(actions=eleven))
    with aws_error("UnauthorizedException"):
        iot.get_topic_rule(ruleName=other)


@pytest.mark.parametrize(
    "action",
    [
        {},
        {"lambda": {"functionArn": "arn:aws:lambda:us-east-1:000000000000:function:f"}, "republish": {"topic": "t", "roleArn": ROLE_ARN}},
        {"lambda": {}},
        {"republish": {"topic": "out"}},
        {"s3": {"roleArn": ROLE_ARN, "bucketName": "b"}},
        {"dynamoDBv2": {"roleArn": ROLE_ARN}},
        {"cloudwatchAlarm": {"roleArn": ROLE_ARN, "alarmName": "a", "stateReason": "r"}},
    ],
    ids=[
        "no-kind",
        "two-kinds",
        "lambda-without-functionArn",
        "republish-without-roleArn",
        "s3-without-key",
        "dynamoDBv2-without-putItem",
        "cloudwatchAlarm-without-stateValue",
    ],
)
@pytest.mark.parametrize("where", ["actions", "errorAction"])
def test_malformed_actions_are_rejected(iot, raw_iot, action, where):
    payload = simple_payload()
    if where == "actions":
        payload["actions"] = [republish(), action]
    else:
        payload["errorAction"] = action
    name = rule_name()
    with aws_error("InvalidRequestException"):
        raw_iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
    with aws_error("UnauthorizedException"):
        iot.get_topic_rule(ruleName=name)


def test_rule_operations_answer_with_request_ids(iot, rules, destinations):
    name = rules(simple_payload())
    arn = destinations.vpc()["arn"]
    responses = [
        iot.get_topic_rule(ruleName=name),
        iot.list_topic_rules(maxResults=1),
        iot.disable_topic_rule(ruleName=name),
        iot.get_topic_rule_destination(arn=arn),
        iot.list_topic_rule_destinations(maxResults=1),
        iot.update_topic_rule_destination(arn=arn, status="DISABLED"),
    ]
    ids = [r["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids), "request ids must be unique"


def test_get_missing_rule_is_unauthorized(iot):
    name = rule_name("missing")
    with aws_error("UnauthorizedException", 401) as excinfo:
        iot.get_topic_rule(ruleName=name)
    assert excinfo.value.response["Error"]["Message"] == f"Access to topic rule '{name}' was denied"


# --------------------------------------------------------------------------------------
# DeleteTopicRule / EnableTopicRule / DisableTopicRule / ReplaceTopicRule
# --------------------------------------------------------------------------------------


def test_delete_rule(iot, rules):
    topic = unique_topic()
    name = rules(simple_payload(topic))
    assert [r["ruleName"] for r in rules_on(iot, topic)] == [name]
    assert without_metadata(iot.delete_topic_rule(ruleName=name)) == {}
    with aws_error("UnauthorizedException"):
        iot.get_topic_rule(ruleName=name)
    assert rules_on(iot, topic) == []
    # the name is free again
    rules(simple_payload(topic, description="again"), name=name)
    assert iot.get_topic_rule(ruleName=name)["rule"]["description"] == "again"


def test_delete_missing_rule_is_unauthorized(iot):
    with aws_error("UnauthorizedException"):
        iot.delete_topic_rule(ruleName=rule_name("missing"))


def test_disable_and_enable_rule(iot, rules):
    topic = unique_topic()
    name = rules(simple_payload(topic))
    created_at = iot.get_topic_rule(ruleName=name)["rule"]["createdAt"]

    assert without_metadata(iot.disable_topic_rule(ruleName=name)) == {}
    rule = iot.get_topic_rule(ruleName=name)["rule"]
    assert rule["ruleDisabled"] is True
    assert rule["createdAt"] == created_at
    assert [r["ruleDisabled"] for r in rules_on(iot, topic)] == [True]

    assert without_metadata(iot.enable_topic_rule(ruleName=name)) == {}
    assert iot.get_topic_rule(ruleName=name)["rule"]["ruleDisabled"] is False
    assert [r["ruleDisabled"] for r in rules_on(iot, topic)] == [False]


def test_created_disabled_rule_can_be_enabled(iot, rules):
    name = rules(simple_payload(ruleDisabled=True))
    assert iot.get_topic_rule(ruleName=name)["rule"]["ruleDisabled"] is True
    iot.enable_topic_rule(ruleName=name)
    rule = iot.get_topic_rule(ruleName=name)["rule"]
    assert rule["ruleDisabled"] is False
    # enabling changes nothing else
    assert rule["actions"] == [republish()]


def test_replace_rule_replaces_the_whole_payload(iot, rules):
    old_topic, new_topic = unique_topic(), unique_topic()
    original = {
        "sql": f"SELECT * FROM '{old_topic}'",
        "description": "before",
        "actions": [republish("before")],
        "awsIotSqlVersion": "2016-03-23",
        "errorAction": {"lambda": {"functionArn": "arn:aws:lambda:us-east-1:000000000000:function:err"}},
    }
    name = rules(original, tags="env=dev&team=rules")
    before = iot.get_topic_rule(ruleName=name)["rule"]

    replacement = {
        "sql": f"SELECT temperature AS t FROM '{new_topic}' WHERE temperature > 10",
        "description": "after",
        "actions": [
            {"sqs": {"roleArn": ROLE_ARN, "queueUrl": "https://sqs.us-east-1.amazonaws.com/000000000000/q"}},
            republish("after"),
        ],
        "ruleDisabled": True,
        "awsIotSqlVersion": "beta",
    }
    assert without_metadata(iot.replace_topic_rule(ruleName=name, topicRulePayload=replacement)) == {}

    after = iot.get_topic_rule(ruleName=name)["rule"]
    assert after["sql"] == replacement["sql"]
    assert after["description"] == "after"
    assert after["actions"] == replacement["actions"]
    assert after["ruleDisabled"] is True
    assert after["awsIotSqlVersion"] == "beta"
    assert "errorAction" not in after, "the replacement payload has no errorAction"
    assert after["createdAt"] == before["createdAt"], "ReplaceTopicRule keeps the creation time"

    # listing follows the new FROM filter
    assert rules_on(iot, old_topic) == []
    listed = rules_on(iot, new_topic)
    assert [(r["ruleName"], r["topicPattern"], r["ruleDisabled"]) for r in listed] == [(name, new_topic, True)]

    # tags are kept
    assert tag_dict(iot.list_tags_for_resource(resourceArn=rule_arn(name))["tags"]) == {
        "env": "dev",
        "team": "rules",
    }


def test_replace_without_sql_version_falls_back_to_the_default(iot, rules):
    name = rules(simple_payload(awsIotSqlVersion="2016-03-23", ruleDisabled=True))
    iot.replace_topic_rule(ruleName=name, topicRulePayload=simple_payload())
    rule = iot.get_topic_rule(ruleName=name)["rule"]
    assert rule["awsIotSqlVersion"] == DEFAULT_SQL_VERSION
    assert rule["ruleDisabled"] is False


def test_replace_missing_rule_fails(iot):
    name = rule_name("missing")
    with pytest.raises(ClientError) as excinfo:
        iot.replace_topic_rule(ruleName=name, topicRulePayload=simple_payload())
    code = excinfo.value.response["Error"]["Code"]
    assert code in ("ResourceNotFoundException", "UnauthorizedException"), excinfo.value.response
    with aws_error(code):
        iot.replace_topic_rule(ruleName=name, topicRulePayload=simple_payload())
    # replacing does not create
    with aws_error("UnauthorizedException"):
        iot.get_topic_rule(ruleName=name)


def test_replace_with_invalid_payload_keeps_the_rule(iot, raw_iot, rules):
    payload = simple_payload(description="keep me")
    name = rules(payload)
    with aws_error("SqlParseException", 400):
        iot.replace_topic_rule(ruleName=name, topicRulePayload={"sql": "SELECT * FROM", "actions": []})
    with aws_error("InvalidRequestException"):
        raw_iot.replace_topic_rule(ruleName=name, topicRulePayload=simple_payload(actions=[{"lambda": {}}]))
    with aws_error("InvalidRequestException"):
        iot.replace_topic_rule(ruleName=name, topicRulePayload=simple_payload(awsIotSqlVersion="1999-01-01"))
    rule = iot.get_topic_rule(ruleName=name)["rule"]
    assert rule["description"] == "keep me"
    assert rule["sql"] == payload["sql"]
    assert rule["actions"] == payload["actions"]


# --------------------------------------------------------------------------------------
# ListTopicRules
# --------------------------------------------------------------------------------------


def test_list_item_shape(iot, rules):
    topic = unique_topic()
    name = rules(simple_payload(topic))
    got = iot.get_topic_rule(ruleName=name)
    listed = iot.list_topic_rules(topic=topic)["rules"]
    assert len(listed) == 1
    item = listed[0]
    assert item["ruleArn"] == rule_arn(name) == got["ruleArn"]
    assert item["ruleName"] == name
    assert item["topicPattern"] == topic
    assert item["ruleDisabled"] is False
    assert item["createdAt"] == got["rule"]["createdAt"]


def test_list_without_filters_includes_new_rules(iot, rules):
    names = {rules(simple_payload()) for _ in range(2)}
    names.add(rules(simple_payload(ruleDisabled=True)))
    items, _ = collect_pages(iot.list_topic_rules, "rules", maxResults=250)
    listed = [r["ruleName"] for r in items]
    assert names <= set(listed)
    assert len(listed) == len(set(listed)), "a rule was listed twice across pages"
    assert listed == sorted(listed), "rules are listed in name order"


def test_list_filters_by_exact_topic(iot, rules):
    base = uuid.uuid4().hex[:12]
    topic_a, topic_b = f"plant/{base}/a", f"plant/{base}/b"
    wildcard = f"plant/{base}/+"
    on_a = sorted(rules(simple_payload(topic_a)) for _ in range(2))
    on_b = rules(simple_payload(topic_b))
    on_wildcard = rules({"sql": f"SELECT * FROM '{wildcard}' WHERE x > 1", "actions": [republish()]})

    assert [r["ruleName"] for r in rules_on(iot, topic_a)] == on_a
    assert [r["ruleName"] for r in rules_on(iot, topic_b)] == [on_b]
    listed = rules_on(iot, wildcard)
    assert [(r["ruleName"], r["topicPattern"]) for r in listed] == [(on_wildcard, wildcard)]
    # the filter is the FROM text, not a topic match: nothing is on this exact filter
    assert rules_on(iot, f"plant/{base}/#") == []
    assert rules_on(iot, f"plant/{base}") == []


def test_list_filters_by_rule_disabled(iot, rules):
    topic = unique_topic()
    enabled = rules(simple_payload(topic))
    disabled_at_create = rules(simple_payload(topic, ruleDisabled=True))
    disabled_later = rules(simple_payload(topic))
    iot.disable_topic_rule(ruleName=disabled_later)

    assert [r["ruleName"] for r in rules_on(iot, topic, ruleDisabled=True)] == sorted(
        [disabled_at_create, disabled_later]
    )
    assert [r["ruleName"] for r in rules_on(iot, topic, ruleDisabled=False)] == [enabled]
    both = rules_on(iot, topic)
    assert {r["ruleName"]: r["ruleDisabled"] for r in both} == {
        enabled: False,
        disabled_at_create: True,
        disabled_later: True,
    }

    iot.enable_topic_rule(ruleName=disabled_at_create)
    assert [r["ruleName"] for r in rules_on(iot, topic, ruleDisabled=True)] == [disabled_later]


def test_list_pagination_over_three_pages(iot, rules):
    topic = unique_topic("paging")
    prefix = f"page_{uuid.uuid4().hex[:8]}"
    # created out of order: the listing sorts by name
    names = [f"{prefix}_{i}" for i in (6, 2, 4, 0, 5, 1, 3)]
    for name in names:
        rules(simple_payload(topic), name=name)

    first = iot.list_topic_rules(topic=topic, maxResults=3)
    assert len(first["rules"]) == 3
    assert first.get("nextToken")

    items, sizes = collect_pages(iot.list_topic_rules, "rules", topic=topic, maxResults=3)
    assert sizes == [3, 3, 1]
    assert [r["ruleName"] for r in items] == sorted(names)
    assert [r["ruleName"] for r in first["rules"]] == sorted(names)[:3]

    # the filters apply across pages too
    for name in sorted(names)[::2]:
        iot.disable_topic_rule(ruleName=name)
    items, sizes = collect_pages(iot.list_topic_rules, "rules", topic=topic, ruleDisabled=True, maxResults=2)
    assert sizes == [2, 2]
    assert [r["ruleName"] for r in items] == sorted(names)[::2]


def test_list_with_exact_page_size_has_no_trailing_token(iot, rules):
    topic = unique_topic("paging")
    names = sorted(rules(simple_payload(topic)) for _ in range(2))
    page = iot.list_topic_rules(topic=topic, maxResults=2)
    assert [r["ruleName"] for r in page["rules"]] == names
    assert not page.get("nextToken"), "no nextToken on the last page"


def test_list_rejects_max_results_zero(raw_iot):
    with aws_error("InvalidRequestException"):
        raw_iot.list_topic_rules(maxResults=0)


def test_list_accepts_awss_largest_page_size(iot, raw_iot, rules):
    """ListTopicRules allows maxResults up to 10,000; the server may page below that."""
    name = rules(simple_payload())
    items, _ = collect_pages(iot.list_topic_rules, "rules", maxResults=10000)
    assert name in [r["ruleName"] for r in items]
    with aws_error("InvalidRequestException"):
        raw_iot.list_topic_rules(maxResults=10001)


# --------------------------------------------------------------------------------------
# tags
# --------------------------------------------------------------------------------------


def test_create_rule_with_tags(iot, rules):
    # x-amz-tagging is a URL query string: values are form-encoded
    name = rules(simple_payload(), tags="env=dev&owner=team%20a&empty=")
    tags = iot.list_tags_for_resource(resourceArn=rule_arn(name))["tags"]
    assert tag_dict(tags) == {"env": "dev", "owner": "team a", "empty": ""}


def test_rule_without_tags_has_none(iot, rules):
    name = rules(simple_payload())
    assert iot.list_tags_for_resource(resourceArn=rule_arn(name))["tags"] == []


def test_tag_and_untag_rule(iot, rules):
    name = rules(simple_payload(), tags="env=dev")
    arn = rule_arn(name)
    iot.tag_resource(resourceArn=arn, tags=[{"Key": "owner", "Value": "team-a"}, {"Key": "env", "Value": "prod"}])
    assert tag_dict(iot.list_tags_for_resource(resourceArn=arn)["tags"]) == {"env": "prod", "owner": "team-a"}
    iot.untag_resource(resourceArn=arn, tagKeys=["env"])
    assert tag_dict(iot.list_tags_for_resource(resourceArn=arn)["tags"]) == {"owner": "team-a"}
    # tagging changes nothing in the rule
    assert iot.get_topic_rule(ruleName=name)["rule"]["actions"] == [republish()]


def test_tags_of_a_deleted_rule(iot, rules):
    name = rules(simple_payload(), tags="env=dev")
    iot.delete_topic_rule(ruleName=name)
    with aws_error("ResourceNotFoundException"):
        iot.list_tags_for_resource(resourceArn=rule_arn(name))


# --------------------------------------------------------------------------------------
# topic rule destinations
# --------------------------------------------------------------------------------------


def test_create_http_destination(iot, destinations, receiver):
    url = receiver.url()
    created = destinations.http(url)
    assert re.fullmatch(rf"arn:aws:iot:{REGION}:{ACCOUNT_ID}:ruledestination/http/{UUID_RE}", created["arn"]), created["arn"]
    assert created["status"] == "IN_PROGRESS"
    assert created["httpUrlProperties"] == {"confirmationUrl": url}
    assert "vpcProperties" not in created
    assert_recent(created["createdAt"])
    assert_recent(created["lastUpdatedAt"])

    got = iot.get_topic_rule_destination(arn=created["arn"])["topicRuleDestination"]
    assert got["arn"] == created["arn"]
    assert got["httpUrlProperties"] == {"confirmationUrl": url}
    assert got["createdAt"] == created["createdAt"]
    assert got["status"] == "IN_PROGRESS", "nobody confirmed it"


def test_http_destination_sends_a_confirmation_request(server, destinations, receiver):
    url = receiver.url()
    created = destinations.http(url)
    requests = receiver.wait_for(url)
    assert len(requests) == 1, f"one confirmation per destination, got {len(requests)}"
    request = requests[0]
    assert request.method == "POST"
    assert request.headers.get("x-amz-rules-engine-message-type") == "DestinationConfirmation"
    assert request.headers.get("x-amz-rules-engine-destination-arn") == created["arn"]
    assert request.headers.get("content-type", "").startswith("application/json")
    body = request.json()
    assert set(body) == {"arn", "confirmationToken", "enableUrl", "messageType"}, body
    assert body["arn"] == created["arn"]
    assert body["messageType"] == "DestinationConfirmation"
    token = body["confirmationToken"]
    assert isinstance(token, str) and len(token) >= 16, token
    assert body["enableUrl"] == f"{server.endpoint}/confirmdestination/{token}"


def test_confirm_destination_with_the_api(iot, destinations, receiver):
    url = receiver.url()
    created = destinations.http(url)
    token = confirmation_of(receiver, url)["confirmationToken"]
    response = iot.confirm_topic_rule_destination(confirmationToken=token)
    assert without_metadata(response) == {}
    assert response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid"), "every AWS response has a request id"
    got = iot.get_topic_rule_destination(arn=created["arn"])["topicRuleDestination"]
    assert got["status"] == "ENABLED"
    assert got["lastUpdatedAt"] >= created["lastUpdatedAt"]
    assert got["createdAt"] == created["createdAt"]


def test_confirm_destination_with_the_enable_url(iot, destinations, receiver):
    url = receiver.url()
    created = destinations.http(url)
    enable_url = confirmation_of(receiver, url)["enableUrl"]
    # a plain, unsigned GET, as a web hook handler or a browser would do
    with urllib.request.urlopen(enable_url, timeout=10) as response:
        assert response.status == 200
    assert iot.get_topic_rule_destination(arn=created["arn"])["topicRuleDestination"]["status"] == "ENABLED"


def test_confirm_with_an_invalid_token(iot, server):
    with aws_error("InvalidRequestException"):
        iot.confirm_topic_rule_destination(confirmationToken=f"bogus-{uuid.uuid4().hex}")
    # the enableUrl route refuses it too
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(f"{server.endpoint}/confirmdestination/bogus-{uuid.uuid4().hex}", timeout=10)
    assert excinfo.value.code == 400


def test_update_before_confirmation_is_rejected(iot, destinations, receiver):
    url = receiver.url()
    created = destinations.http(url)
    for status in ("ENABLED", "DISABLED"):
        with aws_error("InvalidRequestException"):
            iot.update_topic_rule_destination(arn=created["arn"], status=status)
    assert iot.get_topic_rule_destination(arn=created["arn"])["topicRuleDestination"]["status"] == "IN_PROGRESS"


def test_disable_and_enable_a_confirmed_destination(iot, destinations, receiver):
    url = receiver.url()
    arn = destinations.http(url)["arn"]
    iot.confirm_topic_rule_destination(confirmationToken=confirmation_of(receiver, url)["confirmationToken"])
    enabled = iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]

    assert without_metadata(iot.update_topic_rule_destination(arn=arn, status="DISABLED")) == {}
    disabled = iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]
    assert disabled["status"] == "DISABLED"
    assert disabled["lastUpdatedAt"] >= enabled["lastUpdatedAt"]
    assert disabled["httpUrlProperties"] == {"confirmationUrl": url}

    iot.update_topic_rule_destination(arn=arn, status="ENABLED")
    assert iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["status"] == "ENABLED"
    # no further confirmation request for enabling or disabling
    assert len([r for r in receiver.received(url) if r.method == "POST"]) == 1


def test_reset_to_in_progress_sends_a_new_token(iot, destinations, receiver):
    url = receiver.url()
    arn = destinations.http(url)["arn"]
    first = confirmation_of(receiver, url)
    iot.confirm_topic_rule_destination(confirmationToken=first["confirmationToken"])
    assert iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["status"] == "ENABLED"

    iot.update_topic_rule_destination(arn=arn, status="IN_PROGRESS")
    assert iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["status"] == "IN_PROGRESS"
    second = confirmation_of(receiver, url, count=2)
    assert second["arn"] == arn
    assert second["messageType"] == "DestinationConfirmation"
    assert second["confirmationToken"] != first["confirmationToken"], "a reset must issue a new token"
    assert second["enableUrl"].endswith("/confirmdestination/" + second["confirmationToken"])

    # while waiting again, ENABLED/DISABLED are refused as before confirmation
    with aws_error("InvalidRequestException"):
        iot.update_topic_rule_destination(arn=arn, status="ENABLED")
    iot.confirm_topic_rule_destination(confirmationToken=second["confirmationToken"])
    assert iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["status"] == "ENABLED"


def test_update_with_an_unknown_status_is_rejected(iot, raw_iot, destinations):
    arn = destinations.vpc()["arn"]
    with aws_error("InvalidRequestException"):
        raw_iot.update_topic_rule_destination(arn=arn, status="SOMETIMES")
    assert iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["status"] == "ENABLED"


def test_vpc_destination_is_enabled_at_once(iot, destinations):
    config = {
        "subnetIds": ["subnet-0aa11bb22", "subnet-0cc33dd44"],
        "securityGroups": ["sg-0ee55ff66"],
        "vpcId": f"vpc-{uuid.uuid4().hex[:8]}",
        "roleArn": ROLE_ARN,
    }
    created = destinations.vpc(**config)
    assert re.fullmatch(rf"arn:aws:iot:{REGION}:{ACCOUNT_ID}:ruledestination/vpc/{UUID_RE}", created["arn"]), created["arn"]
    assert created["status"] == "ENABLED"
    assert created["vpcProperties"] == config
    assert "httpUrlProperties" not in created
    assert_recent(created["createdAt"])

    got = iot.get_topic_rule_destination(arn=created["arn"])["topicRuleDestination"]
    assert got["status"] == "ENABLED"
    assert got["vpcProperties"] == config

    # no confirmation needed before disabling
    iot.update_topic_rule_destination(arn=created["arn"], status="DISABLED")
    assert iot.get_topic_rule_destination(arn=created["arn"])["topicRuleDestination"]["status"] == "DISABLED"
    iot.update_topic_rule_destination(arn=created["arn"], status="ENABLED")
    assert iot.get_topic_rule_destination(arn=created["arn"])["topicRuleDestination"]["status"] == "ENABLED"


def test_get_missing_destination(iot):
    # AWS answers for a destination that does not exist as for one the caller may not see.
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:ruledestination/http/{uuid.uuid4()}"
    with aws_error("UnauthorizedException", 401):
        iot.get_topic_rule_destination(arn=arn)


def test_delete_destination(iot, destinations, receiver):
    url = receiver.url()
    http_arn = destinations.http(url)["arn"]
    vpc_arn = destinations.vpc()["arn"]
    for arn in (http_arn, vpc_arn):
        assert without_metadata(iot.delete_topic_rule_destination(arn=arn)) == {}
        with aws_error("UnauthorizedException", 401):
            iot.get_topic_rule_destination(arn=arn)
    listed = {d["arn"] for d in all_destinations(iot)}
    assert http_arn not in listed and vpc_arn not in listed
    # the URL is free again
    again = destinations.http(url)
    assert again["arn"] != http_arn
    assert again["status"] == "IN_PROGRESS"


def test_delete_missing_destination(iot):
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:ruledestination/vpc/{uuid.uuid4()}"
    with pytest.raises(ClientError) as excinfo:
        iot.delete_topic_rule_destination(arn=arn)
    assert excinfo.value.response["Error"]["Code"] == "UnauthorizedException"


def test_duplicate_http_destination_is_rejected(iot, destinations, receiver):
    url = receiver.url()
    first = destinations.http(url)
    with aws_error("ResourceAlreadyExistsException", 409):
        iot.create_topic_rule_destination(
            destinationConfiguration={"httpUrlConfiguration": {"confirmationUrl": url}}
        )
    assert [d["arn"] for d in destinations_for(iot, url)] == [first["arn"]]


@pytest.mark.parametrize(
    "configuration",
    [
        {},
        {
            "httpUrlConfiguration": {"confirmationUrl": "https://example.com/both"},
            "vpcConfiguration": {"subnetIds": ["subnet-1"], "vpcId": "vpc-1", "roleArn": ROLE_ARN},
        },
        {"httpUrlConfiguration": {}},
        {"httpUrlConfiguration": {"confirmationUrl": "ftp://example.com/x"}},
        {"httpUrlConfiguration": {"confirmationUrl": "not a url"}},
    ],
    ids=["empty", "http-and-vpc", "no-confirmationUrl", "ftp-url", "not-a-url"],
)
def test_invalid_destination_configuration(raw_iot, configuration):
    with aws_error("InvalidRequestException"):
        raw_iot.create_topic_rule_destination(destinationConfiguration=configuration)


def test_list_destinations_with_paging(iot, destinations, receiver):
    vpc_arns = {destinations.vpc()["arn"] for _ in range(4)}
    url = receiver.url()
    http_arn = destinations.http(url)["arn"]

    items, sizes = collect_pages(iot.list_topic_rule_destinations, "destinationSummaries", maxResults=2)
    assert len(sizes) >= 3
    assert all(size <= 2 for size in sizes), sizes
    arns = [d["arn"] for d in items]
    assert len(arns) == len(set(arns)), "a destination was listed twice across pages"
    assert vpc_arns | {http_arn} <= set(arns)

    by_arn = {d["arn"]: d for d in items}
    http_summary = by_arn[http_arn]
    assert http_summary["httpUrlSummary"] == {"confirmationUrl": url}
    assert http_summary["status"] == "IN_PROGRESS"
    assert "vpcDestinationSummary" not in http_summary
    assert_recent(http_summary["createdAt"])
    assert_recent(http_summary["lastUpdatedAt"])
    for arn in vpc_arns:
        summary = by_arn[arn]
        assert summary["status"] == "ENABLED"
        assert summary["vpcDestinationSummary"]["roleArn"] == ROLE_ARN
        assert summary["vpcDestinationSummary"]["vpcId"].startswith("vpc-")
        assert len(summary["vpcDestinationSummary"]["subnetIds"]) == 2
        assert "httpUrlSummary" not in summary

    # listings agree with Get
    got = iot.get_topic_rule_destination(arn=http_arn)["topicRuleDestination"]
    assert got["createdAt"] == http_summary["createdAt"]


# --------------------------------------------------------------------------------------
# destinations made by CreateTopicRule for http actions
# --------------------------------------------------------------------------------------


def http_rule(url: str, confirmation_url: str | None = None) -> dict:
    action = {"url": url}
    if confirmation_url is not None:
        action["confirmationUrl"] = confirmation_url
    return {"sql": f"SELECT * FROM '{unique_topic()}'", "actions": [{"http": action}]}


def test_http_action_creates_a_destination_for_its_url(iot, rules, destinations, receiver):
    url = receiver.url("auto")
    destinations.track(url)
    assert destinations_for(iot, url) == []
    name = rules(http_rule(url))

    made = destinations_for(iot, url)
    assert len(made) == 1, made
    assert made[0]["status"] == "IN_PROGRESS"
    assert re.fullmatch(rf"arn:aws:iot:{REGION}:{ACCOUNT_ID}:ruledestination/http/{UUID_RE}", made[0]["arn"])
    body = confirmation_of(receiver, url)
    assert body["arn"] == made[0]["arn"]
    assert body["messageType"] == "DestinationConfirmation"
    iot.confirm_topic_rule_destination(confirmationToken=body["confirmationToken"])
    assert iot.get_topic_rule_destination(arn=made[0]["arn"])["topicRuleDestination"]["status"] == "ENABLED"
    # the rule itself is stored as sent
    assert iot.get_topic_rule(ruleName=name)["rule"]["actions"] == [{"http": {"url": url}}]


def test_http_action_with_confirmation_url_creates_a_destination_for_it(iot, rules, destinations, receiver):
    base = receiver.url("auto")
    url = base + "/ingest/${topic()}"
    destinations.track(base)
    rules(http_rule(url, base))
    made = destinations_for(iot, base)
    assert len(made) == 1, made
    assert made[0]["status"] == "IN_PROGRESS"
    assert destinations_for(iot, url) == [], "the destination is for the confirmationUrl, not the url"
    assert confirmation_of(receiver, base)["arn"] == made[0]["arn"]


def test_http_action_reuses_an_existing_destination(iot, rules, destinations, receiver):
    base = receiver.url("auto")
    existing = destinations.http(base)
    iot.confirm_topic_rule_destination(confirmationToken=confirmation_of(receiver, base)["confirmationToken"])

    rules(http_rule(base + "/ingest", base))
    rules(http_rule(base))
    made = destinations_for(iot, base)
    assert [d["arn"] for d in made] == [existing["arn"]]
    assert made[0]["status"] == "ENABLED", "a rule must not reset an existing destination"
    time.sleep(0.5)
    assert len([r for r in receiver.received(base) if r.method == "POST"]) == 1, "no second confirmation"


def test_two_http_actions_share_one_new_destination(iot, rules, destinations, receiver):
    base = receiver.url("auto")
    destinations.track(base)
    payload = {
        "sql": f"SELECT * FROM '{unique_topic()}'",
        "actions": [
            {"http": {"url": base + "/a", "confirmationUrl": base}},
            {"http": {"url": base + "/b", "confirmationUrl": base}},
        ],
    }
    rules(payload)
    assert len(destinations_for(iot, base)) == 1


def test_templated_http_url_needs_a_confirmation_url(iot, receiver):
    url = receiver.url("auto") + "/${topic()}"
    name = rule_name()
    with aws_error("InvalidRequestException"):
        iot.create_topic_rule(ruleName=name, topicRulePayload=http_rule(url))
    with aws_error("UnauthorizedException"):
        iot.get_topic_rule(ruleName=name)


def test_http_url_must_start_with_the_confirmation_url(iot, receiver, destinations):
    base = receiver.url("auto")
    destinations.track(base)
    name = rule_name()
    other = receiver.url("elsewhere")
    with aws_error("InvalidRequestException"):
        iot.create_topic_rule(ruleName=name, topicRulePayload=http_rule(other + "/ingest", base))
    with aws_error("UnauthorizedException"):
        iot.get_topic_rule(ruleName=name)
    assert destinations_for(iot, base) == [], "a refused rule makes no destination"


def test_replace_with_an_http_action_creates_a_destination(iot, rules, destinations, receiver):
    url = receiver.url("auto")
    destinations.track(url)
    name = rules(simple_payload())
    assert destinations_for(iot, url) == []
    iot.replace_topic_rule(ruleName=name, topicRulePayload=http_rule(url))
    made = destinations_for(iot, url)
    assert len(made) == 1 and made[0]["status"] == "IN_PROGRESS"
    assert confirmation_of(receiver, url)["arn"] == made[0]["arn"]


# --------------------------------------------------------------------------------------
# durability
# --------------------------------------------------------------------------------------


@pytest.mark.restart
def test_rules_and_destinations_survive_a_restart(server, iot, rules, destinations, receiver):
    if not server.can_restart:
        pytest.skip("FERROCORE_ENDPOINT is set: the tests cannot restart an external server")
    topic = unique_topic()
    rich = simple_payload(
        topic,
        description="survives",
        awsIotSqlVersion="2016-03-23",
        errorAction={"sqs": {"roleArn": ROLE_ARN, "queueUrl": "https://sqs.us-east-1.amazonaws.com/000000000000/err"}},
    )
    kept = rules(rich, tags="env=dev&team=rules")
    disabled = rules(simple_payload(topic))
    iot.disable_topic_rule(ruleName=disabled)

    confirmed_url, pending_url = receiver.url("restart"), receiver.url("restart")
    confirmed = destinations.http(confirmed_url)["arn"]
    iot.confirm_topic_rule_destination(confirmationToken=confirmation_of(receiver, confirmed_url)["confirmationToken"])
    pending = destinations.http(pending_url)["arn"]
    pending_token = confirmation_of(receiver, pending_url)["confirmationToken"]
    vpc = destinations.vpc()["arn"]
    iot.update_topic_rule_destination(arn=vpc, status="DISABLED")

    before_rules = {n: iot.get_topic_rule(ruleName=n) for n in (kept, disabled)}
    before_list = rules_on(iot, topic)
    before_destinations = {a: iot.get_topic_rule_destination(arn=a)["topicRuleDestination"] for a in (confirmed, pending, vpc)}

    server.restart()

    for name, before in before_rules.items():
        assert without_metadata(iot.get_topic_rule(ruleName=name)) == without_metadata(before), name
    assert rules_on(iot, topic) == before_list
    assert tag_dict(iot.list_tags_for_resource(resourceArn=rule_arn(kept))["tags"]) == {"env": "dev", "team": "rules"}
    for arn, before in before_destinations.items():
        assert iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"] == before, arn
    assert [before_destinations[a]["status"] for a in (confirmed, pending, vpc)] == ["ENABLED", "IN_PROGRESS", "DISABLED"]

    # the token sent before the restart still confirms the pending destination
    iot.confirm_topic_rule_destination(confirmationToken=pending_token)
    assert iot.get_topic_rule_destination(arn=pending)["topicRuleDestination"]["status"] == "ENABLED"
    # and the server keeps working: a duplicate is still a duplicate
    with aws_error("ResourceAlreadyExistsException"):
        iot.create_topic_rule(ruleName=kept, topicRulePayload=simple_payload())


# --------------------------------------------------------------------------------------
# AWS CLI
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_cli(server, tmp_path_factory):
    return make_aws_cli(server.endpoint, tmp_path_factory.mktemp("awscli-rules"))


@pytest.mark.cli
def test_cli_create_list_get_delete_topic_rule(aws_cli, iot):
    topic = unique_topic("cli")
    name = rule_name("cli")
    payload = {
        "sql": f"SELECT temperature FROM '{topic}' WHERE temperature > 40",
        "description": "made with the AWS CLI",
        "actions": [republish("cli/out")],
        "awsIotSqlVersion": "2016-03-23",
    }
    try:
        run_json(
            aws_cli,
            ["iot", "create-topic-rule", "--rule-name", name, "--topic-rule-payload", json.dumps(payload), "--tags", "env=cli"],
        )
        listed = run_json(aws_cli, ["iot", "list-topic-rules", "--topic", topic])
        assert [(r["ruleName"], r["topicPattern"], r["ruleArn"]) for r in listed["rules"]] == [(name, topic, rule_arn(name))]
        assert isinstance(listed["rules"][0]["createdAt"], (int, float, str))

        got = run_json(aws_cli, ["iot", "get-topic-rule", "--rule-name", name])
        assert got["ruleArn"] == rule_arn(name)
        assert got["rule"]["sql"] == payload["sql"]
        assert got["rule"]["actions"] == payload["actions"]
        assert got["rule"]["awsIotSqlVersion"] == "2016-03-23"
        assert tag_dict(iot.list_tags_for_resource(resourceArn=rule_arn(name))["tags"]) == {"env": "cli"}

        run_json(aws_cli, ["iot", "disable-topic-rule", "--rule-name", name])
        assert iot.get_topic_rule(ruleName=name)["rule"]["ruleDisabled"] is True

        missing = aws_cli(["iot", "get-topic-rule", "--rule-name", rule_name("missing")])
        assert missing.returncode != 0
        assert "UnauthorizedException" in missing.stderr, missing.stderr

        run_json(aws_cli, ["iot", "delete-topic-rule", "--rule-name", name])
        with aws_error("UnauthorizedException"):
            iot.get_topic_rule(ruleName=name)
    finally:
        ignore_missing(iot.delete_topic_rule, ruleName=name)
