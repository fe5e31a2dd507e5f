"""The device-provisioning commands of the ferrocore binary, run against the live server:

    ferrocore device create NAME --out DIR --endpoint-url URL
    ferrocore ca create NAME --out DIR --endpoint-url URL
    ferrocore ca sign --ca-dir DIR --thing THING --out DIR2 --endpoint-url URL

Each result is checked through the public API (boto3) and with openssl, the way a user
would check it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from conftest import ferrocore_binary
from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY, iot_arn, unique_name
from security_helpers import (
    assert_walled_garden,
    cert_der,
    cert_id_of,
    collect_marker_pages,
    load_cert,
    openssl_verify,
    policy_names,
    public_key_of_cert_file,
    public_key_of_key_file,
)

DEVICE_JSON_KEYS = {"thing_name", "endpoint", "mqtt_port", "certificate_id", "certificate_arn", "policy_name"}
CLI_TIMEOUT = 120


@pytest.fixture
def ferrocore_cli(server, tmp_path):
    """run(*args, ok=True) -> CompletedProcess of the ferrocore binary (same binary as the
    server fixture), with the local credentials in the environment and no user AWS config."""
    binary = ferrocore_binary()
    if not binary.is_file():
        pytest.skip(f"ferrocore binary not found at {binary}: the device CLI tests did not run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),  # absent
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),  # absent
        AWS_EC2_METADATA_DISABLED="true",
    )

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(binary), *map(str, args)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
        print(f"$ {' '.join(cmd)}  (exit {result.returncode})\n{result.stdout}{result.stderr}")
        if ok and result.returncode != 0:
            pytest.fail(
                f"{' '.join(cmd)} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
                pytrace=False,
            )
        return result

    return run


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_device_json(directory: Path) -> dict:
    info = json.loads((directory / "device.json").read_text())
    missing = DEVICE_JSON_KEYS - set(info)
    assert not missing, f"device.json lacks {sorted(missing)}: {info}"
    return info


def server_ca_pem(server) -> bytes:
    """GET {endpoint}/ca.pem, unauthenticated: the CA devices use to trust the server."""
    with urllib.request.urlopen(f"{server.endpoint}/ca.pem", timeout=10) as response:
        assert response.status == 200
        return response.read()


def check_provisioned_device(iot, server, directory: Path, thing: str) -> dict:
    """What `device create` and `ca sign` both leave behind: cert.pem + key.pem (0600) +
    device.json; the thing, the ACTIVE certificate, a walled-garden policy, both attachments."""
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    assert cert_file.is_file() and key_file.is_file()
    assert mode_of(key_file) == 0o600, oct(mode_of(key_file))
    # the certificate certifies the private key next to it
    assert public_key_of_cert_file(cert_file) == public_key_of_key_file(key_file)

    info = read_device_json(directory)
    cert_id = cert_id_of(cert_file.read_text())
    assert info["thing_name"] == thing
    assert info["certificate_id"] == cert_id
    assert info["certificate_arn"] == iot_arn("cert", cert_id)
    # the device connects to the account's ATS data endpoint, on the MQTT listener
    assert info["endpoint"] == iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert isinstance(info["mqtt_port"], int)
    if hasattr(server, "mqtt_port"):
        assert info["mqtt_port"] == server.mqtt_port

    assert iot.describe_thing(thingName=thing)["thingName"] == thing
    desc = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert desc["status"] == "ACTIVE"
    assert cert_der(desc["certificatePem"]) == cert_der(cert_file.read_text())
    assert iot.list_thing_principals(thingName=thing)["principals"] == [info["certificate_arn"]]
    attached = iot.list_attached_policies(target=info["certificate_arn"])["policies"]
    assert info["policy_name"] in policy_names(attached)
    assert iot.get_policy(policyName=info["policy_name"])["policyName"] == info["policy_name"]

    # a walled garden: the device may be its thing and use its own topics, nothing else
    assert_walled_garden(iot, info["certificate_arn"], thing)
    return info


# --------------------------------------------------------------------------------------
# ferrocore device create
# --------------------------------------------------------------------------------------


def test_device_create(ferrocore_cli, server, iot, tmp_path):
    thing = unique_name("cli-device")
    out = tmp_path / "device"
    ferrocore_cli("device", "create", thing, "--out", out, "--endpoint-url", server.endpoint)

    check_provisioned_device(iot, server, out, thing)

    # ca.pem is the server's CA, byte for byte what GET /ca.pem serves without credentials
    assert (out / "ca.pem").read_bytes() == server_ca_pem(server)
    load_cert((out / "ca.pem").read_text())


def test_device_create_twice_makes_two_devices(ferrocore_cli, server, iot, tmp_path):
    first, second = unique_name("cli-device"), unique_name("cli-device")
    ferrocore_cli("device", "create", first, "--out", tmp_path / "a", "--endpoint-url", server.endpoint)
    ferrocore_cli("device", "create", second, "--out", tmp_path / "b", "--endpoint-url", server.endpoint)
    a, b = read_device_json(tmp_path / "a"), read_device_json(tmp_path / "b")
    assert a["certificate_id"] != b["certificate_id"]
    assert (tmp_path / "a" / "key.pem").read_text() != (tmp_path / "b" / "key.pem").read_text()
    # each certificate belongs to its own thing only
    assert iot.list_principal_things(principal=a["certificate_arn"])["things"] == [first]
    assert iot.list_principal_things(principal=b["certificate_arn"])["things"] == [second]


def test_device_create_with_an_invalid_thing_name_fails(ferrocore_cli, server, tmp_path):
    out = tmp_path / "device"
    result = ferrocore_cli(
        "device", "create", "not a valid name!", "--out", out, "--endpoint-url", server.endpoint, ok=False
    )
    assert result.returncode != 0
    assert result.stderr.strip(), "a failing command must say why on stderr"


# --------------------------------------------------------------------------------------
# ferrocore ca create / ca sign
# --------------------------------------------------------------------------------------


def find_ca_id(iot, ca_pem: str) -> str:
    """The id of the registered CA certificate whose PEM is ca_pem."""
    wanted = cert_der(ca_pem)
    items, _ = collect_marker_pages(iot.list_ca_certificates, "certificates", page_size=250)
    for item in items:
        desc = iot.describe_ca_certificate(certificateId=item["certificateId"])["certificateDescription"]
        if cert_der(desc["certificatePem"]) == wanted:
            return item["certificateId"]
    raise AssertionError("the CA written by `ferrocore ca create` is not registered")


def test_ca_create_and_sign(ferrocore_cli, server, iot, tmp_path):
    name = unique_name("cli-ca")
    ca_dir = tmp_path / "ca"
    ferrocore_cli("ca", "create", name, "--out", ca_dir, "--endpoint-url", server.endpoint)

    ca_file, ca_key = ca_dir / "ca.pem", ca_dir / "ca.key"
    assert ca_file.is_file() and ca_key.is_file()
    assert mode_of(ca_key) == 0o600, oct(mode_of(ca_key))
    assert public_key_of_cert_file(ca_file) == public_key_of_key_file(ca_key)
    ca_cert = load_cert(ca_file.read_text())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True

    # registered ACTIVE, in DEFAULT mode (so with a verification certificate)
    ca_id = find_ca_id(iot, ca_file.read_text())
    ca_desc = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
    assert ca_desc["status"] == "ACTIVE"
    assert ca_desc["certificateMode"] == "DEFAULT"

    thing = unique_name("cli-signed")
    device_dir = tmp_path / "device"
    ferrocore_cli(
        "ca", "sign", "--ca-dir", ca_dir, "--thing", thing, "--out", device_dir,
        "--endpoint-url", server.endpoint,
    )
    info = check_provisioned_device(iot, server, device_dir, thing)

    # issued by the CA (as seed 001 checks it) and registered under it (RegisterCertificate)
    openssl_verify(ca_file, device_dir / "cert.pem")
    desc = iot.describe_certificate(certificateId=info["certificate_id"])["certificateDescription"]
    assert desc["caCertificateId"] == ca_id
    assert desc["certificateMode"] == "DEFAULT"
    by_ca, _ = collect_marker_pages(iot.list_certificates_by_ca, "certificates", page_size=250, caCertificateId=ca_id)
    assert info["certificate_id"] in {c["certificateId"] for c in by_ca}


def test_ca_sign_twice_issues_distinct_certificates(ferrocore_cli, server, iot, tmp_path):
    ca_dir = tmp_path / "ca"
    ferrocore_cli("ca", "create", unique_name("cli-ca"), "--out", ca_dir, "--endpoint-url", server.endpoint)
    infos = []
    for label in ("one", "two"):
        thing = unique_name(f"cli-{label}")
        ferrocore_cli(
            "ca", "sign", "--ca-dir", ca_dir, "--thing", thing, "--out", tmp_path / label,
            "--endpoint-url", server.endpoint,
        )
        openssl_verify(ca_dir / "ca.pem", tmp_path / label / "cert.pem")
        infos.append(read_device_json(tmp_path / label))
    assert infos[0]["certificate_id"] != infos[1]["certificate_id"]
