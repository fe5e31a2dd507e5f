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
a small canonicaliser written here (independent of any SDK):

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

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
SERVICE = "service"
AMZ_DATE = "20150830T123600Z"
SCOPE = f"{AMZ_DATE[:8]}/{REGION}/{SERVICE}/aws4_request"

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def uri_encode(data: bytes, keep_slash: bool) -> str:
    out = []
    for b in data:
        if b in UNRESERVED or (keep_slash and b == ord("/")):
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def percent_decode(s: str) -> bytes:
    raw = s.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == ord("%") and i + 2 < len(raw):
            try:
                out.append(int(raw[i + 1:i + 3].decode("ascii"), 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return bytes(out)


def normalize_path(path: str) -> str:
    """RFC 3986 dot-segment removal plus collapsing of empty segments."""
    segs = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if segs:
                segs.pop()
            continue
        segs.append(seg)
    out = "/" + "/".join(segs)
    if path.endswith("/") and segs:
        out += "/"
    return out


def parse_raw_request(text: str):
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    request_line = lines[0]
    method, _, rest = request_line.partition(" ")
    target, _, version = rest.rpartition(" ")
    headers = []  # [name, value] with obs-fold continuation lines joined
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1][1] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        headers.append([name, value])
    return method, target, version, headers, body


def canonicalize(text: str) -> str:
    method, target, _version, headers, body = parse_raw_request(text)
    auth = [v for n, v in headers if n.lower() == "authorization"]
    assert len(auth) == 1, "expected exactly one Authorization header"
    signed = auth[0].split("SignedHeaders=")[1].split(",")[0].strip().split(";")

    path, _, query = target.partition("?")
    canon_path = uri_encode(normalize_path(path).encode("utf-8"), keep_slash=True)

    pairs = []
    if query:
        for part in query.split("&"):
            k, _, v = part.partition("=")
            pairs.append((uri_encode(percent_decode(k), False),
                          uri_encode(percent_decode(v), False)))
    canon_query = "&".join(f"{k}={v}" for k, v in sorted(pairs))

    values = {}
    for name, value in headers:
        lname = name.strip().lower()
        values.setdefault(lname, []).append(" ".join(value.split()))
    canon_headers = "".join(f"{h}:{','.join(values[h])}\n" for h in sorted(signed))

    payload = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return "\n".join([method, canon_path, canon_query, canon_headers,
                      ";".join(sorted(signed)), payload])


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


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
