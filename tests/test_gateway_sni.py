"""SNI chooses the server certificate on both device listeners (8883 and the HTTPS port):
names listed under `[[sni_certificates]]` (exact or `*.` wildcard) get that certificate,
every other name, and clients that send no SNI, get the server's default certificate."""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from conftest import configured_server
from gateway_helpers import require_tool

# Server certificates picked by SNI: the same on any store, so the PostgreSQL pass of
# scripts/test skips this suite.
pytestmark = pytest.mark.store_neutral


def make_certificate(directory, common_name: str, names: list[str]):
    key, cert = directory / f"{common_name}.key", directory / f"{common_name}.pem"
    san = ",".join(f"DNS:{n}" for n in names)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={common_name}",
         "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def sni_server(tmp_path_factory):
    require_tool("openssl", "to make the SNI certificates")
    certificates = tmp_path_factory.mktemp("sni-certificates")
    custom_cert, custom_key = make_certificate(certificates, "custom-domain", ["iot.example.test"])
    wild_cert, wild_key = make_certificate(certificates, "wildcard-domain", ["*.devices.example.test"])
    config = f"""
[[sni_certificates]]
names = ["iot.example.test"]
cert_file = "{custom_cert}"
key_file = "{custom_key}"

[[sni_certificates]]
names = ["*.devices.example.test"]
cert_file = "{wild_cert}"
key_file = "{wild_key}"
"""
    yield from configured_server(tmp_path_factory, "sni", config)


def served_common_name(port: int, server_name: str | None) -> str:
    """The CN of the certificate the server presents for `server_name` (None: no SNI)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # 8883 requires a client certificate: under TLS 1.3 the client has the server's
    # certificate before the server refuses the missing one.
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
        except (ssl.SSLError, OSError):
            pytest.fail(f"TLS handshake with {server_name!r} on port {port} failed")
    certificate = x509.load_der_x509_certificate(der)
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest.mark.parametrize("listener", ["https", "mqtt"])
@pytest.mark.parametrize(
    "server_name, expected",
    [
        ("iot.example.test", "custom-domain"),
        ("IOT.Example.Test", "custom-domain"),
        ("a.devices.example.test", "wildcard-domain"),
        ("a.b.devices.example.test", None),
        ("localhost", None),
        (None, None),
    ],
)
def test_sni_chooses_the_server_certificate(sni_server, listener, server_name, expected):
    port = sni_server.https_port if listener == "https" else sni_server.mqtt_port
    default = served_common_name(sni_server.https_port, None)
    assert default not in ("custom-domain", "wildcard-domain")
    assert served_common_name(port, server_name) == (expected or default)


def test_openssl_s_client_sees_the_custom_domain_certificate(sni_server):
    openssl = require_tool("openssl", "to run s_client")
    shown = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{sni_server.https_port}", "-servername", "iot.example.test"],
        input=b"", capture_output=True, timeout=20,
    )
    assert b"CN = custom-domain" in shown.stdout or b"CN=custom-domain" in shown.stdout, shown.stdout[-2000:]
