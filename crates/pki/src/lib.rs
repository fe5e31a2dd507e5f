//! X.509 for ferrocore, on aws-lc-rs: reading certificates and CSRs the way AWS
//! IoT checks them, verifying signatures, and issuing certificates (the server's
//! own PKI, CreateKeysAndCertificate, CreateCertificateFromCsr).
//!
//! No I/O: callers pass PEM text and the time, and persist what is returned.

mod convert;
mod issue;
mod parse;
mod verify;

pub use issue::{IssuedKeyPair, Issuer};
pub use parse::{Csr, ParsedCertificate, parse_certificate_der, parse_certificate_pem, parse_csr_pem};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("{0}")]
    InvalidCertificate(String),
    #[error("{0}")]
    InvalidCsr(String),
    #[error("{0}")]
    Issue(String),
}

/// The certificate id AWS uses: hex SHA-256 of the DER encoding.
pub fn certificate_id(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(der))
}
