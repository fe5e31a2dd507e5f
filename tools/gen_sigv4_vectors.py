#!/usr/bin/env python3
"""Generate SigV4 test vectors for ferrocore's verifier with botocore's signer.

Writes crates/sigv4/tests/vectors/botocore.json: requests shaped like the ones
AWS IoT clients send (control plane "iot", data plane "iotdata", the MQTT over
WebSocket presign "iotdevicegateway", and STS), each signed by botocore's own
SigV4Auth / SigV4QueryAuth at a frozen clock.

    pip install botocore        # any 1.x; 1.43.11 made the committed file
    python3 tools/gen_sigv4_vectors.py [--check]

--check regenerates in memory and exits non-zero if the committed file differs.

How each vector is made, so it is the client's truth and not ours:
  * the request is built the way botocore's endpoint builds it:
    botocore.awsrequest.prepare_request_dict + create_request_object (the
    query string is percent-encoded by botocore.utils.percent_encode_sequence);
  * the clock is frozen by patching datetime.datetime, as botocore's own test
    suite does (tests.FreezeTime), so add_auth() stamps the date we choose;
  * canonical_request / string_to_sign / signature are captured from the
    signer's own methods *while add_auth() runs* (the instance methods are
    wrapped), so they are exactly what botocore signed;
  * the request is then prepared (AWSRequest.prepare(), which adds
    Content-Length after signing, as botocore does) and the Host header the
    HTTP client adds is put first; WebSocket upgrade headers are added to the
    presigned /mqtt requests after signing, as WebSocket clients do.

Every vector is re-checked here with plain hashlib/hmac: sha256(canonical
request) is the string to sign's last line, the HMAC chain reproduces the
signature, and the signature is the one on the wire.
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import sys
from unittest import mock
from urllib.parse import quote, urlsplit

import botocore
import botocore.auth
from botocore.awsrequest import create_request_object, prepare_request_dict
from botocore.credentials import Credentials

OUT = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..",
    "crates", "sigv4", "tests", "vectors", "botocore.json"))

# Credential pairs. AKIDEXAMPLE is the AWS documentation / test-suite pair;
# test/test is what local-AWS tooling (LocalStack, moto, awslocal) sends.
AKID = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
TEST = ("test", "test")
# The session token of the AWS test suite: has '/', '+' and '=' in it, so it
# exercises query-string encoding when it travels in a presigned URL.
TOKEN = ("AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBu"
         "FqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBm"
         "Upp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAk"
         "iY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KS"
         "YvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==")

SUITE_DATE = datetime.datetime(2015, 8, 30, 12, 36, 0)   # 20150830T123600Z
IOT_DATE = datetime.datetime(2024, 5, 1, 9, 30, 15)      # 20240501T093015Z

REGION = "us-east-1"
IOT_HOST = "iot.us-east-1.amazonaws.com"
ATS_HOST = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"
STS_HOST = "sts.us-east-1.amazonaws.com"
USER_AGENT = "Botocore/1.43.11 ferrocore-sigv4-vectors"  # unsigned (botocore never signs User-Agent)

# Sent by the WebSocket client on the upgrade request, after the URL was
# presigned: present on the wire, absent from SignedHeaders.
WS_HEADERS = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Protocol", "mqtt"),
]

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

# name, service, host, creds, token, date, method, url_path (wire form,
# already percent-encoded as botocore's serializer emits it), query (decoded
# pairs, encoded by botocore), headers, body, presign (None | expires seconds)
CASES = [
    dict(name="iot-create-thing-colon-in-name", service="iot", host=IOT_HOST,
         creds=TEST, date=IOT_DATE, method="POST", path="/things/my%3Athing",
         headers=JSON, body='{"attributePayload": {"attributes": {"model": "x1"}}}'),
    dict(name="iot-list-things-paginated", service="iot", host=IOT_HOST,
         creds=TEST, date=IOT_DATE, method="GET", path="/things",
         query=[("maxResults", "2"), ("nextToken", "abc/def")]),
    dict(name="iot-list-things-unsorted-query", service="iot", host=IOT_HOST,
         creds=AKID, date=SUITE_DATE, method="GET", path="/things",
         query=[("thingTypeName", "sensor"), ("attributeValue", "dark blue/\u00fc~*"),
                ("attributeName", "color"), ("maxResults", "10")]),
    dict(name="iot-update-thing-patch", service="iot", host=IOT_HOST,
         creds=TEST, date=IOT_DATE, method="PATCH", path="/things/my-thing",
         headers=JSON,
         body='{"expectedVersion": 2, "attributePayload": {"attributes": {"color": "red"}, "merge": true}}'),
    dict(name="iot-delete-thing-expected-version", service="iot", host=IOT_HOST,
         creds=TEST, date=IOT_DATE, method="DELETE", path="/things/my-thing",
         query=[("expectedVersion", "3")]),
    dict(name="iot-describe-thing-encoded-space-unicode", service="iot", host=IOT_HOST,
         creds=AKID, date=SUITE_DATE, method="GET",
         path="/things/caf%C3%A9%20%E2%9C%93"),
    dict(name="iot-describe-endpoint-ats", service="iot", host=IOT_HOST,
         creds=AKID, date=SUITE_DATE, method="GET", path="/endpoint",
         query=[("endpointType", "iot:Data-ATS")]),
    dict(name="iot-describe-thing-session-token", service="iot", host=IOT_HOST,
         creds=TEST, token=TOKEN, date=IOT_DATE, method="GET", path="/things/my-thing"),
    dict(name="iotdata-publish-encoded-topic", service="iotdata", host=ATS_HOST,
         creds=TEST, date=IOT_DATE, method="POST", path="/topics/dt%2Fsensor%2F42",
         query=[("qos", "1")], body='{"temp":21.5}'),
    dict(name="iotdata-get-named-shadow", service="iotdata", host=ATS_HOST,
         creds=AKID, date=SUITE_DATE, method="GET", path="/things/my-thing/shadow",
         query=[("name", "config")]),
    dict(name="iotdata-update-shadow-session-token", service="iotdata", host=ATS_HOST,
         creds=AKID, token=TOKEN, date=SUITE_DATE, method="POST",
         path="/things/my-thing/shadow",
         body='{"state": {"reported": {"temp": 21.5}}}'),
    dict(name="sts-get-caller-identity", service="sts", host=STS_HOST,
         creds=TEST, date=IOT_DATE, method="POST", path="/", headers=FORM,
         body="Action=GetCallerIdentity&Version=2011-06-15"),
    dict(name="sts-get-caller-identity-session-token", service="sts", host=STS_HOST,
         creds=AKID, token=TOKEN, date=SUITE_DATE, method="POST", path="/", headers=FORM,
         body="Action=GetCallerIdentity&Version=2011-06-15"),
    # MQTT over WebSocket: the URL is presigned, only host is signed.
    dict(name="iot-wss-presign", service="iotdevicegateway", host=ATS_HOST,
         creds=TEST, date=IOT_DATE, method="GET", path="/mqtt", presign=300),
    dict(name="iot-wss-presign-akid", service="iotdevicegateway", host=ATS_HOST,
         creds=AKID, date=SUITE_DATE, method="GET", path="/mqtt", presign=300),
    # botocore puts the session token in the query *before* signing, so it is
    # part of the canonical query string.
    dict(name="iot-wss-presign-session-token-signed", service="iotdevicegateway",
         host=ATS_HOST, creds=AKID, token=TOKEN, date=SUITE_DATE, method="GET",
         path="/mqtt", presign=300),
    # The AWS IoT device SDKs (and many hand-written clients) sign without the
    # token and append &X-Amz-Security-Token=... *after* X-Amz-Signature, so
    # the token is on the wire but not in the canonical query string.  The
    # signature is still botocore's (presigned without a token).
    dict(name="iot-wss-presign-session-token-appended", service="iotdevicegateway",
         host=ATS_HOST, creds=AKID, token=TOKEN, token_after_signing=True,
         date=SUITE_DATE, method="GET", path="/mqtt", presign=300),
    # AWSIoTPythonSDK (v1) signs the WebSocket URL with service "iotdata" and
    # X-Amz-Expires=86400, token appended after signing.
    dict(name="iot-wss-presign-iotdata-service-token-appended", service="iotdata",
         host=ATS_HOST, creds=TEST, token=TOKEN, token_after_signing=True,
         date=IOT_DATE, method="GET", path="/mqtt", presign=86400),
]


class Frozen:
    """Freeze datetime.datetime.now/utcnow the way botocore's tests.FreezeTime does."""

    def __init__(self, when):
        self.when = when
        self.patcher = mock.patch.object(
            datetime, "datetime", mock.Mock(wraps=datetime.datetime))

    def __enter__(self):
        m = self.patcher.start()
        m.now.return_value = self.when
        m.utcnow.return_value = self.when
        return self

    def __exit__(self, *exc):
        self.patcher.stop()


def capture(signer):
    """Wrap the signer's own methods so add_auth() reports what it computed."""
    seen = {}
    for meth in ("canonical_request", "string_to_sign", "signature"):
        orig = getattr(signer, meth)

        def wrapped(*a, _orig=orig, _meth=meth, **kw):
            out = _orig(*a, **kw)
            seen[_meth] = out
            return out

        setattr(signer, meth, wrapped)
    return seen


def signing_key(secret, date, region, service):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def make_vector(case):
    access_key, secret_key = case["creds"]
    token = case.get("token")
    after = case.get("token_after_signing", False)
    presign = case.get("presign")
    service = case["service"]
    body = case.get("body", "")

    request_dict = {
        "url_path": case["path"],
        "query_string": case.get("query", []),
        "method": case["method"],
        "headers": dict(case.get("headers", {})),
        "body": body.encode("utf-8"),
    }
    if not presign:
        prepare_request_dict(request_dict, f"https://{case['host']}", user_agent=USER_AGENT)
    else:
        prepare_request_dict(request_dict, f"https://{case['host']}")
    request = create_request_object(request_dict)

    creds = Credentials(access_key, secret_key, None if after else token)
    if presign:
        signer = botocore.auth.SigV4QueryAuth(creds, service, REGION, expires=presign)
    else:
        signer = botocore.auth.SigV4Auth(creds, service, REGION)
    seen = capture(signer)
    with Frozen(case["date"]):
        signer.add_auth(request)
    amz_date = case["date"].strftime("%Y%m%dT%H%M%SZ")

    if presign and after:
        request.url += "&X-Amz-Security-Token=" + quote(token, safe="")

    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    assert parts.netloc == case["host"], parts.netloc
    headers = [["Host", parts.netloc]]
    for name, value in prepared.headers.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        headers.append([name, str(value)])
    if presign:
        headers += [list(h) for h in WS_HEADERS]

    # The signature that actually travels.
    if presign:
        q = [p.partition("=") for p in parts.query.split("&")]
        wire_sig = [v for k, _, v in q if k == "X-Amz-Signature"]
        dates = [v for k, _, v in q if k == "X-Amz-Date"]
    else:
        auth = [v for k, v in headers if k.lower() == "authorization"]
        assert len(auth) == 1
        wire_sig = [auth[0].rpartition("Signature=")[2]]
        dates = [v for k, v in headers if k.lower() == "x-amz-date"]
    assert dates == [amz_date], (case["name"], dates)

    # Independent re-check with plain hashlib/hmac.
    creq, sts, sig = seen["canonical_request"], seen["string_to_sign"], seen["signature"]
    scope = f"{amz_date[:8]}/{REGION}/{service}/aws4_request"
    assert sts == "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(creq.encode("utf-8")).hexdigest()]), case["name"]
    mine = hmac.new(signing_key(secret_key, amz_date[:8], REGION, service),
                    sts.encode("utf-8"), hashlib.sha256).hexdigest()
    assert mine == sig == wire_sig[0], (case["name"], mine, sig, wire_sig)
    if token and not after:
        assert "x-amz-security-token" in creq.lower(), case["name"]
    if token and after:
        assert "x-amz-security-token" not in creq.lower(), case["name"]

    return {
        "name": case["name"],
        "method": prepared.method,
        "path": parts.path,
        "query": parts.query,
        "headers": headers,
        "body": body,
        "secret_key": secret_key,
        "access_key": access_key,
        "region": REGION,
        "service": service,
        "signature": sig,
        "canonical_request": creq,
        "string_to_sign": sts,
        "presigned": bool(presign),
    }


def render(vectors):
    return json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="fail if the committed file differs from a fresh run")
    args = ap.parse_args()

    text = render([make_vector(c) for c in CASES])
    if args.check:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{OUT} is stale: rerun tools/gen_sigv4_vectors.py")
        print(f"{OUT} is up to date ({len(CASES)} vectors)")
        return
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {len(CASES)} vectors to {OUT} (botocore {botocore.__version__})")


if __name__ == "__main__":
    main()
