//! The TLS client-certificate check: a certificate is accepted only if it is
//! registered and ACTIVE, and, when registered with a CA, signed by that CA
//! while the CA is ACTIVE. Decisions read the registry's in-memory snapshot,
//! which the registry reloads before it acknowledges any certificate change.

use std::sync::{Arc, RwLock};

use ferrocore_pki::{certificate_id, parse_certificate_der, parse_certificate_pem};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// The registry's certificate snapshot, which it keeps current.
#[derive(Debug)]
pub struct TrustSnapshot {
    certificates: Arc<RwLock<ferrocore_registry::TrustSnapshot>>,
}

impl TrustSnapshot {
    pub fn new(certificates: Arc<RwLock<ferrocore_registry::TrustSnapshot>>) -> Self {
        Self { certificates }
    }

    /// Whether the certificate with this DER may authenticate now.
    pub fn accepts(&self, der: &[u8], now: i64) -> Result<(), CertificateError> {
        let id = certificate_id(der);
        let certificates = self.certificates.read().unwrap_or_else(|e| e.into_inner());
        let trust = certificates.device(&id).ok_or(CertificateError::UnknownIssuer)?;
        if !trust.active {
            return Err(CertificateError::Revoked);
        }
        let parsed = parse_certificate_der(der.to_vec()).map_err(|_| CertificateError::BadEncoding)?;
        if now > parsed.not_after {
            return Err(CertificateError::Expired);
        }
        if now < parsed.not_before {
            return Err(CertificateError::NotValidYet);
        }
        if let Some(ca) = &trust.ca {
            let ca_active = ca.active;
            let ca = parse_certificate_pem(&ca.pem).map_err(|_| CertificateError::UnknownIssuer)?;
            if !ca_active || !parsed.is_signed_by(&ca) {
                return Err(CertificateError::UnknownIssuer);
            }
        }
        Ok(())
    }

    /// Whether a certificate that was accepted is still ACTIVE (and its CA too).
    pub fn still_trusted(&self, id: &str) -> bool {
        let certificates = self.certificates.read().unwrap_or_else(|e| e.into_inner());
        certificates.device(id).is_some_and(|trust| trust.active && trust.ca.as_ref().is_none_or(|ca| ca.active))
    }

    /// The certificate id of an accepted certificate.
    pub fn id_of(der: &[u8]) -> String {
        certificate_id(der)
    }
}

#[derive(Debug)]
pub struct RegistryVerifier {
    snapshot: Arc<TrustSnapshot>,
    provider: Arc<CryptoProvider>,
    /// False on the HTTPS listener, where WebSocket and SigV4 callers bring no certificate
    /// (one that is sent is still checked).
    mandatory: bool,
}

impl RegistryVerifier {
    pub fn new(snapshot: Arc<TrustSnapshot>, provider: Arc<CryptoProvider>, mandatory: bool) -> Self {
        Self { snapshot, provider, mandatory }
    }
}

impl ClientCertVerifier for RegistryVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.snapshot.accepts(end_entity, now).map_err(Error::InvalidCertificate)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
