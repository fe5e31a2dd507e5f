//! Issuing certificates: the server's root CA and TLS certificate, device
//! certificates with server-made RSA keys (CreateKeysAndCertificate), and
//! certificates for CSRs (CreateCertificateFromCsr). Times are passed in.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::KeyPair as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;
use crate::convert::{ForeignKey, distinguished_name, key_identifier};

const DAY: i64 = 86_400;
const CA_VALIDITY_DAYS: i64 = 3650;
const SERVER_VALIDITY_DAYS: i64 = 825;

/// A new key pair and the certificate issued for it.
#[derive(Debug, Clone)]
pub struct IssuedKeyPair {
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub public_key_pem: String,
}

/// A CA that signs: its certificate and key.
pub struct Issuer {
    certificate: rcgen::Certificate,
    certificate_pem: String,
    key: KeyPair,
}

fn issue_error(err: impl std::fmt::Display) -> PkiError {
    PkiError::Issue(err.to_string())
}

fn at(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(issue_error)
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(organization) = organization {
        dn.push(DnType::OrganizationName, organization);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn normalise(pem: String) -> String {
    pem.replace("\r\n", "\n")
}

/// A new RSA-2048 key, as rcgen key pair plus PEMs (PKCS#8 private, SPKI public).
fn new_rsa_key() -> Result<(KeyPair, String, String), PkiError> {
    let key = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(issue_error)?;
    let private: Pkcs8V1Der = key.as_der().map_err(issue_error)?;
    let public: PublicKeyX509Der = key.public_key().as_der().map_err(issue_error)?;
    let pair = KeyPair::try_from(private.as_ref()).map_err(issue_error)?;
    let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec()));
    let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec()));
    Ok((pair, normalise(private_pem), normalise(public_pem)))
}

impl Issuer {
    /// A new self-signed root CA with an ECDSA P-256 key, valid ten years from `now`.
    pub fn new_root(common_name: &str, organization: &str, now: i64) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(issue_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, Some(organization));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = at(now - DAY)?;
        params.not_after = at(now + CA_VALIDITY_DAYS * DAY)?;
        params.serial_number = Some(random_serial());
        let certificate = params.self_signed(&key).map_err(issue_error)?;
        let certificate_pem = normalise(certificate.pem());
        Ok(Self { certificate, certificate_pem, key })
    }

    /// A CA loaded from its certificate and PKCS#8 key PEMs.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(issue_error)?;
        let der = pem::parse(certificate_pem).map_err(issue_error)?.into_contents();
        let (_, parsed) = X509Certificate::from_der(&der).map_err(issue_error)?;
        // rcgen signs with an issuer certificate object and reads only its name and
        // key identifier: rebuild those from the CA certificate.
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(parsed.subject())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if let Some(method) = key_identifier(&parsed) {
            params.key_identifier_method = method;
        }
        let certificate = params.self_signed(&key).map_err(issue_error)?;
        Ok(Self { certificate, certificate_pem: certificate_pem.to_string(), key })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    pub fn key_pem(&self) -> String {
        normalise(self.key.serialize_pem())
    }

    /// A TLS server certificate for `names` (DNS names or IP addresses).
    pub fn issue_server(&self, names: &[String], now: i64) -> Result<IssuedKeyPair, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(issue_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(names.first().map_or("ferrocore", String::as_str), Some("ferrocore"));
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName).map_err(issue_error),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.not_before = at(now - DAY)?;
        params.not_after = at(now + SERVER_VALIDITY_DAYS * DAY)?;
        params.serial_number = Some(random_serial());
        let certificate = params.signed_by(&key, &self.certificate, &self.key).map_err(issue_error)?;
        Ok(IssuedKeyPair {
            certificate_pem: normalise(certificate.pem()),
            private_key_pem: normalise(key.serialize_pem()),
            public_key_pem: normalise(key.public_key_pem()),
        })
    }

    fn device_params(common_name: &str, now: i64) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, None);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = at(now - DAY)?;
        // AWS-issued device certificates are valid until the end of 2049.
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        params.serial_number = Some(random_serial());
        Ok(params)
    }

    /// CreateKeysAndCertificate: a new RSA-2048 key and a device certificate for it.
    pub fn issue_device(&self, common_name: &str, now: i64) -> Result<IssuedKeyPair, PkiError> {
        let (key, private_key_pem, public_key_pem) = new_rsa_key()?;
        let certificate = Self::device_params(common_name, now)?
            .signed_by(&key, &self.certificate, &self.key)
            .map_err(issue_error)?;
        Ok(IssuedKeyPair { certificate_pem: normalise(certificate.pem()), private_key_pem, public_key_pem })
    }

    /// CreateCertificateFromCsr: a device certificate for the CSR's key and subject.
    /// The CSR's signature must have been checked ([`crate::parse_csr_pem`]).
    pub fn issue_for_csr(&self, csr_pem: &str, now: i64) -> Result<String, PkiError> {
        let unreadable =
            |err: String| PkiError::InvalidCsr(format!("The certificate signing request could not be read: {err}"));
        let der = pem::parse(csr_pem).map_err(|e| unreadable(e.to_string()))?.into_contents();
        let (_, csr) = X509CertificationRequest::from_der(&der).map_err(|e| unreadable(e.to_string()))?;
        let info = &csr.certification_request_info;
        let mut params = Self::device_params("AWS IoT Certificate", now)?;
        if info.subject.iter_attributes().next().is_some() {
            params.distinguished_name = distinguished_name(&info.subject)?;
        }
        let key = ForeignKey::from_spki(&info.subject_pki)?;
        let certificate = params.signed_by(&key, &self.certificate, &self.key).map_err(issue_error)?;
        Ok(normalise(certificate.pem()))
    }

    /// A certificate for an existing key given as PEM (e.g. a CA verification certificate).
    pub fn issue_for_key(&self, common_name: &str, key_pem: &str, now: i64) -> Result<String, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(issue_error)?;
        let certificate = Self::device_params(common_name, now)?
            .signed_by(&key, &self.certificate, &self.key)
            .map_err(issue_error)?;
        Ok(normalise(certificate.pem()))
    }

    /// A new device key (ECDSA P-256) and certificate, for tools that act as a device maker's CA.
    pub fn issue_device_ecdsa(&self, common_name: &str, now: i64) -> Result<IssuedKeyPair, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(issue_error)?;
        let certificate = Self::device_params(common_name, now)?
            .signed_by(&key, &self.certificate, &self.key)
            .map_err(issue_error)?;
        Ok(IssuedKeyPair {
            certificate_pem: normalise(certificate.pem()),
            private_key_pem: normalise(key.serialize_pem()),
            public_key_pem: normalise(key.public_key_pem()),
        })
    }
}
