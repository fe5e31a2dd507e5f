//! Reading certificates and CSRs into the facts AWS IoT uses.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::verify::verifies;
use crate::{PkiError, certificate_id};

/// A certificate as AWS IoT sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCertificate {
    pub der: Vec<u8>,
    /// One PEM block, normalised.
    pub pem: String,
    /// Hex SHA-256 of the DER.
    pub id: String,
    /// Distinguished-name attributes with AWS's policy-variable names, in order.
    pub subject: Vec<(String, String)>,
    pub issuer: Vec<(String, String)>,
    pub subject_alternative_names: Vec<(String, String)>,
    pub issuer_alternative_names: Vec<(String, String)>,
    /// Upper-case hex, as `openssl x509 -serial` prints it.
    pub serial_hex: String,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
}

/// A CSR whose signature has been checked.
#[derive(Debug, Clone)]
pub struct Csr {
    pub pem: String,
    pub subject: Vec<(String, String)>,
}

/// AWS's names for distinguished-name attribute OIDs.
fn attribute_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CommonName",
        "2.5.4.6" => "Country",
        "2.5.4.10" => "Organization",
        "2.5.4.11" => "OrganizationalUnit",
        "2.5.4.8" => "State",
        "2.5.4.5" => "SerialNumber",
        "2.5.4.12" => "Title",
        "2.5.4.4" => "Surname",
        "2.5.4.42" => "GivenName",
        "2.5.4.43" => "Initials",
        "2.5.4.65" => "Pseudonym",
        "2.5.4.44" => "GenerationQualifier",
        "2.5.4.46" => "DistinguishedNameQualifier",
        _ => return None,
    })
}

fn name_attributes(name: &X509Name) -> Vec<(String, String)> {
    name.iter_attributes()
        .filter_map(|attr| {
            let label = attribute_name(&attr.attr_type().to_id_string())?;
            Some((label.to_string(), attr.as_str().ok()?.to_string()))
        })
        .collect()
}

fn general_names(names: &[GeneralName]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            Some(match name {
                GeneralName::DNSName(v) => ("DNSName".to_string(), v.to_string()),
                GeneralName::RFC822Name(v) => ("RFC822Name".to_string(), v.to_string()),
                GeneralName::URI(v) => ("UniformResourceIdentifier".to_string(), v.to_string()),
                GeneralName::DirectoryName(n) => ("DirectoryName".to_string(), n.to_string()),
                GeneralName::IPAddress(bytes) => ("IPAddress".to_string(), ip_text(bytes)?),
                _ => return None,
            })
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec())).replace("\r\n", "\n")
}

/// The first PEM block of `text` with the given label.
fn first_block(text: &str, label: &str, invalid: fn(String) -> PkiError) -> Result<Vec<u8>, PkiError> {
    let blocks =
        pem::parse_many(text.as_bytes()).map_err(|err| invalid(format!("The PEM could not be parsed: {err}")))?;
    blocks
        .into_iter()
        .find(|block| block.tag() == label)
        .map(|block| block.into_contents())
        .ok_or_else(|| invalid(format!("No {label} block was found in the PEM.")))
}

pub fn parse_certificate_pem(text: &str) -> Result<ParsedCertificate, PkiError> {
    parse_certificate_der(first_block(text, "CERTIFICATE", PkiError::InvalidCertificate)?)
}

pub fn parse_certificate_der(der: Vec<u8>) -> Result<ParsedCertificate, PkiError> {
    let (rest, cert) = X509Certificate::from_der(&der)
        .map_err(|err| PkiError::InvalidCertificate(format!("The certificate could not be parsed: {err}")))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCertificate("The certificate has trailing data.".into()));
    }
    let alternative = |issuer: bool| {
        cert.extensions()
            .iter()
            .filter_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) if !issuer => {
                    Some(general_names(&san.general_names))
                }
                x509_parser::extensions::ParsedExtension::IssuerAlternativeName(ian) if issuer => {
                    Some(general_names(&ian.general_names))
                }
                _ => None,
            })
            .flatten()
            .collect::<Vec<_>>()
    };
    let parsed = ParsedCertificate {
        id: certificate_id(&der),
        pem: pem_block("CERTIFICATE", &der),
        subject: name_attributes(cert.subject()),
        issuer: name_attributes(cert.issuer()),
        subject_alternative_names: alternative(false),
        issuer_alternative_names: alternative(true),
        serial_hex: hex::encode_upper(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        subject_der: cert.subject().as_raw().to_vec(),
        issuer_der: cert.issuer().as_raw().to_vec(),
        der: der.clone(),
    };
    Ok(parsed)
}

impl ParsedCertificate {
    fn x509(&self) -> X509Certificate<'_> {
        X509Certificate::from_der(&self.der).expect("parsed once already").1
    }

    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Whether `issuer` names this certificate's issuer and its key signed it.
    pub fn is_signed_by(&self, issuer: &ParsedCertificate) -> bool {
        if self.issuer_der != issuer.subject_der {
            return false;
        }
        let (cert, issuer) = (self.x509(), issuer.x509());
        verifies(
            &cert.signature_algorithm.algorithm.to_id_string(),
            issuer.public_key(),
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
    }

    /// Whether the issuer DN equals `issuer`'s subject DN (same-subject CAs may differ in key).
    pub fn names_issuer(&self, issuer: &ParsedCertificate) -> bool {
        self.issuer_der == issuer.subject_der
    }

    pub fn is_self_signed(&self) -> bool {
        self.is_signed_by(self)
    }

    pub fn common_name(&self) -> Option<&str> {
        self.subject.iter().find(|(k, _)| k == "CommonName").map(|(_, v)| v.as_str())
    }

    /// The SubjectPublicKeyInfo DER, to compare keys.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.x509().public_key().raw.to_vec()
    }
}

pub fn parse_csr_pem(text: &str) -> Result<Csr, PkiError> {
    let der = first_block(text, "CERTIFICATE REQUEST", PkiError::InvalidCsr)?;
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|err| PkiError::InvalidCsr(format!("The certificate signing request could not be parsed: {err}")))?;
    let info = &csr.certification_request_info;
    if !verifies(
        &csr.signature_algorithm.algorithm.to_id_string(),
        &info.subject_pki,
        info.raw,
        csr.signature_value.data.as_ref(),
    ) {
        return Err(PkiError::InvalidCsr("The certificate signing request signature is not valid.".into()));
    }
    Ok(Csr { pem: pem_block("CERTIFICATE REQUEST", &der), subject: name_attributes(&info.subject) })
}
