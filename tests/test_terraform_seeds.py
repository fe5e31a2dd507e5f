"""Terraform (hashicorp/aws 5.100.0) applies, re-plans and destroys the two device-identity
seeds against ferrocore:

- tests/terraform/seed000: thing + self-signed certificate (made with openssl) + walled-garden
  policy + attachments + ATS endpoint (shared/seeds/000_*.txt);
- tests/terraform/seed001: self-signed and CA-signed certificates, a registered CA with its
  verification certificate, CreateKeysAndCertificate, CreateCertificateFromCsr, a role alias
  (shared/seeds/001_*.txt).

The tls provider of the seeds is not available: keys and certificates are made here and
passed to Terraform as files. Skipped (loudly, see -ra) without terraform or the provider mirror.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from iot_helpers import ACCOUNT_ID, REGION, iot_arn
from security_helpers import (
    assert_walled_garden,
    cert_der,
    cert_id_of,
    issue,
    load_cert,
    make_ca,
    make_csr,
    openssl,
    openssl_verify,
    public_der,
    registration_code,
    self_signed,
    verification_cert,
)
from terraform_helpers import APPLY, DESTROY, PLAN_CHECK, destroy_leftovers, gone, prepare

pytestmark = pytest.mark.terraform


@pytest.fixture
def terraform(server, tmp_path):
    """terraform(config, variables) -> an initialised Terraform for tests/terraform/<config>;
    whatever is still in its state at the end is destroyed."""
    made = []

    def make(config: str, variables: dict | None = None):
        tf = prepare(server, tmp_path, config, variables)
        made.append(tf)
        return tf

    yield make
    for tf in made:
        destroy_leftovers(tf)


def assert_all_gone(checks: dict) -> None:
    left = [label for label, call in checks.items() if not gone(call)]
    assert not left, f"still present after terraform destroy: {left}"


# --------------------------------------------------------------------------------------
# seed 000
# --------------------------------------------------------------------------------------


def test_seed000_thing_certificate_walled_garden(terraform, client_factory, tmp_path):
    iot = client_factory("iot")

    # the device's key and self-signed certificate, made the way a user would without the
    # tls provider (seed: RSA 2048, subject O=test, 240 hours)
    pki = tmp_path / "pki"
    pki.mkdir()
    cert_file, key_file = pki / "cert.pem", pki / "key.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "10",
        "-subj", "/O=test", "-keyout", str(key_file), "-out", str(cert_file),
    )

    tf = terraform("seed000", {"cert_pem_file": cert_file, "key_pem_file": key_file})
    tf(*APPLY)
    # a second plan right after apply must find nothing to change (exit 0; 2 = diff)
    tf(*PLAN_CHECK)
    out = tf.outputs()

    thing = out["thing_name"]
    cert_id = cert_id_of(cert_file.read_text())
    assert out["certificate_id"] == cert_id
    assert out["certificate_arn"] == iot_arn("cert", cert_id)
    assert out["cert"] == cert_file.read_text()
    assert out["key"] == key_file.read_text()
    assert out["iot_endpoint"] == iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert (out["thing_region"], out["thing_account"]) == (REGION, ACCOUNT_ID)

    assert iot.describe_thing(thingName=thing)["thingArn"] == iot_arn("thing", thing)
    desc = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert desc["status"] == "ACTIVE"
    assert desc["certificateMode"] == "SNI_ONLY"  # registered without a CA
    assert cert_der(desc["certificatePem"]) == cert_der(cert_file.read_text())
    assert iot.list_thing_principals(thingName=thing)["principals"] == [out["certificate_arn"]]

    policy = iot.get_policy(policyName=out["policy_name"])
    # deploy-time ${...} resolved by Terraform, run-time $${...} left for the policy engine
    assert f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:client/${{iot:Connection.Thing.ThingName}}" in policy["policyDocument"]
    attached = iot.list_attached_policies(target=out["certificate_arn"])["policies"]
    assert [p["policyName"] for p in attached] == [out["policy_name"]]

    # the walled garden works: connect as the thing, its own shadow only
    assert_walled_garden(iot, out["certificate_arn"], thing)

    tf(*DESTROY)
    assert_all_gone({
        "thing": lambda: iot.describe_thing(thingName=thing),
        "certificate": lambda: iot.describe_certificate(certificateId=cert_id),
        "policy": lambda: iot.get_policy(policyName=out["policy_name"]),
    })


# --------------------------------------------------------------------------------------
# seed 001
# --------------------------------------------------------------------------------------


def write_pki(iot, pki: Path) -> dict:
    """The seed's keys and certificates, plus what the extended config needs."""
    pki.mkdir()
    code = registration_code(iot)  # phase 1: the code the verification certificate needs
    device = self_signed(organization="test")
    ca = make_ca()
    verification = verification_cert(ca, code)
    signed_1 = issue(ca)
    signed_2 = issue(ca)
    csr_key, csr = make_csr()
    device.write(pki, "self_signed")
    ca.write(pki, "ca")
    verification.write(pki, "verification")
    signed_1.write(pki, "signed_1")
    signed_2.write(pki, "signed_2")
    (pki / "csr.pem").write_text(csr)
    return {
        "code": code, "device": device, "ca": ca, "signed_1": signed_1, "signed_2": signed_2,
        "csr_key": csr_key,
    }


def test_seed001_certificates_ca_and_role_alias(terraform, client_factory, tmp_path):
    iot = client_factory("iot")
    pki = tmp_path / "pki"
    made = write_pki(iot, pki)

    # as in the seed: the CA-signed certificates verify against the CA, the self-signed one does not
    openssl_verify(pki / "ca.pem", pki / "signed_1.pem")
    openssl_verify(pki / "ca.pem", pki / "signed_2.pem")
    assert openssl("verify", "-CAfile", str(pki / "ca.pem"), str(pki / "self_signed.pem"), check=False).returncode != 0

    tf = terraform("seed001", {"pki_dir": pki})
    tf(*APPLY)
    tf(*PLAN_CHECK)
    out = tf.outputs()

    # the data source returns the code the verification certificate was made for
    assert out["registration_code"] == made["code"]

    def describe(cert_id: str) -> dict:
        return iot.describe_certificate(certificateId=cert_id)["certificateDescription"]

    # self-signed, registered without a CA
    assert out["self_signed_id"] == made["device"].cert_id
    desc = describe(out["self_signed_id"])
    assert (desc["status"], desc["certificateMode"]) == ("ACTIVE", "SNI_ONLY")

    # the CA
    ca = iot.describe_ca_certificate(certificateId=out["ca_id"])["certificateDescription"]
    assert out["ca_arn"] == iot_arn("cacert", out["ca_id"])
    assert (ca["status"], ca["autoRegistrationStatus"], ca["certificateMode"]) == ("ACTIVE", "DISABLE", "DEFAULT")
    assert cert_der(ca["certificatePem"]) == made["ca"].der

    # CA-signed with ca_pem: RegisterCertificate links it to the CA
    assert out["ca_cert_1_id"] == made["signed_1"].cert_id
    assert out["ca_cert_1_ca_certificate_id"] == out["ca_id"]
    desc = describe(out["ca_cert_1_id"])
    assert (desc["status"], desc["certificateMode"], desc["caCertificateId"]) == ("ACTIVE", "DEFAULT", out["ca_id"])
    listed = iot.list_certificates_by_ca(caCertificateId=out["ca_id"])["certificates"]
    assert out["ca_cert_1_id"] in {c["certificateId"] for c in listed}

    # CA-signed without ca_pem: RegisterCertificateWithoutCA, not linked, SNI_ONLY.
    # [VERIFY] AWS accepts this even though the issuing CA is registered in the account.
    assert out["ca_cert_2_id"] == made["signed_2"].cert_id
    desc = describe(out["ca_cert_2_id"])
    assert (desc["status"], desc["certificateMode"]) == ("ACTIVE", "SNI_ONLY")
    assert not desc.get("caCertificateId")

    # CreateKeysAndCertificate: the private key Terraform received fits the certificate
    desc = describe(out["generated_id"])
    assert desc["status"] == "ACTIVE"
    key = serialization.load_pem_private_key(out["generated_private_key"].encode(), password=None)
    generated = load_cert(out["generated_certificate_pem"])
    assert public_der(generated.public_key()) == public_der(key.public_key())
    assert out["generated_id"] == hashlib.sha256(cert_der(out["generated_certificate_pem"])).hexdigest()

    # CreateCertificateFromCsr (active = false)
    desc = describe(out["from_csr_id"])
    assert desc["status"] == "INACTIVE"
    from_csr = load_cert(out["from_csr_certificate_pem"])
    assert public_der(from_csr.public_key()) == public_der(made["csr_key"].public_key())

    # the role alias
    alias = iot.describe_role_alias(roleAlias=out["role_alias"])["roleAliasDescription"]
    assert out["role_alias_arn"] == iot_arn("rolealias", out["role_alias"])
    assert alias["credentialDurationSeconds"] == 7200
    assert alias["roleArn"].startswith(f"arn:aws:iam::{ACCOUNT_ID}:role/tf-device-role-")

    tf(*DESTROY)
    assert_all_gone({
        f"certificate {name}": (lambda cid=out[name]: iot.describe_certificate(certificateId=cid))
        for name in ("self_signed_id", "ca_cert_1_id", "ca_cert_2_id", "generated_id", "from_csr_id")
    } | {
        "CA certificate": lambda: iot.describe_ca_certificate(certificateId=out["ca_id"]),
        "role alias": lambda: iot.describe_role_alias(roleAlias=out["role_alias"]),
    })
    # reading the code did not rotate it
    assert registration_code(iot) == made["code"]
