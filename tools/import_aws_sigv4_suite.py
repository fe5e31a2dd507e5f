#!/usr/bin/env python3
"""Import the AWS SigV4 test suite into crates/sigv4/tests/vectors/aws-suite.json.

The suite (aws-sig-v4-test-suite, as published by AWS in awslabs/aws-c-auth
v0.3.15 and vendored by botocore under tests/unit/auth/aws4_testsuite) is a
tree of directories, one per case, each holding:

    NAME.req    the raw request            NAME.sts    the string to sign
    NAME.creq   the canonical request      NAME.authz  the Authorization value
    NAME.sreq   the signed request

Usage:
    pip download --no-deps --no-binary :all: botocore==1.43.11 -d /tmp/bc
    tar xzf /tmp/bc/botocore-1.43.11.tar.gz -C /tmp/bc
    python3 tools/import_aws_sigv4_suite.py \
        /tmp/bc/botocore-1.43.11/tests/unit/auth/aws4_testsuite

Every case is checked before it is written, with nothing but hashlib/hmac and
the small canonicaliser of tools/check_sigv4_vectors.py (independent of any SDK):

  1. canonicalising the .sreq text reproduces the .creq byte for byte;
  2. the .sts is AWS4-HMAC-SHA256 / date / scope / hex(sha256(.creq));
  3. the HMAC chain over the .sts gives the signature in the .authz;
  4. the .sreq carries exactly the .authz as its Authorization header.

A case failing any check is dropped (and reported on stderr).
"""

import hashlib
import hmac
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_sigv4_vectors import (  # noqa: E402  (the one canonicaliser, shared)
    canonical_request,
    parse_raw_request,
    signing_key,
    split_query,
)

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
SERVICE = "service"
AMZ_DATE = "20150830T123600Z"
SCOPE = f"{AMZ_DATE[:8]}/{REGION}/{SERVICE}/aws4_request"

def canonicalize(text: str) -> str:
    """The canonical request of a raw signed request (.sreq), from what is on the wire."""
    method, path, query, headers, body = parse_raw_request(text)
    auth = [v for n, v in headers if n.lower() == "authorization"]
    assert len(auth) == 1, "expected exactly one Authorization header"
    signed = auth[0].split("SignedHeaders=")[1].split(",")[0].strip().split(";")
    payload = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return canonical_request(method, path, split_query(query), headers, signed, payload)


def read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8").replace("\r\n", "\n")


def check_case(d: str, name: str):
    f = lambda ext: read(os.path.join(d, f"{name}.{ext}"))
    req, creq, sts, authz, sreq = (f(e) for e in ("req", "creq", "sts", "authz", "sreq"))
    problems = []

    if canonicalize(sreq) != creq:
        problems.append("canonicalising .sreq does not give .creq:\n"
                        + repr(canonicalize(sreq)) + "\n" + repr(creq))
    want_sts = "\n".join(["AWS4-HMAC-SHA256", AMZ_DATE, SCOPE,
                          hashlib.sha256(creq.encode()).hexdigest()])
    if sts != want_sts:
        problems.append(".sts is not AWS4-HMAC-SHA256/date/scope/sha256(.creq)")
    sig = hmac.new(signing_key(SECRET_KEY, AMZ_DATE[:8], REGION, SERVICE),
                   sts.encode(), hashlib.sha256).hexdigest()
    signed = authz.split("SignedHeaders=")[1].split(",")[0]
    want_authz = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{SCOPE}, "
                  f"SignedHeaders={signed}, Signature={sig}")
    if authz != want_authz:
        problems.append(f".authz signature differs from the recomputed {sig}")
    _, _, _, headers, _ = parse_raw_request(sreq)
    sreq_auth = [v.strip() for n, v in headers if n.lower() == "authorization"]
    if sreq_auth != [authz]:
        problems.append(".sreq Authorization header differs from .authz")
    return problems, {
        "name": name,
        "signed_request": sreq,
        "canonical_request": creq,
        "string_to_sign": sts,
        "signature": sig,
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                            "crates", "sigv4", "tests", "vectors", "aws-suite.json")
    vectors, dropped = [], []
    for dirpath, _dirs, files in sorted(os.walk(root)):
        name = os.path.basename(dirpath)
        if f"{name}.req" not in files:
            continue
        problems, vec = check_case(dirpath, name)
        if problems:
            dropped.append(name)
            print(f"DROP {os.path.relpath(dirpath, root)}:", *problems, sep="\n  ")
        else:
            vectors.append(vec)
    vectors.sort(key=lambda v: v["name"])
    with open(os.path.normpath(out_path), "w", encoding="utf-8") as f:
        json.dump(vectors, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors to {os.path.normpath(out_path)}; "
          f"dropped {len(dropped)}: {', '.join(dropped) or '-'}")


if __name__ == "__main__":
    main()
