"""Shared helpers for the device identity and permission tests (certificates, CA
certificates, policies, attachments, TestAuthorization, the device CLI).

Keys and certificates are made locally with the `cryptography` package (the way a device
maker or Terraform's tls provider would make them); `openssl` is used where a test wants to
check a result the way a user would (`openssl verify`, key/certificate match).

Everything asserted through these helpers is AWS IoT Core behaviour (reference sections
0, 2, 3, 6, 8), not any emulator's.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iot_helpers import ACCESS_KEY, ACCOUNT_ID, ERROR_STATUS, REGION, SECRET_KEY, iot_arn, unique_name
from iot_helpers import aws_error as _aws_error

# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------

# iot_helpers.ERROR_STATUS covers the registry; the security operations add these
# (HTTP status per the botocore model, reference section 0).
SECURITY_ERROR_STATUS = {
    **ERROR_STATUS,
    "CertificateValidationException": 400,
    "RegistrationCodeValidationException": 400,
    "MalformedPolicyException": 400,
    "VersionsLimitExceededException": 409,
    "CertificateConflictException": 409,
}


@contextmanager
def aws_error(code: str, status: int | None = None):
    """iot_helpers.aws_error with the status table extended for the security operations."""
    with _aws_error(code, SECURITY_ERROR_STATUS[code] if status is None else status) as excinfo:
        yield excinfo


def unvalidated_client(server, service: str = "iot"):
    """A client that sends out-of-range values botocore would refuse locally
    (e.g. credentialDurationSeconds below the model minimum), so the *server* must refuse them."""
    return boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    ).client(
        service,
        endpoint_url=server.endpoint,
        config=Config(
            retries={"total_max_attempts": 1},
            parameter_validation=False,
            connect_timeout=5,
            read_timeout=30,
        ),
    )


# --------------------------------------------------------------------------------------
# paging (marker / pageSize operations, reference section 0)
# --------------------------------------------------------------------------------------


def collect_marker_pages(call, result_key: str, page_size: int, **kwargs):
    """Follow nextMarker until exhausted. Returns (all items, size of each page).

    Asserts that no page is larger than page_size and that the paging terminates.
    """
    items, sizes, marker = [], [], None
    for _ in range(1000):
        page = call(pageSize=page_size, **kwargs, **({"marker": marker} if marker else {}))
        got = page.get(result_key, [])
        assert len(got) <= page_size, f"page of {len(got)} items for pageSize={page_size}"
        items.extend(got)
        sizes.append(len(got))
        marker = page.get("nextMarker")
        if not marker:
            return items, sizes
    raise AssertionError("marker paging did not terminate after 1000 pages")


# --------------------------------------------------------------------------------------
# timestamps
# --------------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def assert_recent(ts, minutes: int = 10) -> None:
    assert isinstance(ts, datetime), ts
    now = utcnow()
    assert abs(now - ts) < timedelta(minutes=minutes), f"{ts} is not close to {now}"


def same_second(a: datetime, b: datetime) -> bool:
    return abs(a.replace(microsecond=0) - b.replace(microsecond=0)) <= timedelta(seconds=1)


# --------------------------------------------------------------------------------------
# keys and certificates
# --------------------------------------------------------------------------------------


def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def public_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def cert_der(pem: str) -> bytes:
    return load_cert(pem).public_bytes(serialization.Encoding.DER)


def cert_id_of(pem: str) -> str:
    """AWS certificate id: hex SHA-256 of the DER certificate (reference 2.1)."""
    return hashlib.sha256(cert_der(pem)).hexdigest()


@dataclass
class KeyCert:
    """A private key and the certificate for it."""

    key: object
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return key_pem(self.key)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def cert_id(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def subject_cn(self) -> str:
        return self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write <stem>.pem and <stem>.key; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, k_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_text(self.pem)
        k_path.write_text(self.key_pem)
        k_path.chmod(0o600)
        return cert_path, k_path


def _name(cn: str, organization: str | None = None) -> x509.Name:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def build_cert(
    cn: str,
    *,
    key=None,
    issuer: KeyCert | None = None,
    is_ca: bool = False,
    organization: str | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    days: int = 10,
    signing_key=None,
) -> KeyCert:
    """A certificate for `key` (new RSA-2048 if None), self-signed unless `issuer` is given.

    `signing_key` overrides the key that signs (to forge a certificate that claims an
    issuer whose key did not sign it).
    """
    key = key or rsa_key()
    subject = _name(cn, organization)
    not_before = not_before or (utcnow() - timedelta(minutes=5))
    not_after = not_after or (not_before + timedelta(days=days))
    issuer_name = issuer.cert.subject if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    signer = signing_key or (issuer.key if issuer else key)
    return KeyCert(key, builder.sign(signer, hashes.SHA256()))


def self_signed(cn: str | None = None, **kwargs) -> KeyCert:
    """A self-signed device certificate (as tls_self_signed_cert in the seeds)."""
    return build_cert(cn or unique_name("device"), **kwargs)


def make_ca(cn: str | None = None, **kwargs) -> KeyCert:
    """A self-signed CA certificate (basicConstraints CA:TRUE, keyCertSign)."""
    return build_cert(cn or unique_name("test-ca"), is_ca=True, organization="CA test signer", **kwargs)


def issue(ca: KeyCert, cn: str | None = None, **kwargs) -> KeyCert:
    """A device certificate signed by `ca` (as tls_locally_signed_cert in seed 001)."""
    return build_cert(cn or unique_name("device"), issuer=ca, organization="CA test", **kwargs)


def verification_cert(ca: KeyCert, registration_code: str, signing_key=None) -> KeyCert:
    """The private-key verification certificate for RegisterCACertificate: CN is the
    registration code, signed by the CA's key (reference 2.2)."""
    return build_cert(registration_code, issuer=ca, signing_key=signing_key)


def make_csr(key=None, cn: str | None = None) -> tuple[object, str]:
    key = key or rsa_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(cn or unique_name("csr"), "test"))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def with_broken_signature(csr_pem: str) -> str:
    """The same CSR with one bit of its signature flipped: well-formed, but the signature
    does not verify."""
    der = bytearray(x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-10] ^= 0x01  # the signature BIT STRING is the last element of the DER
    broken = x509.load_der_x509_csr(bytes(der))
    assert not broken.is_signature_valid, "flipping a bit did not break the CSR signature"
    return broken.public_bytes(serialization.Encoding.PEM).decode()


# --------------------------------------------------------------------------------------
# openssl (what a user would run)
# --------------------------------------------------------------------------------------


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.skip("openssl is not on PATH")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(
            f"openssl {' '.join(args)} exited {result.returncode}\n{result.stdout}{result.stderr}"
        )
    return result


def openssl_verify(ca_file: Path, cert_file: Path) -> subprocess.CompletedProcess:
    """`openssl verify -CAfile ca cert`, as in seed 001; returns the (checked) result."""
    result = openssl("verify", "-CAfile", str(ca_file), str(cert_file), check=False)
    assert result.returncode == 0 and "OK" in result.stdout, (
        f"openssl verify failed: {result.stdout}{result.stderr}"
    )
    return result


def public_key_of_cert_file(path: Path) -> str:
    return openssl("x509", "-in", str(path), "-noout", "-pubkey").stdout.strip()


def public_key_of_key_file(path: Path) -> str:
    return openssl("pkey", "-in", str(path), "-pubout").stdout.strip()


# --------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------


def data_arn(kind: str, rest: str) -> str:
    """Data-plane resource ARN: kind is client, topic or topicfilter (reference 3.2)."""
    return f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:{kind}/{rest}"


def statement(effect: str, actions, resources, condition: dict | None = None) -> dict:
    s = {"Effect": effect, "Action": actions, "Resource": resources}
    if condition:
        s["Condition"] = condition
    return s


def allow(actions, resources, condition: dict | None = None) -> dict:
    return statement("Allow", actions, resources, condition)


def deny(actions, resources, condition: dict | None = None) -> dict:
    return statement("Deny", actions, resources, condition)


def policy_document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def walled_garden_document(region: str = REGION, account: str = ACCOUNT_ID) -> str:
    """The "walled garden" policy of seed 000: connect as the thing, publish/receive and
    subscribe only under the thing's own $aws/things/<thing>/ topics."""
    prefix = f"arn:aws:iot:{region}:{account}"
    thing = "${iot:Connection.Thing.ThingName}"
    return policy_document(
        allow(["iot:Connect"], f"{prefix}:client/{thing}"),
        allow(["iot:Publish", "iot:Receive"], f"{prefix}:topic/$aws/things/{thing}/*"),
        allow(["iot:Subscribe"], f"{prefix}:topicfilter/$aws/things/{thing}/*"),
    )


def make_policy(iot, document: str, name: str | None = None) -> tuple[str, str]:
    """CreatePolicy; returns (name, arn)."""
    name = name or unique_name("policy")
    response = iot.create_policy(policyName=name, policyDocument=document)
    return name, response["policyArn"]


def significant_length(document: str) -> int:
    """Characters that count against the 2048 limit: everything but whitespace (reference 3.5)."""
    return len(re.sub(r"\s", "", document))


# --------------------------------------------------------------------------------------
# registered certificates and devices
# --------------------------------------------------------------------------------------


def registration_code(iot) -> str:
    return iot.get_registration_code()["registrationCode"]


@dataclass
class Registered:
    """A certificate registered in the account."""

    keycert: KeyCert
    cert_id: str
    arn: str

    @property
    def pem(self) -> str:
        return self.keycert.pem


def register_without_ca(iot, keycert: KeyCert | None = None, status: str = "ACTIVE") -> Registered:
    """RegisterCertificateWithoutCA of a self-signed certificate (new one if None)."""
    keycert = keycert or self_signed()
    response = iot.register_certificate_without_ca(certificatePem=keycert.pem, status=status)
    return Registered(keycert, response["certificateId"], response["certificateArn"])


def register_ca(
    iot, ca: KeyCert | None = None, *, active: bool = True, auto_registration: bool = False, **kwargs
) -> Registered:
    """RegisterCACertificate in DEFAULT mode with a proper verification certificate."""
    ca = ca or make_ca()
    verification = verification_cert(ca, registration_code(iot))
    response = iot.register_ca_certificate(
        caCertificate=ca.pem,
        verificationCertificate=verification.pem,
        setAsActive=active,
        allowAutoRegistration=auto_registration,
        **kwargs,
    )
    return Registered(ca, response["certificateId"], response["certificateArn"])


@dataclass
class Device:
    """A thing with a registered, ACTIVE certificate attached to it."""

    thing: str
    cert: Registered

    @property
    def cert_arn(self) -> str:
        return self.cert.arn

    @property
    def cert_id(self) -> str:
        return self.cert.cert_id


def make_device(
    iot,
    thing: str | None = None,
    *,
    principal_type: str | None = None,
    cn: str | None = None,
    create_thing: dict | None = None,
) -> Device:
    """CreateThing (kwargs in create_thing), a self-signed certificate registered ACTIVE
    (subject CN `cn`), and AttachThingPrincipal (thingPrincipalType if given)."""
    thing = thing or unique_name("thing")
    iot.create_thing(thingName=thing, **(create_thing or {}))
    registered = register_without_ca(iot, self_signed(cn))
    attach = {"thingPrincipalType": principal_type} if principal_type else {}
    iot.attach_thing_principal(thingName=thing, principal=registered.arn, **attach)
    return Device(thing, registered)


def cert_arn(cert_id: str) -> str:
    return iot_arn("cert", cert_id)


# --------------------------------------------------------------------------------------
# TestAuthorization
# --------------------------------------------------------------------------------------


def authorize(iot, principal: str, action: str, resource: str, client_id: str | None = None, **kwargs) -> dict:
    """One TestAuthorization authInfo; returns its authResult."""
    request = {
        "principal": principal,
        "authInfos": [{"actionType": action, "resources": [resource]}],
        **kwargs,
    }
    if client_id is not None:
        request["clientId"] = client_id
    results = iot.test_authorization(**request)["authResults"]
    assert len(results) == 1, results
    return results[0]


def decision(iot, principal: str, action: str, resource: str, client_id: str | None = None, **kwargs) -> str:
    return authorize(iot, principal, action, resource, client_id, **kwargs)["authDecision"]


def assert_walled_garden(iot, cert_arn: str, thing: str) -> None:
    """The walled garden of seed 000 seen through TestAuthorization for a certificate attached
    to `thing`: it may connect as its thing and publish to its own shadow, nothing else."""
    checks = [
        ("CONNECT", data_arn("client", thing), thing, "ALLOWED"),
        ("CONNECT", data_arn("client", "intruder"), "intruder", "IMPLICIT_DENY"),
        ("PUBLISH", data_arn("topic", f"$aws/things/{thing}/shadow/update"), thing, "ALLOWED"),
        ("PUBLISH", data_arn("topic", "$aws/things/someone-else/shadow/update"), thing, "IMPLICIT_DENY"),
    ]
    for action, resource, client_id, want in checks:
        got = decision(iot, cert_arn, action, resource, client_id=client_id)
        assert got == want, f"{action} {resource} as client {client_id}: {got}, want {want}"


def policy_names(policies: list[dict] | None) -> set[str]:
    return {p["policyName"] for p in policies or []}


def short_id() -> str:
    return uuid.uuid4().hex[:10]
