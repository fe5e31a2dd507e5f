"""Shared fixtures and helpers for the rules engine end-to-end tests
(tests/test_rules_actions.py, tests/test_terraform_seed002_rules.py).

Loaded as a pytest plugin by those modules (`pytest_plugins = ["rules_helpers"]`), so its
fixtures are available there and a failed test's report carries the tail of the rules
server's log.

What is set up here:
- `moto_server` (session): moto_server (python3.11's, as bench/compare.py starts it) on a
  random port; the AWS services every action writes to. Skipped loudly when missing.
- `CaptureServer`: an HTTP server on 127.0.0.1 (own thread, random port) that records every
  request (method, path, headers, body) and answers with configurable status codes; it
  doubles as the Lambda Invoke stub (202 on /2015-03-31/functions/*/invocations).
- `rules_server` (module): a second ferrocore started with `--config` whose [rules] section
  points every AWS service at moto_server and `lambda` at the module's Lambda stub.
- `aws` (session): boto3 clients for moto (dynamodb, s3, sqs, sns, kinesis, firehose, logs,
  cloudwatch, lambda, iam) plus small helpers (unique queues, reading SQS).
- `devices` (function): provisions things with certificates and an everything-allowed
  policy on the rules server and connects paho clients over TLS (shadow_helpers.MqttClient).
- `rules` (function): CreateTopicRule on the rules server, deleted again at teardown.
- `metrics_snapshot` / `metric_sum`: ferrocore's /metrics as numbers.
- `wait_until(predicate, timeout=10)`.

Expected behaviour: shared/reference/aws-iot-core.md section 5 and crates/rules/NOTES.md.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from conftest import FerrocoreServer, ferrocore_binary, free_port
from shadow_helpers import MqttClient, new_client

MOTO_ACCOUNT_ID = "123456789012"  # moto's default account
MOTO_REGION = "us-east-1"
MOTO_ACCESS_KEY = "testing"
MOTO_SECRET_KEY = "testing"
# The rules engine does not assume the role; the API still wants a role ARN on most actions.
ROLE_ARN = f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/ferrocore-rules"
RULE_SETTLE = 1.5  # a rule applies within ~1 s of CreateTopicRule / Enable / Replace
DEFAULT_TIMEOUT = 10.0
MAX_ATTEMPTS = 3  # [rules] max_attempts of the rules server
LAMBDA_PREFIX = "/2015-03-31/functions/"


# --------------------------------------------------------------------------------------
# waiting
# --------------------------------------------------------------------------------------


def wait_until(predicate, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.1, what: str | None = None):
    """Polls `predicate()` until it returns something truthy (returned) or fails the test
    after `timeout` seconds, naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            label = what or getattr(predicate, "__name__", "a condition")
            pytest.fail(f"timed out after {timeout}s waiting for {label}; last value: {last!r}", pytrace=False)
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# moto_server
# --------------------------------------------------------------------------------------


class MotoServer:
    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def client(self, service: str):
        return boto3.Session(
            aws_access_key_id=MOTO_ACCESS_KEY, aws_secret_access_key=MOTO_SECRET_KEY, region_name=MOTO_REGION
        ).client(
            service,
            endpoint_url=self.url,
            config=Config(retries={"total_max_attempts": 2}, connect_timeout=5, read_timeout=60),
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"


def _moto_command() -> list[str] | None:
    binary = shutil.which("moto_server")
    if binary:
        return [binary]
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "moto.server"]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    command = _moto_command()
    if command is None:
        pytest.skip(
            "SKIPPED: moto_server is not installed (pip install 'moto[server]' for python3.11); "
            "the rules engine action tests need it as the AWS side of every action"
        )
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    server = MotoServer(proc, port, log_path)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"moto_server exited with {proc.returncode}:\n{server.log_tail()}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not answer on {server.url} within 30 s:\n{server.log_tail()}", pytrace=False)
            time.sleep(0.2)
    try:
        yield server
    finally:
        proc.terminate()  # only the process this fixture started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------
# capturing HTTP server (also the Lambda Invoke stub)
# --------------------------------------------------------------------------------------


@dataclass
class Captured:
    method: str
    path: str  # raw request target, percent-encoding kept
    headers: dict  # lower-cased names
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self):
        return json.loads(self.body)


class CaptureServer:
    """Records every request; answers with the next status queued for the longest matching
    path prefix (`respond`), else 202 for Lambda invocations and `default_status` otherwise."""

    def __init__(self, default_status: int = 200):
        self.default_status = default_status
        self.requests: list[Captured] = []
        self.lock = threading.Condition()
        self.plans: dict[str, deque] = {}  # path prefix -> deque of (status, body, headers)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                captured = Captured(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                status, answer, extra = outer._answer(self.path)
                with outer.lock:
                    outer.requests.append(captured)
                    outer.lock.notify_all()
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PUT = do_GET = do_DELETE = do_PATCH = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _answer(self, path: str) -> tuple[int, bytes, dict]:
        with self.lock:
            matching = [p for p in self.plans if path.startswith(p) and self.plans[p]]
            if matching:
                return self.plans[max(matching, key=len)].popleft()
        if path.startswith(LAMBDA_PREFIX) and path.endswith("/invocations"):
            return 202, b"", {"x-amzn-RequestId": str(uuid.uuid4())}
        return self.default_status, b"", {}

    def respond(self, prefix: str, *statuses: int, body: bytes = b"", headers: dict | None = None) -> None:
        """The next requests under `prefix` get these statuses, one each, in order."""
        with self.lock:
            self.plans.setdefault(prefix, deque()).extend((s, body, dict(headers or {})) for s in statuses)

    def matching(self, prefix: str = "", method: str | None = None) -> list[Captured]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix) and (method is None or r.method == method)]

    def wait_for(self, count: int, prefix: str = "", method: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> list[Captured]:
        """Waits until at least `count` requests under `prefix` arrived; returns them all."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                got = [r for r in self.requests if r.path.startswith(prefix) and (method is None or r.method == method)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(r.method, r.path) for r in self.requests[-20:]]
                    pytest.fail(
                        f"timed out after {timeout}s waiting for {count} request(s) under {prefix!r} on {self.url}; "
                        f"got {len(got)}; last requests seen: {seen}",
                        pytrace=False,
                    )
                self.lock.wait(min(left, 0.2))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def lambda_invocation_path(function: str) -> str:
    """The Lambda Invoke path for a function name or ARN (the ARN URL-encoded)."""
    from urllib.parse import quote

    return f"{LAMBDA_PREFIX}{quote(function, safe='')}/invocations"


@pytest.fixture
def capture():
    """capture(default_status=200) -> a new CaptureServer, closed at teardown."""
    made: list[CaptureServer] = []

    def make(default_status: int = 200) -> CaptureServer:
        server = CaptureServer(default_status)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


# --------------------------------------------------------------------------------------
# the rules server
# --------------------------------------------------------------------------------------


def rules_config(moto_url: str, lambda_url: str, max_attempts: int = MAX_ATTEMPTS) -> str:
    return f"""\
[rules]
endpoint_url = "{moto_url}"
access_key_id = "{MOTO_ACCESS_KEY}"
secret_access_key = "{MOTO_SECRET_KEY}"
http_allow_insecure = true
max_attempts = {max_attempts}

[rules.endpoints]
lambda = "{lambda_url}"
"""


class RulesServer(FerrocoreServer):
    """ferrocore with a `--config` file (the [rules] section above)."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, config: Path, lambda_stub: CaptureServer, moto: MotoServer):
        super().__init__(binary, data_dir, log_path)
        self.config = config
        self.lambda_stub = lambda_stub
        self.moto = moto

    @property
    def command(self) -> list[str]:
        return [*super().command, "--config", str(self.config)]


_LIVE_RULES_SERVERS: list[RulesServer] = []


@pytest.fixture(scope="module")
def rules_server(tmp_path_factory, moto_server):
    if os.environ.get("FERROCORE_ENDPOINT"):
        pytest.skip("FERROCORE_ENDPOINT is set: the rules tests start their own server with a [rules] config")
    binary = ferrocore_binary()
    if not binary.is_file():
        pytest.fail(f"ferrocore binary not found at {binary}", pytrace=False)
    stub = CaptureServer()
    base = tmp_path_factory.mktemp("ferrocore-rules")
    (base / "data").mkdir()
    config = base / "ferrocore.toml"
    config.write_text(rules_config(moto_server.url, stub.url))
    server = RulesServer(binary, base / "data", base / "ferrocore.log", config, stub, moto_server)
    server.start()
    _LIVE_RULES_SERVERS.append(server)
    try:
        yield server
    finally:
        _LIVE_RULES_SERVERS.remove(server)
        server.stop()
        stub.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of the rules server's log to every failed test report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in _LIVE_RULES_SERVERS:
            report.sections.append((f"ferrocore rules server log (tail) {server.log_path}", server.log_tail()))


@pytest.fixture(scope="module")
def rules_iot(rules_server):
    return new_client(rules_server, "iot")


@pytest.fixture(scope="module")
def rules_data(rules_server):
    return new_client(rules_server, "iot-data")


# --------------------------------------------------------------------------------------
# moto clients
# --------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def rule_name(prefix: str = "rule") -> str:
    """Rule names allow [a-zA-Z0-9_] only."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class Aws:
    """boto3 clients for moto_server and the resources the tests make there."""

    SERVICES = ("dynamodb", "s3", "sqs", "sns", "kinesis", "firehose", "logs", "cloudwatch", "lambda", "iam")

    def __init__(self, moto: MotoServer):
        self.moto = moto
        self._clients = {service: moto.client(service) for service in self.SERVICES}

    def client(self, service: str):
        return self._clients[service]

    def __getattr__(self, service: str):
        clients = self.__dict__.get("_clients", {})
        if service in clients:
            return clients[service]
        raise AttributeError(service)

    # sqs -----------------------------------------------------------------------------------
    def queue(self, prefix: str = "rules") -> str:
        return self.sqs.create_queue(QueueName=unique(prefix))["QueueUrl"]

    def queue_arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def receive(self, url: str, count: int, timeout: float = DEFAULT_TIMEOUT, settle: float = 1.5) -> list[str]:
        """Bodies of exactly `count` messages: waits for them, then checks for `settle`
        seconds that no further message arrives (fails the test otherwise)."""
        bodies: list[str] = []
        deadline = time.monotonic() + timeout
        while len(bodies) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s: {len(bodies)} of {count} message(s) in {url}: {bodies}", pytrace=False)
            bodies.extend(self._receive_once(url, wait=1))
        if settle:
            end = time.monotonic() + settle
            while time.monotonic() < end:
                bodies.extend(self._receive_once(url, wait=1))
        assert len(bodies) == count, f"expected exactly {count} message(s) in {url}, got {len(bodies)}: {bodies}"
        return bodies

    def nothing_in(self, url: str, within: float = 2.0) -> None:
        bodies: list[str] = []
        end = time.monotonic() + within
        while time.monotonic() < end:
            bodies.extend(self._receive_once(url, wait=1))
        assert not bodies, f"unexpected message(s) in {url}: {bodies}"

    def _receive_once(self, url: str, wait: int) -> list[str]:
        response = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        messages = response.get("Messages", [])
        for message in messages:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [m["Body"] for m in messages]

    # dynamodb ------------------------------------------------------------------------------
    def table(self, hash_key: str, hash_type: str = "S", range_key: str | None = None, range_type: str = "N") -> str:
        name = unique("rules-table")
        attributes = [{"AttributeName": hash_key, "AttributeType": hash_type}]
        schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            attributes.append({"AttributeName": range_key, "AttributeType": range_type})
            schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        self.dynamodb.create_table(
            TableName=name, AttributeDefinitions=attributes, KeySchema=schema, BillingMode="PAY_PER_REQUEST"
        )
        return name

    def items(self, table: str) -> list[dict]:
        return self.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]

    # s3 ------------------------------------------------------------------------------------
    def bucket(self) -> str:
        name = unique("rules-bucket")
        self.s3.create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        listed = self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


@pytest.fixture(scope="session")
def aws(moto_server):
    return Aws(moto_server)


# --------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------

EVERYTHING_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive", "iot:RetainPublish"],
            "Resource": "*",
        }
    ],
})


@dataclass
class RulesDevice:
    thing: str
    cert_arn: str
    files: Path


def provision_device(iot, server, directory: Path, thing: str | None = None) -> RulesDevice:
    """A thing with an ACTIVE certificate (CreateKeysAndCertificate) under a policy that
    allows connect/publish/subscribe/receive on everything; files: ca.pem, cert.pem, key.pem."""
    thing = thing or unique("rules-dev")
    iot.create_thing(thingName=thing)
    created = iot.create_keys_and_certificate(setAsActive=True)
    policy = f"{thing}-all"
    iot.create_policy(policyName=policy, policyDocument=EVERYTHING_POLICY)
    iot.attach_policy(policyName=policy, target=created["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=created["certificateArn"])
    files = directory / thing
    files.mkdir(parents=True)
    (files / "cert.pem").write_text(created["certificatePem"])
    (files / "key.pem").write_text(created["keyPair"]["PrivateKey"])
    with urllib.request.urlopen(f"{server.endpoint}/ca.pem", timeout=10) as response:
        (files / "ca.pem").write_bytes(response.read())
    return RulesDevice(thing, created["certificateArn"], files)


class Devices:
    def __init__(self, iot, server, directory: Path):
        self.iot, self.server, self.directory = iot, server, directory
        self.clients: list[MqttClient] = []

    def provision(self, thing: str | None = None) -> RulesDevice:
        return provision_device(self.iot, self.server, self.directory, thing)

    def connect(self, thing: str | None = None, client_id: str | None = None, v5: bool = False) -> MqttClient:
        """A new device (thing + certificate), connected over TLS with the thing name as
        client id unless `client_id` is given. `client.thing` is the thing name."""
        device = self.provision(thing)
        client = MqttClient(self.server, device.files, client_id or device.thing, v5=v5)
        client.thing = device.thing
        client.client_id = client_id or device.thing
        self.clients.append(client)
        client.connect()
        return client

    def close(self) -> None:
        for client in self.clients:
            try:
                client.close()
            except Exception:
                pass


@pytest.fixture
def devices(rules_iot, rules_server, tmp_path):
    made = Devices(rules_iot, rules_server, tmp_path / "devices")
    yield made
    made.close()


# --------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------


class Rules:
    def __init__(self, iot):
        self.iot = iot
        self.names: list[str] = []

    def create(
        self,
        sql: str,
        actions: list[dict],
        error_action: dict | None = None,
        disabled: bool = False,
        name: str | None = None,
        sql_version: str = "2016-03-23",
        settle: bool = True,
    ) -> str:
        name = name or rule_name()
        payload = {"sql": sql, "actions": actions, "ruleDisabled": disabled, "awsIotSqlVersion": sql_version}
        if error_action is not None:
            payload["errorAction"] = error_action
        self.iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
        self.names.append(name)
        if settle:
            time.sleep(RULE_SETTLE)
        return name

    def cleanup(self) -> None:
        for name in self.names:
            try:
                self.iot.delete_topic_rule(ruleName=name)
            except Exception:
                pass


@pytest.fixture
def rules(rules_iot):
    made = Rules(rules_iot)
    yield made
    made.cleanup()


# action builders (AWS API member names) -------------------------------------------------


def sqs_action(queue_url: str, use_base64: bool = False) -> dict:
    return {"sqs": {"roleArn": ROLE_ARN, "queueUrl": queue_url, "useBase64": use_base64}}


def dynamodbv2_action(table: str) -> dict:
    return {"dynamoDBv2": {"roleArn": ROLE_ARN, "putItem": {"tableName": table}}}


def s3_action(bucket: str, key: str) -> dict:
    return {"s3": {"roleArn": ROLE_ARN, "bucketName": bucket, "key": key}}


def lambda_action(function_arn: str) -> dict:
    return {"lambda": {"functionArn": function_arn}}


def logs_action(group: str, batch: bool | None = None) -> dict:
    body = {"roleArn": ROLE_ARN, "logGroupName": group}
    if batch is not None:
        body["batchMode"] = batch
    return {"cloudwatchLogs": body}


def http_action(url: str, headers: list[dict] | None = None, confirmation_url: str | None = None) -> dict:
    body: dict = {"url": url}
    if headers:
        body["headers"] = headers
    if confirmation_url:
        body["confirmationUrl"] = confirmation_url
    return {"http": body}


def republish_action(topic: str, qos: int = 0) -> dict:
    return {"republish": {"roleArn": ROLE_ARN, "topic": topic, "qos": qos}}


def lambda_arn(name: str) -> str:
    return f"arn:aws:lambda:{MOTO_REGION}:{MOTO_ACCOUNT_ID}:function:{name}"


# --------------------------------------------------------------------------------------
# error action payloads
# --------------------------------------------------------------------------------------

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ERROR_KEYS = {"ruleName", "topic", "cloudwatchTraceId", "clientId", "base64OriginalPayload", "failures"}
FAILURE_KEYS = {"failedAction", "failedResource", "errorMessage"}


def check_error_payload(raw: str | bytes, rule: str, topic: str, client_id: str, original: bytes) -> dict:
    """The error action message AWS documents (DG rule-error-handling), field by field;
    returns it parsed (its `failures` are left to the caller)."""
    report = json.loads(raw)
    assert set(report) == ERROR_KEYS, f"error action message keys {sorted(report)} != {sorted(ERROR_KEYS)}: {report}"
    assert report["ruleName"] == rule, report
    assert report["topic"] == topic, report
    assert report["clientId"] == client_id, report
    assert isinstance(report["cloudwatchTraceId"], str) and UUID_RE.match(report["cloudwatchTraceId"]), report
    assert base64.b64decode(report["base64OriginalPayload"], validate=True) == original, report
    assert isinstance(report["failures"], list) and report["failures"], report
    for failure in report["failures"]:
        assert set(failure) == FAILURE_KEYS, f"failure keys {sorted(failure)}: {failure}"
        assert isinstance(failure["errorMessage"], str) and failure["errorMessage"], failure
    return report


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics_snapshot(server) -> list[tuple[str, dict, float]]:
    """Every sample of GET /metrics as (name, labels, value)."""
    with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        parsed = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(labels or "")}
        samples.append((name, parsed, float(value)))
    return samples


def metric_sum(samples, name: str, **labels) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == str(want) for k, want in labels.items()))


def current(server, name: str, **labels) -> float:
    return metric_sum(metrics_snapshot(server), name, **labels)
