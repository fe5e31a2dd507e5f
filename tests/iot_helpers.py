"""Shared constants and assertion helpers for the ferrocore integration tests.

Everything here encodes *AWS IoT Core* behaviour (see shared/reference/aws-iot-core.md
section 0), not the behaviour of any particular emulator.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

ACCOUNT_ID = "000000000000"
REGION = "us-east-1"
ACCESS_KEY = "test"
SECRET_KEY = "test"

# HTTP status of each control-plane (`iot`) error code, per the botocore model.
ERROR_STATUS = {
    "InvalidRequestException": 400,
    "ThrottlingException": 400,
    "UnauthorizedException": 401,
    "ResourceNotFoundException": 404,
    "CertificateStateException": 406,
    "ResourceAlreadyExistsException": 409,
    "VersionConflictException": 409,
    "DeleteConflictException": 409,
    "LimitExceededException": 410,
    "InternalFailureException": 500,
    "ServiceUnavailableException": 503,
    # authentication failures, decided before the request reaches the IoT service
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
}

# Every EventType value in the botocore model (DescribeEventConfigurations returns all of them).
EVENT_TYPES = [
    "THING",
    "THING_GROUP",
    "THING_TYPE",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
    "THING_TYPE_ASSOCIATION",
    "JOB",
    "JOB_EXECUTION",
    "POLICY",
    "CERTIFICATE",
    "CA_CERTIFICATE",
]


def unique_name(prefix: str) -> str:
    """A resource name valid for things, types and groups ([a-zA-Z0-9:_-]+), unique per call."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def iot_arn(kind: str, name: str) -> str:
    """ARN of an IoT resource: kind is thing, thingtype, thinggroup, billinggroup, ..."""
    return f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:{kind}/{name}"


def check_aws_error(err: ClientError, code: str, status: int | None = None) -> None:
    """Assert the full AWS error shape: code, HTTP status, x-amzn-ErrorType, request id, message."""
    status = ERROR_STATUS[code] if status is None else status
    response = err.response
    meta = response["ResponseMetadata"]
    headers = meta.get("HTTPHeaders", {})  # botocore lower-cases header names
    summary = f"{err.operation_name} -> {meta.get('HTTPStatusCode')} {response.get('Error')}"
    assert response["Error"]["Code"] == code, summary
    assert meta["HTTPStatusCode"] == status, summary
    # x-amzn-ErrorType may carry a ":<namespace>" suffix that SDKs strip.
    assert headers.get("x-amzn-errortype", "").split(":")[0] == code, f"{summary} headers={headers}"
    assert headers.get("x-amzn-requestid"), f"no x-amzn-RequestId on error response: {headers}"
    assert response["Error"].get("Message"), f"error without a message: {summary}"


@contextmanager
def aws_error(code: str, status: int | None = None):
    """`with aws_error("ResourceNotFoundException"): iot.describe_thing(...)`.

    Yields the pytest ExceptionInfo so callers can look at the message or extra fields.
    """
    with pytest.raises(ClientError) as excinfo:
        yield excinfo
    check_aws_error(excinfo.value, code, status)


def collect_pages(call, result_key: str, **kwargs) -> tuple[list, list[int]]:
    """Follow nextToken until exhausted. Returns (all items, size of each page)."""
    items, sizes, token = [], [], None
    for _ in range(1000):
        page = call(**kwargs, **({"nextToken": token} if token else {}))
        items.extend(page.get(result_key, []))
        sizes.append(len(page.get(result_key, [])))
        token = page.get("nextToken")
        if not token:
            return items, sizes
    raise AssertionError("pagination did not terminate after 1000 pages")


def without_metadata(response: dict) -> dict:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def assert_recent(ts) -> None:
    """A model timestamp (epoch seconds on the wire) parsed by botocore, close to now."""
    assert isinstance(ts, datetime), ts
    now = datetime.now(timezone.utc)
    assert abs(now - ts) < timedelta(minutes=10), f"{ts} is not close to {now}"


def tag_dict(tags: list[dict]) -> dict:
    return {t["Key"]: t.get("Value", "") for t in tags}
