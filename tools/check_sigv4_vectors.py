#!/usr/bin/env python3
"""Reference SigV4 *verifier* (stdlib only) run over the vector files.

    python3 tools/check_sigv4_vectors.py

For every vector in crates/sigv4/tests/vectors/{aws-suite,botocore}.json it
rebuilds the canonical request from what is on the wire alone (method, raw
path, raw query, headers, body, and the SignedHeaders list the client sent),
then checks it against the recorded canonical_request, string_to_sign and
signature.  It also checks that tampering with a signed part (body, a signed
header, the path) is rejected and that tampering with an unsigned header is
not.  It is the executable form of the rules the Rust verifier has to follow:

  path    : taken as sent (NOT percent-decoded), dot segments removed and
            empty segments collapsed (non-S3 services), then every byte but
            A-Z a-z 0-9 - _ . ~ and '/' percent-encoded with upper-case hex.
            A path sent as /things/my%3Athing therefore canonicalises to
            /things/my%253Athing ("double encoding").
  query   : split on '&', each pair on the first '='; name and value are
            percent-decoded then re-encoded (unreserved kept, upper-case hex);
            a bare "key" becomes "key="; pairs sorted by encoded name, then
            encoded value (byte order).  Presigned: X-Amz-Signature is left
            out; X-Amz-Security-Token is left out too when the client added
            it after signing (tried both ways, see README).
  headers : names lower-cased; values trimmed, runs of whitespace (including
            obs-fold line continuations) collapsed to one space; repeated
            headers joined with ',' in the order sent; only the names in
            SignedHeaders, sorted.
  payload : hex sha256 of the body (the empty body's hash for presigned URLs
            of non-S3 services).
"""

import hashlib
import hmac
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "crates", "sigv4", "tests", "vectors")

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")

SUITE_CREDS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def uri_encode(data: bytes, keep_slash: bool) -> str:
    return "".join(
        chr(b) if b in UNRESERVED or (keep_slash and b == 0x2F) else "%%%02X" % b
        for b in data)


def percent_decode(s: str) -> bytes:
    raw, out, i = s.encode("utf-8"), bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw):
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


def canonical_query(pairs):
    enc = sorted((uri_encode(percent_decode(k), False), uri_encode(percent_decode(v), False))
                 for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in enc)


def canonical_request(method, path, query_pairs, headers, signed, payload_hash):
    values = {}
    for name, value in headers:
        values.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    missing = [h for h in signed if h not in values]
    if missing:
        raise ValueError(f"signed header(s) not sent: {missing}")
    canon_headers = "".join(f"{h}:{','.join(values[h])}\n" for h in sorted(signed))
    return "\n".join([
        method,
        uri_encode(normalize_path(path).encode("utf-8"), keep_slash=True),
        canonical_query(query_pairs),
        canon_headers,
        ";".join(sorted(signed)),
        payload_hash,
    ])


def split_query(query):
    return [tuple(p.partition("=")[::2]) for p in query.split("&")] if query else []


def parse_raw_request(text):
    """The suite's .sreq: request line, headers (obs-fold allowed), blank line, body."""
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    method, _, rest = lines[0].partition(" ")
    target, _, _version = rest.rpartition(" ")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1][1] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        headers.append([name, value])
    path, _, query = target.partition("?")
    return method, path, query, headers, body


def parse_authorization(value):
    algo, _, rest = value.strip().partition(" ")
    fields = dict(p.strip().split("=", 1) for p in rest.split(","))
    cred = fields["Credential"].split("/")
    return algo, cred, fields["SignedHeaders"].split(";"), fields["Signature"]


def signing_key(secret, date, region, service):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def verify(method, path, query, headers, body, secrets):
    """Return (canonical_request, string_to_sign, signature) if the request verifies."""
    pairs = split_query(query)
    qmap = {k: v for k, v in pairs}
    if "X-Amz-Signature" in qmap:
        cred = percent_decode(qmap["X-Amz-Credential"]).decode().split("/")
        signed = percent_decode(qmap["X-Amz-SignedHeaders"]).decode().split(";")
        given = qmap["X-Amz-Signature"]
        amz_date = qmap["X-Amz-Date"]
        rest = [p for p in pairs if p[0] != "X-Amz-Signature"]
        candidates = [rest]
        if "X-Amz-Security-Token" in qmap:
            candidates.append([p for p in rest if p[0] != "X-Amz-Security-Token"])
    else:
        auth = [v for n, v in headers if n.lower() == "authorization"]
        if len(auth) != 1:
            raise ValueError("no single Authorization header")
        algo, cred, signed, given = parse_authorization(auth[0])
        assert algo == "AWS4-HMAC-SHA256"
        amz_date = [v.strip() for n, v in headers if n.lower() == "x-amz-date"][0]
        candidates = [pairs]
    access_key, date, region, service, terminator = cred
    assert terminator == "aws4_request" and date == amz_date[:8]
    key = signing_key(secrets[access_key], date, region, service)
    payload = hashlib.sha256(body.encode("utf-8")).hexdigest()
    for cand in candidates:
        creq = canonical_request(method, path, cand, headers, signed, payload)
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{date}/{region}/{service}/aws4_request",
                         hashlib.sha256(creq.encode("utf-8")).hexdigest()])
        sig = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
        if hmac.compare_digest(sig, given):
            return creq, sts, sig
    raise ValueError("signature mismatch")


def rejects(*args):
    try:
        verify(*args)
    except (ValueError, KeyError, IndexError):
        return True
    return False


def check(name, method, path, query, headers, body, secrets, want):
    creq, sts, sig = verify(method, path, query, headers, body, secrets)
    assert (creq, sts, sig) == (want["canonical_request"], want["string_to_sign"],
                                want["signature"]), f"{name}: verified, but not to the recorded values"
    signed = creq.split("\n")[-2].split(";")
    # Negative checks: a changed body / signed header / path must fail ...
    assert rejects(method, path, query, headers, body + "x", secrets), f"{name}: body tamper accepted"
    assert rejects(method, path + "x", query, headers, body, secrets), f"{name}: path tamper accepted"
    if query:
        k, _, v = query.partition("&")[0].partition("=")
        q2 = f"{k}={v}x" + query[len(query.partition("&")[0]):]
        assert rejects(method, path, q2, headers, body, secrets), f"{name}: query tamper accepted"
    for i, (n, v) in enumerate(headers):
        t = [list(h) for h in headers]
        t[i][1] = v + "x"
        if n.strip().lower() in ("authorization",):
            continue
        if n.strip().lower() in signed:
            assert rejects(method, path, query, t, body, secrets), f"{name}: {n} tamper accepted"
        else:  # ... while an unsigned header may change freely.
            assert not rejects(method, path, query, t, body, secrets), f"{name}: unsigned {n} rejected"


def main():
    total = 0
    with open(os.path.join(VECTORS, "aws-suite.json"), encoding="utf-8") as f:
        for v in json.load(f):
            m, p, q, h, b = parse_raw_request(v["signed_request"])
            check(v["name"], m, p, q, h, b, SUITE_CREDS, v)
            total += 1
    with open(os.path.join(VECTORS, "botocore.json"), encoding="utf-8") as f:
        for v in json.load(f):
            check(v["name"], v["method"], v["path"], v["query"], v["headers"], v["body"],
                  {v["access_key"]: v["secret_key"]}, v)
            total += 1
    print(f"{total} passed, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
