"""Device certificates through boto3: CreateKeysAndCertificate, CreateCertificateFromCsr,
RegisterCertificate[WithoutCA], Describe/List/Update/DeleteCertificate, ListCertificatesByCA.

Expectations are AWS IoT Core's (shared/reference/aws-iot-core.md sections 0, 2.1, 6),
checked against the botocore model. Every test makes its own keys and certificates.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from iot_helpers import ACCOUNT_ID, iot_arn, unique_name
from security_helpers import (
    assert_recent,
    aws_error,
    cert_der,
    cert_id_of,
    collect_marker_pages,
    ec_key,
    issue,
    load_cert,
    make_ca,
    make_csr,
    make_policy,
    policy_document,
    allow,
    public_der,
    register_ca,
    register_without_ca,
    same_second,
    self_signed,
    utcnow,
    with_broken_signature,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def describe(iot, cert_id: str) -> dict:
    return iot.describe_certificate(certificateId=cert_id)["certificateDescription"]


def status_of(iot, cert_id: str) -> str:
    return describe(iot, cert_id)["status"]


def assert_description(desc: dict, cert_id: str, pem: str, status: str, mode: str) -> None:
    """The CertificateDescription fields of reference 2.1."""
    cert = load_cert(pem)
    assert desc["certificateId"] == cert_id
    assert desc["certificateArn"] == iot_arn("cert", cert_id)
    assert desc["status"] == status
    assert cert_der(desc["certificatePem"]) == cert_der(pem)
    assert desc["ownedBy"] == ACCOUNT_ID
    assert_recent(desc["creationDate"])
    assert desc["lastModifiedDate"] >= desc["creationDate"]
    assert isinstance(desc["customerVersion"], int) and desc["customerVersion"] >= 1
    assert isinstance(desc["generationId"], str) and desc["generationId"]
    assert same_second(desc["validity"]["notBefore"], cert.not_valid_before_utc)
    assert same_second(desc["validity"]["notAfter"], cert.not_valid_after_utc)
    assert desc["certificateMode"] == mode


# --------------------------------------------------------------------------------------
# CreateKeysAndCertificate
# --------------------------------------------------------------------------------------


def test_create_keys_and_certificate(iot):
    created = iot.create_keys_and_certificate(setAsActive=True)
    cert_id = created["certificateId"]
    assert HEX64.match(cert_id), cert_id
    # the id is the SHA-256 of the DER certificate, the ARN names it
    assert cert_id == cert_id_of(created["certificatePem"])
    assert created["certificateArn"] == iot_arn("cert", cert_id)

    # an RSA-2048 private key, returned once, that belongs to the certificate
    private_key = serialization.load_pem_private_key(
        created["keyPair"]["PrivateKey"].encode(), password=None
    )
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert private_key.key_size == 2048
    cert = load_cert(created["certificatePem"])
    assert public_der(cert.public_key()) == public_der(private_key.public_key())
    public_key = serialization.load_pem_public_key(created["keyPair"]["PublicKey"].encode())
    assert public_der(public_key) == public_der(private_key.public_key())

    desc = describe(iot, cert_id)
    assert_description(desc, cert_id, created["certificatePem"], "ACTIVE", "DEFAULT")
    assert desc["validity"]["notBefore"] <= utcnow() <= desc["validity"]["notAfter"]


def test_create_keys_and_certificate_is_inactive_unless_set_active(iot):
    explicit = iot.create_keys_and_certificate(setAsActive=False)
    implicit = iot.create_keys_and_certificate()
    assert status_of(iot, explicit["certificateId"]) == "INACTIVE"
    assert status_of(iot, implicit["certificateId"]) == "INACTIVE"


def test_create_keys_and_certificate_makes_a_new_key_every_time(iot):
    first = iot.create_keys_and_certificate(setAsActive=False)
    second = iot.create_keys_and_certificate(setAsActive=False)
    assert first["certificateId"] != second["certificateId"]
    assert first["keyPair"]["PrivateKey"] != second["keyPair"]["PrivateKey"]


# --------------------------------------------------------------------------------------
# CreateCertificateFromCsr
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_kind", ["rsa-2048", "ec-p256"])
def test_create_certificate_from_csr(iot, key_kind):
    # the API reference accepts RSA >= 2048 bits and NIST P-256/384/521 keys
    key = ec_key() if key_kind == "ec-p256" else None
    key, csr = make_csr(key)
    created = iot.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)
    cert_id = created["certificateId"]
    assert cert_id == cert_id_of(created["certificatePem"])
    assert created["certificateArn"] == iot_arn("cert", cert_id)
    # the issued certificate certifies the CSR's key
    cert = load_cert(created["certificatePem"])
    assert public_der(cert.public_key()) == public_der(key.public_key())
    assert_description(describe(iot, cert_id), cert_id, created["certificatePem"], "ACTIVE", "DEFAULT")


def test_create_certificate_from_csr_is_inactive_by_default(iot):
    _, csr = make_csr()
    created = iot.create_certificate_from_csr(certificateSigningRequest=csr)
    assert status_of(iot, created["certificateId"]) == "INACTIVE"


def test_same_csr_twice_gives_two_certificates(iot):
    # API reference: "Reusing the same certificate signing request (CSR) results in a distinct certificate."
    _, csr = make_csr()
    first = iot.create_certificate_from_csr(certificateSigningRequest=csr)
    second = iot.create_certificate_from_csr(certificateSigningRequest=csr)
    assert first["certificateId"] != second["certificateId"]


def test_csr_with_broken_signature_is_refused(iot):
    # CreateCertificateFromCsr models no CertificateValidationException: AWS answers
    # InvalidRequestException for a CSR it cannot accept.
    _, csr = make_csr()
    with aws_error("InvalidRequestException"):
        iot.create_certificate_from_csr(certificateSigningRequest=with_broken_signature(csr))


@pytest.mark.parametrize(
    "csr",
    [
        "not a certificate signing request",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ],
    ids=["garbage", "bad-der"],
)
def test_unparseable_csr_is_refused(iot, csr):
    with aws_error("InvalidRequestException"):
        iot.create_certificate_from_csr(certificateSigningRequest=csr)


# --------------------------------------------------------------------------------------
# RegisterCertificateWithoutCA
# --------------------------------------------------------------------------------------


def test_register_without_ca(iot):
    keycert = self_signed()
    response = iot.register_certificate_without_ca(certificatePem=keycert.pem, status="ACTIVE")
    assert response["certificateId"] == keycert.cert_id
    assert response["certificateArn"] == iot_arn("cert", keycert.cert_id)
    desc = describe(iot, keycert.cert_id)
    # certificates registered without a CA are SNI_ONLY (reference 2.1)
    assert_description(desc, keycert.cert_id, keycert.pem, "ACTIVE", "SNI_ONLY")
    assert not desc.get("caCertificateId")


@pytest.mark.parametrize("status", ["ACTIVE", "INACTIVE", "REVOKED"])
def test_register_without_ca_with_status(iot, status):
    registered = register_without_ca(iot, status=status)
    assert status_of(iot, registered.cert_id) == status


def test_register_without_ca_defaults_to_inactive(iot):
    # [VERIFY] the API reference does not state the default; INACTIVE matches every other
    # creation path (setAsActive defaults to false).
    keycert = self_signed()
    iot.register_certificate_without_ca(certificatePem=keycert.pem)
    assert status_of(iot, keycert.cert_id) == "INACTIVE"


def test_register_without_ca_twice_is_refused(iot):
    registered = register_without_ca(iot)
    with aws_error("ResourceAlreadyExistsException") as excinfo:
        iot.register_certificate_without_ca(certificatePem=registered.pem, status="ACTIVE")
    # the error names the existing certificate (reference section 0)
    assert excinfo.value.response.get("resourceId") == registered.cert_id


def test_register_a_created_certificate_again_is_refused(iot):
    created = iot.create_keys_and_certificate(setAsActive=False)
    with aws_error("ResourceAlreadyExistsException"):
        iot.register_certificate_without_ca(certificatePem=created["certificatePem"], status="ACTIVE")


GARBAGE_PEMS = {
    "text": "this is not a certificate",
    "bad-base64": "-----BEGIN CERTIFICATE-----\n!!!!not base64!!!!\n-----END CERTIFICATE-----\n",
    "bad-der": "-----BEGIN CERTIFICATE-----\nMIIBAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
}


@pytest.mark.parametrize("pem", list(GARBAGE_PEMS.values()), ids=list(GARBAGE_PEMS))
def test_register_without_ca_refuses_garbage(iot, pem):
    with aws_error("CertificateValidationException"):
        iot.register_certificate_without_ca(certificatePem=pem, status="ACTIVE")


def test_register_without_ca_refuses_a_private_key(iot):
    keycert = self_signed()
    with aws_error("CertificateValidationException"):
        iot.register_certificate_without_ca(certificatePem=keycert.key_pem, status="ACTIVE")


def test_register_without_ca_refuses_truncated_pem(iot):
    pem = self_signed().pem
    lines = pem.strip().splitlines()
    truncated = "\n".join(lines[:3] + lines[-1:]) + "\n"
    with aws_error("CertificateValidationException"):
        iot.register_certificate_without_ca(certificatePem=truncated, status="ACTIVE")


def test_register_expired_certificate_is_refused(iot):
    now = utcnow()
    expired = self_signed(not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    with aws_error("CertificateValidationException"):
        iot.register_certificate_without_ca(certificatePem=expired.pem, status="ACTIVE")


# --------------------------------------------------------------------------------------
# RegisterCertificate (issued by a CA registered in the account)
# --------------------------------------------------------------------------------------


def test_register_certificate_with_ca_pem(iot):
    ca = register_ca(iot)
    device = issue(ca.keycert)
    response = iot.register_certificate(
        certificatePem=device.pem, caCertificatePem=ca.pem, setAsActive=True
    )
    assert response["certificateId"] == device.cert_id
    assert response["certificateArn"] == iot_arn("cert", device.cert_id)
    desc = describe(iot, device.cert_id)
    # a DEFAULT-mode CA gives DEFAULT-mode device certificates
    assert_description(desc, device.cert_id, device.pem, "ACTIVE", "DEFAULT")
    assert desc["caCertificateId"] == ca.cert_id


def test_register_certificate_finds_its_ca_without_ca_pem(iot):
    # caCertificatePem is only needed when several registered CAs share a subject
    ca = register_ca(iot)
    device = issue(ca.keycert)
    iot.register_certificate(certificatePem=device.pem, setAsActive=True)
    assert describe(iot, device.cert_id)["caCertificateId"] == ca.cert_id


@pytest.mark.parametrize("status", ["ACTIVE", "INACTIVE", "REVOKED"])
def test_register_certificate_with_status(iot, status):
    ca = register_ca(iot)
    device = issue(ca.keycert)
    iot.register_certificate(certificatePem=device.pem, caCertificatePem=ca.pem, status=status)
    assert status_of(iot, device.cert_id) == status


def test_register_certificate_is_inactive_by_default(iot):
    ca = register_ca(iot)
    device = issue(ca.keycert)
    iot.register_certificate(certificatePem=device.pem, caCertificatePem=ca.pem)
    assert status_of(iot, device.cert_id) == "INACTIVE"


def test_register_certificate_inherits_sni_only_mode(iot):
    ca = make_ca()
    registered = iot.register_ca_certificate(
        caCertificate=ca.pem, certificateMode="SNI_ONLY", setAsActive=True
    )
    device = issue(ca)
    iot.register_certificate(certificatePem=device.pem, caCertificatePem=ca.pem, setAsActive=True)
    desc = describe(iot, device.cert_id)
    assert desc["certificateMode"] == "SNI_ONLY"
    assert desc["caCertificateId"] == registered["certificateId"]


def test_register_certificate_twice_is_refused(iot):
    ca = register_ca(iot)
    device = issue(ca.keycert)
    iot.register_certificate(certificatePem=device.pem, caCertificatePem=ca.pem, setAsActive=True)
    with aws_error("ResourceAlreadyExistsException"):
        iot.register_certificate(certificatePem=device.pem, caCertificatePem=ca.pem, setAsActive=True)


def test_register_certificate_from_unregistered_ca_is_refused(iot):
    unregistered = make_ca()
    device = issue(unregistered)
    with aws_error("CertificateValidationException"):
        iot.register_certificate(certificatePem=device.pem, setAsActive=True)
    with aws_error("CertificateValidationException"):
        iot.register_certificate(
            certificatePem=device.pem, caCertificatePem=unregistered.pem, setAsActive=True
        )


def test_register_certificate_refuses_a_self_signed_certificate(iot):
    with aws_error("CertificateValidationException"):
        iot.register_certificate(certificatePem=self_signed().pem, setAsActive=True)


def test_register_certificate_not_signed_by_the_named_ca_is_refused(iot):
    # claims the registered CA as issuer, but another key signed it
    ca = register_ca(iot)
    forged = issue(ca.keycert, signing_key=make_ca().key)
    with aws_error("CertificateValidationException"):
        iot.register_certificate(certificatePem=forged.pem, caCertificatePem=ca.pem, setAsActive=True)


@pytest.mark.parametrize("pem", list(GARBAGE_PEMS.values()), ids=list(GARBAGE_PEMS))
def test_register_certificate_refuses_garbage(iot, pem):
    with aws_error("CertificateValidationException"):
        iot.register_certificate(certificatePem=pem, setAsActive=True)


def test_register_certificate_refuses_an_expired_certificate(iot):
    ca = register_ca(iot)
    now = utcnow()
    expired = issue(ca.keycert, not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    with aws_error("CertificateValidationException"):
        iot.register_certificate(certificatePem=expired.pem, caCertificatePem=ca.pem, setAsActive=True)


# --------------------------------------------------------------------------------------
# ListCertificates, ListCertificatesByCA
# --------------------------------------------------------------------------------------


def test_list_certificates_pages_with_marker(iot):
    mine = {register_without_ca(iot, status="INACTIVE").cert_id for _ in range(5)}
    items, sizes = collect_marker_pages(iot.list_certificates, "certificates", page_size=2)
    ids = [c["certificateId"] for c in items]
    assert len(ids) == len(set(ids)), "a certificate was listed twice"
    assert mine <= set(ids)
    assert len(sizes) >= 3 and all(size == 2 for size in sizes[:-1]), sizes

    entry = next(c for c in items if c["certificateId"] in mine)
    assert entry["certificateArn"] == iot_arn("cert", entry["certificateId"])
    assert entry["status"] == "INACTIVE"
    assert entry["certificateMode"] == "SNI_ONLY"
    assert_recent(entry["creationDate"])


def test_list_certificates_without_page_size_returns_a_page(iot):
    registered = register_without_ca(iot)
    response = iot.list_certificates()
    # default page size is not documented; the newest certificate must be reachable
    ids = {c["certificateId"] for c in response["certificates"]}
    marker = response.get("nextMarker")
    while registered.cert_id not in ids and marker:
        response = iot.list_certificates(marker=marker)
        ids |= {c["certificateId"] for c in response["certificates"]}
        marker = response.get("nextMarker")
    assert registered.cert_id in ids


def test_list_certificates_by_ca(iot):
    ca = register_ca(iot)
    other_ca = register_ca(iot)
    mine = set()
    for _ in range(3):
        device = issue(ca.keycert)
        iot.register_certificate(certificatePem=device.pem, caCertificatePem=ca.pem, setAsActive=True)
        mine.add(device.cert_id)
    other = issue(other_ca.keycert)
    iot.register_certificate(certificatePem=other.pem, caCertificatePem=other_ca.pem, setAsActive=True)
    register_without_ca(iot)  # not under any CA

    items, sizes = collect_marker_pages(
        iot.list_certificates_by_ca, "certificates", page_size=2, caCertificateId=ca.cert_id
    )
    assert [c["certificateId"] for c in items if c["certificateId"] not in mine] == []
    assert {c["certificateId"] for c in items} == mine
    assert sizes[0] == 2 and sum(sizes) == 3
    assert all(c["status"] == "ACTIVE" for c in items)


# --------------------------------------------------------------------------------------
# UpdateCertificate
# --------------------------------------------------------------------------------------


def test_update_certificate_status_transitions(iot):
    cert_id = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    before = describe(iot, cert_id)
    for status in ["INACTIVE", "ACTIVE", "INACTIVE", "REVOKED"]:
        iot.update_certificate(certificateId=cert_id, newStatus=status)
        assert status_of(iot, cert_id) == status
    after = describe(iot, cert_id)
    assert after["lastModifiedDate"] >= before["lastModifiedDate"]
    assert after["creationDate"] == before["creationDate"]


def test_update_certificate_is_idempotent(iot):
    cert_id = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    iot.update_certificate(certificateId=cert_id, newStatus="ACTIVE")
    iot.update_certificate(certificateId=cert_id, newStatus="ACTIVE")
    assert status_of(iot, cert_id) == "ACTIVE"


def test_revoked_certificate_cannot_be_activated(iot):
    cert_id = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    iot.update_certificate(certificateId=cert_id, newStatus="REVOKED")
    with aws_error("CertificateStateException"):
        iot.update_certificate(certificateId=cert_id, newStatus="ACTIVE")
    assert status_of(iot, cert_id) == "REVOKED"


@pytest.mark.parametrize("target", ["PENDING_TRANSFER", "PENDING_ACTIVATION"])
def test_internal_statuses_are_refused_as_update_targets(iot, target):
    # API reference: setting these "will result in an exception being thrown" (internal
    # states). [VERIFY] the exception type is not documented; InvalidRequestException chosen.
    cert_id = iot.create_keys_and_certificate(setAsActive=False)["certificateId"]
    with aws_error("InvalidRequestException"):
        iot.update_certificate(certificateId=cert_id, newStatus=target)
    assert status_of(iot, cert_id) == "INACTIVE"


def test_update_unknown_certificate(iot):
    with aws_error("ResourceNotFoundException"):
        iot.update_certificate(certificateId="0" * 64, newStatus="INACTIVE")


# --------------------------------------------------------------------------------------
# DescribeCertificate / DeleteCertificate
# --------------------------------------------------------------------------------------


def test_describe_unknown_certificate(iot):
    with aws_error("ResourceNotFoundException"):
        iot.describe_certificate(certificateId="0" * 64)


def test_delete_active_certificate_is_refused(iot):
    cert_id = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    with aws_error("CertificateStateException", 406):
        iot.delete_certificate(certificateId=cert_id)
    assert status_of(iot, cert_id) == "ACTIVE"


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_delete_certificate(iot, status):
    registered = register_without_ca(iot, status=status)
    iot.delete_certificate(certificateId=registered.cert_id)
    with aws_error("ResourceNotFoundException"):
        iot.describe_certificate(certificateId=registered.cert_id)
    items, _ = collect_marker_pages(iot.list_certificates, "certificates", page_size=250)
    assert registered.cert_id not in {c["certificateId"] for c in items}
    # the same certificate can be registered again after deletion
    iot.register_certificate_without_ca(certificatePem=registered.pem, status="INACTIVE")
    assert status_of(iot, registered.cert_id) == "INACTIVE"


def test_delete_certificate_with_policy_needs_force(iot):
    registered = register_without_ca(iot, status="INACTIVE")
    policy, _ = make_policy(iot, policy_document(allow("iot:Connect", "*")))
    iot.attach_policy(policyName=policy, target=registered.arn)

    with aws_error("DeleteConflictException", 409):
        iot.delete_certificate(certificateId=registered.cert_id)
    assert status_of(iot, registered.cert_id) == "INACTIVE"

    iot.delete_certificate(certificateId=registered.cert_id, forceDelete=True)
    with aws_error("ResourceNotFoundException"):
        iot.describe_certificate(certificateId=registered.cert_id)
    # the deleted certificate is no longer a target of the policy
    targets, _ = collect_marker_pages(
        iot.list_targets_for_policy, "targets", page_size=250, policyName=policy
    )
    assert registered.arn not in targets


def test_delete_certificate_attached_to_a_thing_is_refused_even_with_force(iot):
    registered = register_without_ca(iot, status="INACTIVE")
    thing = unique_name("thing")
    iot.create_thing(thingName=thing)
    iot.attach_thing_principal(thingName=thing, principal=registered.arn)

    with aws_error("DeleteConflictException", 409):
        iot.delete_certificate(certificateId=registered.cert_id)
    with aws_error("DeleteConflictException", 409):
        iot.delete_certificate(certificateId=registered.cert_id, forceDelete=True)
    assert status_of(iot, registered.cert_id) == "INACTIVE"

    iot.detach_thing_principal(thingName=thing, principal=registered.arn)
    iot.delete_certificate(certificateId=registered.cert_id)
    with aws_error("ResourceNotFoundException"):
        iot.describe_certificate(certificateId=registered.cert_id)


def test_delete_unknown_certificate(iot):
    with aws_error("ResourceNotFoundException"):
        iot.delete_certificate(certificateId="0" * 64)
