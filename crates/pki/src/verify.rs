//! Signature checks with aws-lc-rs, for the algorithms X.509 certificates and
//! CSRs use in practice (RSA PKCS#1 v1.5, ECDSA P-256/P-384, Ed25519).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::x509::SubjectPublicKeyInfo;

const RSA_SHA1: &str = "1.2.840.113549.1.1.5";
const RSA_SHA256: &str = "1.2.840.113549.1.1.11";
const RSA_SHA384: &str = "1.2.840.113549.1.1.12";
const RSA_SHA512: &str = "1.2.840.113549.1.1.13";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
const ED25519: &str = "1.3.101.112";
const CURVE_P256: &str = "1.2.840.10045.3.1.7";
const CURVE_P384: &str = "1.3.132.0.34";

fn algorithm(signature_oid: &str, key: &SubjectPublicKeyInfo) -> Option<&'static dyn VerificationAlgorithm> {
    let curve = key.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|oid| oid.to_id_string());
    Some(match (signature_oid, curve.as_deref()) {
        (RSA_SHA1, _) => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (RSA_SHA256, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (RSA_SHA384, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (RSA_SHA512, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (ECDSA_SHA256, Some(CURVE_P256)) => &signature::ECDSA_P256_SHA256_ASN1,
        (ECDSA_SHA256, Some(CURVE_P384)) => &signature::ECDSA_P384_SHA256_ASN1,
        (ECDSA_SHA384, Some(CURVE_P256)) => &signature::ECDSA_P256_SHA384_ASN1,
        (ECDSA_SHA384, Some(CURVE_P384)) => &signature::ECDSA_P384_SHA384_ASN1,
        (ECDSA_SHA512, Some(CURVE_P384)) => &signature::ECDSA_P384_SHA512_ASN1,
        (ED25519, _) => &signature::ED25519,
        _ => return None,
    })
}

/// Whether `signature` over `message` verifies with `key` under `signature_oid`.
pub(crate) fn verifies(signature_oid: &str, key: &SubjectPublicKeyInfo, message: &[u8], signature: &[u8]) -> bool {
    let Some(algorithm) = algorithm(signature_oid, key) else {
        return false;
    };
    UnparsedPublicKey::new(algorithm, key.subject_public_key.data.as_ref()).verify(message, signature).is_ok()
}
