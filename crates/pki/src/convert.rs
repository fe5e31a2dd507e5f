//! From parsed X.509 to rcgen's types, so rcgen can sign for a CA loaded from
//! PEM and for a CSR's key. (rcgen's own conversion would pull in a second
//! crypto library through x509-parser's `verify` feature.)

use rcgen::{DistinguishedName, DnType, DnValue, KeyIdMethod, PublicKeyData, SignatureAlgorithm};
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{X509Certificate, X509Name};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::PkiError;

fn invalid(what: &str) -> PkiError {
    PkiError::Issue(format!("cannot use the {what}"))
}

/// The name exactly as encoded (attribute types, order and string types kept),
/// so certificates issued under it chain to it byte for byte.
pub(crate) fn distinguished_name(name: &X509Name) -> Result<DistinguishedName, PkiError> {
    let mut dn = DistinguishedName::new();
    for attribute in name.iter_attributes() {
        let oid: Vec<u64> = attribute.attr_type().iter().ok_or_else(|| invalid("name attribute type"))?.collect();
        let data = attribute.attr_value().data;
        let text = || std::str::from_utf8(data).map_err(|_| invalid("name attribute value"));
        let value = match attribute.attr_value().header.tag() {
            Tag::PrintableString => {
                DnValue::PrintableString(text()?.try_into().map_err(|_| invalid("printable string"))?)
            }
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into().map_err(|_| invalid("IA5 string"))?),
            Tag::Utf8String => DnValue::Utf8String(text()?.to_string()),
            _ => return Err(invalid("name attribute string type")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// The subject key identifier a CA certificate declares, for the authority key
/// identifier of what it issues.
pub(crate) fn key_identifier(cert: &X509Certificate) -> Option<KeyIdMethod> {
    cert.iter_extensions().find_map(|ext| match ext.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(id) => Some(KeyIdMethod::PreSpecified(id.0.to_vec())),
        _ => None,
    })
}

/// A public key from a CSR, in the form rcgen signs for.
pub(crate) struct ForeignKey {
    raw: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl ForeignKey {
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo) -> Result<Self, PkiError> {
        let key_oid = spki.algorithm.algorithm.to_id_string();
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
        let algorithm: &'static SignatureAlgorithm = match (key_oid.as_str(), curve.as_deref()) {
            ("1.2.840.113549.1.1.1", _) => &rcgen::PKCS_RSA_SHA256,
            ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => &rcgen::PKCS_ECDSA_P256_SHA256,
            ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => &rcgen::PKCS_ECDSA_P384_SHA384,
            ("1.3.101.112", _) => &rcgen::PKCS_ED25519,
            _ => {
                return Err(PkiError::InvalidCsr(
                    "The CSR's key type is not supported (RSA, ECDSA P-256/P-384, Ed25519).".into(),
                ));
            }
        };
        Ok(Self { raw: spki.subject_public_key.data.to_vec(), algorithm })
    }
}

impl PublicKeyData for ForeignKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        self.algorithm
    }
}
