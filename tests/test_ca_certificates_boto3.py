"""CA certificates and the registration code through boto3: GetRegistrationCode,
DeleteRegistrationCode, RegisterCACertificate, Describe/List/Update/DeleteCACertificate.

Expectations are AWS IoT Core's (shared/reference/aws-iot-core.md sections 0, 2.2, 6).
"""

from __future__ import annotations

import re

import pytest

from iot_helpers import ACCOUNT_ID, iot_arn
from security_helpers import (
    assert_recent,
    aws_error,
    cert_der,
    collect_marker_pages,
    issue,
    load_cert,
    make_ca,
    register_ca,
    registration_code,
    same_second,
    self_signed,
    verification_cert,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/jitp-provisioning"
TEMPLATE_BODY = '{"Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Ref":"AWS::IoT::Certificate::CommonName"}}}}}'


def describe_ca(iot, ca_id: str) -> dict:
    return iot.describe_ca_certificate(certificateId=ca_id)


# --------------------------------------------------------------------------------------
# registration code
# --------------------------------------------------------------------------------------


def test_registration_code_is_stable(iot):
    first = registration_code(iot)
    assert first and first == registration_code(iot) == registration_code(iot)
    # the code must fit a certificate subject CN (ub-common-name is 64 characters)
    assert len(first) <= 64


@pytest.mark.restart
def test_registration_code_survives_a_restart(server, client_factory):
    before = registration_code(client_factory("iot"))
    server.restart()
    assert registration_code(client_factory("iot")) == before


def test_delete_registration_code_rotates_it(iot):
    old = registration_code(iot)
    iot.delete_registration_code()
    new = registration_code(iot)
    assert new and new != old
    assert registration_code(iot) == new

    # a verification certificate made for the old code no longer proves anything
    ca = make_ca()
    with aws_error("RegistrationCodeValidationException"):
        iot.register_ca_certificate(
            caCertificate=ca.pem, verificationCertificate=verification_cert(ca, old).pem
        )
    # one made for the new code does
    iot.register_ca_certificate(caCertificate=ca.pem, verificationCertificate=verification_cert(ca, new).pem)


# --------------------------------------------------------------------------------------
# RegisterCACertificate
# --------------------------------------------------------------------------------------


def test_register_ca_certificate(iot):
    ca = make_ca()
    verification = verification_cert(ca, registration_code(iot))
    response = iot.register_ca_certificate(
        caCertificate=ca.pem,
        verificationCertificate=verification.pem,
        setAsActive=True,
        allowAutoRegistration=True,
    )
    ca_id = response["certificateId"]
    assert HEX64.match(ca_id), ca_id
    assert response["certificateArn"] == iot_arn("cacert", ca_id)

    desc = describe_ca(iot, ca_id)["certificateDescription"]
    assert desc["certificateId"] == ca_id
    assert desc["certificateArn"] == iot_arn("cacert", ca_id)
    assert desc["status"] == "ACTIVE"
    assert desc["autoRegistrationStatus"] == "ENABLE"
    assert desc["certificateMode"] == "DEFAULT"
    assert desc["ownedBy"] == ACCOUNT_ID
    assert cert_der(desc["certificatePem"]) == ca.der
    assert_recent(desc["creationDate"])
    assert desc["lastModifiedDate"] >= desc["creationDate"]
    assert isinstance(desc["customerVersion"], int) and desc["customerVersion"] >= 1
    assert isinstance(desc["generationId"], str) and desc["generationId"]
    cert = load_cert(ca.pem)
    assert same_second(desc["validity"]["notBefore"], cert.not_valid_before_utc)
    assert same_second(desc["validity"]["notAfter"], cert.not_valid_after_utc)


def test_register_ca_certificate_defaults_to_inactive_without_auto_registration(iot):
    ca = make_ca()
    registered = iot.register_ca_certificate(
        caCertificate=ca.pem,
        verificationCertificate=verification_cert(ca, registration_code(iot)).pem,
    )
    desc = describe_ca(iot, registered["certificateId"])["certificateDescription"]
    assert desc["status"] == "INACTIVE"
    assert desc["autoRegistrationStatus"] == "DISABLE"


def test_register_ca_certificate_with_registration_config(iot):
    ca = register_ca(
        iot, registrationConfig={"templateBody": TEMPLATE_BODY, "roleArn": ROLE_ARN}
    )
    config = describe_ca(iot, ca.cert_id)["registrationConfig"]
    assert config["templateBody"] == TEMPLATE_BODY
    assert config["roleArn"] == ROLE_ARN


def test_verification_certificate_with_wrong_cn_is_refused(iot):
    ca = make_ca()
    wrong = verification_cert(ca, "not-the-registration-code")
    with aws_error("RegistrationCodeValidationException"):
        iot.register_ca_certificate(caCertificate=ca.pem, verificationCertificate=wrong.pem, setAsActive=True)


def test_verification_certificate_not_signed_by_the_ca_is_refused(iot):
    ca = make_ca()
    # right CN, names the CA as issuer, but signed with another key: no proof of possession
    forged = verification_cert(ca, registration_code(iot), signing_key=make_ca().key)
    with aws_error("CertificateValidationException"):
        iot.register_ca_certificate(caCertificate=ca.pem, verificationCertificate=forged.pem, setAsActive=True)


def test_verification_certificate_issued_by_another_ca_is_refused(iot):
    ca, other = make_ca(), make_ca()
    unrelated = verification_cert(other, registration_code(iot))
    with aws_error("CertificateValidationException"):
        iot.register_ca_certificate(caCertificate=ca.pem, verificationCertificate=unrelated.pem, setAsActive=True)


def test_default_mode_needs_a_verification_certificate(iot):
    # API reference: "If certificateMode is DEFAULT or not provided, the verificationCertificate
    # field must not be empty." [VERIFY] the error type is not documented; InvalidRequestException chosen.
    with aws_error("InvalidRequestException"):
        iot.register_ca_certificate(caCertificate=make_ca().pem, setAsActive=True)


def test_sni_only_mode_needs_no_verification_certificate(iot):
    ca = make_ca()
    response = iot.register_ca_certificate(
        caCertificate=ca.pem, certificateMode="SNI_ONLY", setAsActive=True
    )
    desc = describe_ca(iot, response["certificateId"])["certificateDescription"]
    assert desc["certificateMode"] == "SNI_ONLY"
    assert desc["status"] == "ACTIVE"


def test_same_ca_twice_is_refused(iot):
    ca = register_ca(iot)
    with aws_error("ResourceAlreadyExistsException") as excinfo:
        iot.register_ca_certificate(
            caCertificate=ca.pem,
            verificationCertificate=verification_cert(ca.keycert, registration_code(iot)).pem,
            setAsActive=True,
        )
    assert excinfo.value.response.get("resourceId") == ca.cert_id


@pytest.mark.parametrize(
    "pem",
    ["not a certificate", "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"],
    ids=["text", "bad-der"],
)
def test_garbage_ca_certificate_is_refused(iot, pem):
    ca = make_ca()
    with aws_error("CertificateValidationException"):
        iot.register_ca_certificate(
            caCertificate=pem,
            verificationCertificate=verification_cert(ca, registration_code(iot)).pem,
        )


def test_garbage_verification_certificate_is_refused(iot):
    with aws_error("CertificateValidationException"):
        iot.register_ca_certificate(caCertificate=make_ca().pem, verificationCertificate="garbage")


# --------------------------------------------------------------------------------------
# ListCACertificates
# --------------------------------------------------------------------------------------


def test_list_ca_certificates_pages_with_marker(iot):
    mine = {register_ca(iot, active=False).cert_id for _ in range(3)}
    items, sizes = collect_marker_pages(iot.list_ca_certificates, "certificates", page_size=2)
    ids = [c["certificateId"] for c in items]
    assert len(ids) == len(set(ids))
    assert mine <= set(ids)
    assert len(sizes) >= 2 and all(size == 2 for size in sizes[:-1]), sizes
    entry = next(c for c in items if c["certificateId"] in mine)
    assert entry["certificateArn"] == iot_arn("cacert", entry["certificateId"])
    assert entry["status"] == "INACTIVE"
    assert_recent(entry["creationDate"])


# --------------------------------------------------------------------------------------
# UpdateCACertificate
# --------------------------------------------------------------------------------------


def test_update_ca_certificate(iot):
    ca = register_ca(iot, active=True, auto_registration=False)

    iot.update_ca_certificate(certificateId=ca.cert_id, newStatus="INACTIVE")
    desc = describe_ca(iot, ca.cert_id)["certificateDescription"]
    assert (desc["status"], desc["autoRegistrationStatus"]) == ("INACTIVE", "DISABLE")

    iot.update_ca_certificate(certificateId=ca.cert_id, newAutoRegistrationStatus="ENABLE")
    desc = describe_ca(iot, ca.cert_id)["certificateDescription"]
    assert (desc["status"], desc["autoRegistrationStatus"]) == ("INACTIVE", "ENABLE")

    # both at once, as Terraform sends them
    iot.update_ca_certificate(
        certificateId=ca.cert_id, newStatus="ACTIVE", newAutoRegistrationStatus="DISABLE"
    )
    desc = describe_ca(iot, ca.cert_id)["certificateDescription"]
    assert (desc["status"], desc["autoRegistrationStatus"]) == ("ACTIVE", "DISABLE")

    iot.update_ca_certificate(
        certificateId=ca.cert_id,
        registrationConfig={"templateBody": TEMPLATE_BODY, "roleArn": ROLE_ARN},
    )
    response = describe_ca(iot, ca.cert_id)
    assert response["registrationConfig"]["templateBody"] == TEMPLATE_BODY
    assert response["registrationConfig"]["roleArn"] == ROLE_ARN
    assert response["certificateDescription"]["status"] == "ACTIVE"


def test_update_unknown_ca_certificate(iot):
    with aws_error("ResourceNotFoundException"):
        iot.update_ca_certificate(certificateId="0" * 64, newStatus="INACTIVE")


# --------------------------------------------------------------------------------------
# DescribeCACertificate / DeleteCACertificate
# --------------------------------------------------------------------------------------


def test_describe_unknown_ca_certificate(iot):
    with aws_error("ResourceNotFoundException"):
        iot.describe_ca_certificate(certificateId="0" * 64)


def test_delete_ca_certificate(iot):
    ca = register_ca(iot, active=True)
    with aws_error("CertificateStateException", 406):
        iot.delete_ca_certificate(certificateId=ca.cert_id)
    assert describe_ca(iot, ca.cert_id)["certificateDescription"]["status"] == "ACTIVE"

    iot.update_ca_certificate(certificateId=ca.cert_id, newStatus="INACTIVE")
    iot.delete_ca_certificate(certificateId=ca.cert_id)
    with aws_error("ResourceNotFoundException"):
        iot.describe_ca_certificate(certificateId=ca.cert_id)
    items, _ = collect_marker_pages(iot.list_ca_certificates, "certificates", page_size=250)
    assert ca.cert_id not in {c["certificateId"] for c in items}

    # once deleted, the CA can be registered again
    again = register_ca(iot, ca.keycert, active=False)
    assert describe_ca(iot, again.cert_id)["certificateDescription"]["status"] == "INACTIVE"


def test_delete_ca_certificate_with_device_certificates(iot):
    # The API reference documents only one precondition for DeleteCACertificate: the CA must
    # not be ACTIVE (CertificateStateException). [VERIFY] nothing documents a refusal while
    # device certificates registered under the CA still exist, so the INACTIVE CA is deleted
    # and its device certificates stay registered.
    ca = register_ca(iot, active=True)
    device = issue(ca.keycert)
    iot.register_certificate(certificatePem=device.pem, caCertificatePem=ca.pem, setAsActive=True)

    iot.update_ca_certificate(certificateId=ca.cert_id, newStatus="INACTIVE")
    iot.delete_ca_certificate(certificateId=ca.cert_id)
    with aws_error("ResourceNotFoundException"):
        iot.describe_ca_certificate(certificateId=ca.cert_id)
    desc = iot.describe_certificate(certificateId=device.cert_id)["certificateDescription"]
    assert desc["status"] == "ACTIVE"


def test_delete_unknown_ca_certificate(iot):
    with aws_error("ResourceNotFoundException"):
        iot.delete_ca_certificate(certificateId="0" * 64)


def test_a_device_certificate_is_not_a_ca(iot):
    # ids are per kind: a registered device certificate is not found as a CA certificate
    keycert = self_signed()
    iot.register_certificate_without_ca(certificatePem=keycert.pem, status="INACTIVE")
    with aws_error("ResourceNotFoundException"):
        iot.describe_ca_certificate(certificateId=keycert.cert_id)
