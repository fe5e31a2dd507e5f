use ferrocore_pki::{Issuer, parse_certificate_pem, parse_csr_pem};

const NOW: i64 = 1_767_225_600; // 2026-01-01

#[test]
fn root_and_device_certificates_chain() {
    let root = Issuer::new_root("ferrocore test CA", "ferrocore", NOW).unwrap();
    let ca = parse_certificate_pem(root.certificate_pem()).unwrap();
    assert!(ca.is_ca && ca.is_self_signed() && ca.is_valid_at(NOW));
    let device = root.issue_device("AWS IoT Certificate", NOW).unwrap();
    assert!(device.private_key_pem.contains("BEGIN PRIVATE KEY"));
    let cert = parse_certificate_pem(&device.certificate_pem).unwrap();
    assert!(cert.is_signed_by(&ca));
    assert!(!cert.is_ca);
    assert_eq!(cert.id.len(), 64);
    assert_eq!(cert.common_name(), Some("AWS IoT Certificate"));

    let other = Issuer::new_root("ferrocore test CA", "ferrocore", NOW).unwrap();
    let impostor = parse_certificate_pem(other.certificate_pem()).unwrap();
    assert!(cert.names_issuer(&impostor), "same subject");
    assert!(!cert.is_signed_by(&impostor), "but a different key");
}

#[test]
fn reloaded_issuer_signs_for_the_same_ca() {
    let root = Issuer::new_root("reload CA", "ferrocore", NOW).unwrap();
    let reloaded = Issuer::from_pem(root.certificate_pem(), &root.key_pem()).unwrap();
    let server = reloaded.issue_server(&["localhost".into(), "127.0.0.1".into()], NOW).unwrap();
    let cert = parse_certificate_pem(&server.certificate_pem).unwrap();
    assert!(cert.is_signed_by(&parse_certificate_pem(root.certificate_pem()).unwrap()));
    assert!(cert.subject_alternative_names.contains(&("IPAddress".into(), "127.0.0.1".into())));
}

#[test]
fn garbage_and_tampered_input_is_refused() {
    assert!(parse_certificate_pem("not a pem").is_err());
    assert!(parse_certificate_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    assert!(parse_csr_pem("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n").is_err());
}

#[test]
fn csr_certificates_carry_the_csr_key_and_subject() {
    let root = Issuer::new_root("csr CA", "ferrocore", NOW).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "device-7");
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let csr = parse_csr_pem(&csr_pem).unwrap();
    assert_eq!(csr.subject, vec![("CommonName".to_string(), "device-7".to_string())]);
    let cert = parse_certificate_pem(&root.issue_for_csr(&csr.pem, NOW).unwrap()).unwrap();
    assert!(cert.is_signed_by(&parse_certificate_pem(root.certificate_pem()).unwrap()));
    assert_eq!(cert.common_name(), Some("device-7"));
    let spki = key.public_key_der();
    assert_eq!(cert.public_key_der(), spki);
}
