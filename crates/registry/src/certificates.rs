//! Device certificates: creating, registering, status changes and deletion.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ferrocore_model::names::CERTIFICATE_ID;
use ferrocore_model::security::{CaCertificate, CaStatus, Certificate, CertificateMode, CertificateStatus};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_pki::{ParsedCertificate, PkiError, parse_certificate_pem, parse_csr_pem};
use ferrocore_store::{Collection, Write};

use crate::indexes::record_writes;
use crate::paging::{Page, PageBuilder, PageRequest};
use crate::{Loaded, Outcome, Registry, SCAN_CHUNK, decode_record, new_id, put, storage_failure};

/// What a certificate-creating call answers.
#[derive(Debug, Clone)]
pub struct CertificateCreated {
    pub id: String,
    pub arn: String,
    pub pem: String,
    /// (public key PEM, private key PEM), only for CreateKeysAndCertificate.
    pub key_pair: Option<(String, String)>,
}

fn invalid_certificate(err: PkiError) -> Error {
    Error::CertificateValidation(format!("The certificate is not valid: {err}"))
}

pub(crate) fn certificate_not_found(id: &str) -> Error {
    Error::not_found(format!("The certificate {id} does not exist."))
}

/// Key for listing in creation order (ascending) or its reverse.
pub(crate) fn creation_order_key(creation: i64, id: &str, ascending: bool) -> String {
    let rank = if ascending { creation } else { i64::MAX - creation };
    format!("{rank:020}|{id}")
}

/// A certificate's entries in `CertificateOrder`: its creation order, ascending (`a`) and
/// descending (`d`), among all certificates and among its CA's. What they index never changes.
pub(crate) fn certificate_entries(certificate: &Certificate) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (ascending, direction) in [(true, "a"), (false, "d")] {
        let order = creation_order_key(certificate.creation_date, &certificate.id, ascending);
        keys.insert(format!("all/{direction} {order}"));
        if let Some(ca) = &certificate.ca_certificate_id {
            keys.insert(format!("ca/{ca}/{direction} {order}"));
        }
    }
    keys
}

/// The writes that create or delete a certificate, with its order entries.
fn certificate_writes(id: &str, before: Option<&Loaded<Certificate>>, after: Option<&Certificate>) -> Vec<Write> {
    record_writes(Collection::Certificate, Collection::CertificateOrder, id, before, after, certificate_entries)
}

impl Registry {
    pub(crate) fn parse_valid_certificate(&self, pem: &str) -> Result<ParsedCertificate> {
        let parsed = parse_certificate_pem(pem).map_err(invalid_certificate)?;
        let now = self.now() / 1000;
        if now > parsed.not_after {
            return Err(Error::CertificateValidation("The certificate has expired.".into()));
        }
        if now < parsed.not_before {
            return Err(Error::CertificateValidation("The certificate is not yet valid.".into()));
        }
        Ok(parsed)
    }

    /// A new certificate record. `pem` is kept as the caller gave it: AWS answers
    /// the registered PEM byte for byte (Terraform compares it with its config).
    fn new_certificate(
        &self,
        pem: &str,
        parsed: &ParsedCertificate,
        status: CertificateStatus,
        ca: Option<&CaCertificate>,
        mode: CertificateMode,
    ) -> Certificate {
        let now = self.now();
        Certificate {
            id: parsed.id.clone(),
            pem: pem.to_string(),
            status,
            ca_certificate_id: ca.map(|c| c.id.clone()),
            mode,
            creation_date: now,
            last_modified_date: now,
            customer_version: 1,
            generation_id: new_id(),
            not_before: parsed.not_before,
            not_after: parsed.not_after,
            things: Default::default(),
        }
    }

    /// Stores a new certificate; a certificate already known is a conflict.
    /// `issuer_check` holds the registered CA the certificate was verified against.
    async fn insert_certificate(
        &self,
        certificate: Certificate,
        key_pair: Option<(String, String)>,
        issuer_check: Option<Write>,
    ) -> Result<CertificateCreated> {
        let arn = self.arn(ResourceKind::Certificate, &certificate.id);
        let (certificate, key_pair, arn, issuer_check) = (&certificate, &key_pair, &arn, &issuer_check);
        self.transact(|| async move {
            if self.load::<Certificate>(Collection::Certificate, &certificate.id).await?.is_some() {
                return Err(Error::ResourceAlreadyExists {
                    message: "The certificate is already provisioned or registered".into(),
                    resource_id: certificate.id.clone(),
                    resource_arn: arn.clone(),
                });
            }
            let created = CertificateCreated {
                id: certificate.id.clone(),
                arn: arn.clone(),
                pem: certificate.pem.clone(),
                key_pair: key_pair.clone(),
            };
            let mut writes = certificate_writes(&certificate.id, None, Some(certificate));
            writes.extend(issuer_check.iter().cloned());
            Ok(Outcome::write(writes, created))
        })
        .await
    }

    fn initial_status(set_as_active: bool) -> CertificateStatus {
        if set_as_active { CertificateStatus::Active } else { CertificateStatus::Inactive }
    }

    pub async fn create_keys_and_certificate(&self, set_as_active: bool) -> Result<CertificateCreated> {
        let issued = self
            .issuer
            .issue_device("AWS IoT Certificate", self.now() / 1000)
            .map_err(|err| Error::Internal(format!("Could not issue a certificate: {err}")))?;
        let parsed = parse_certificate_pem(&issued.certificate_pem).map_err(invalid_certificate)?;
        let status = Self::initial_status(set_as_active);
        let certificate =
            self.new_certificate(&issued.certificate_pem, &parsed, status, None, CertificateMode::Default);
        self.insert_certificate(certificate, Some((issued.public_key_pem, issued.private_key_pem)), None).await
    }

    pub async fn create_certificate_from_csr(&self, csr_pem: &str, set_as_active: bool) -> Result<CertificateCreated> {
        let csr = parse_csr_pem(csr_pem).map_err(|err| Error::invalid(err.to_string()))?;
        let pem =
            self.issuer.issue_for_csr(&csr.pem, self.now() / 1000).map_err(|err| Error::invalid(err.to_string()))?;
        let parsed = parse_certificate_pem(&pem).map_err(invalid_certificate)?;
        let certificate =
            self.new_certificate(&pem, &parsed, Self::initial_status(set_as_active), None, CertificateMode::Default);
        self.insert_certificate(certificate, None, None).await
    }

    /// RegisterCertificate: the issuer must be a registered CA (named by `ca_pem`
    /// when several share a subject) whose key signed the certificate.
    pub async fn register_certificate(
        &self,
        pem: &str,
        ca_pem: Option<&str>,
        status: CertificateStatus,
    ) -> Result<CertificateCreated> {
        let parsed = self.parse_valid_certificate(pem)?;
        // The issuer is among the CAs named by `ca_pem`, or those whose subject is the
        // certificate's issuer name.
        let wanted_ca = match ca_pem {
            Some(ca_pem) => Some(parse_certificate_pem(ca_pem).map_err(invalid_certificate)?.id),
            None => None,
        };
        let cas = match &wanted_ca {
            Some(id) => self.load::<CaCertificate>(Collection::CaCertificate, id).await?.into_iter().collect(),
            None => self.cas_with_subject(&parsed.issuer).await?,
        };
        let revision_of = |id: &str| cas.iter().find(|c| c.value.id == id).map(|c| c.expect());
        let candidates: Vec<&CaCertificate> = cas.iter().map(|c| &c.value).collect();
        if wanted_ca.is_some() && candidates.is_empty() {
            return Err(Error::CertificateValidation(
                "The CA certificate given in caCertificatePem is not registered.".into(),
            ));
        }
        let issuer = candidates
            .into_iter()
            .find(|ca| parse_certificate_pem(&ca.pem).is_ok_and(|ca_cert| parsed.is_signed_by(&ca_cert)));
        let Some(ca) = issuer else {
            return Err(Error::CertificateValidation(
                "The certificate is not signed by a CA certificate registered in this account.".into(),
            ));
        };
        let certificate = self.new_certificate(pem, &parsed, status, Some(ca), ca.mode);
        let issuer_check = revision_of(&ca.id).map(|expect| Write::hold(Collection::CaCertificate, &ca.id, expect));
        self.insert_certificate(certificate, None, issuer_check).await
    }

    pub async fn register_certificate_without_ca(
        &self,
        pem: &str,
        status: CertificateStatus,
    ) -> Result<CertificateCreated> {
        let parsed = self.parse_valid_certificate(pem)?;
        let certificate = self.new_certificate(pem, &parsed, status, None, CertificateMode::SniOnly);
        self.insert_certificate(certificate, None, None).await
    }

    pub(crate) async fn require_certificate(&self, id: &str) -> Result<crate::Loaded<Certificate>> {
        CERTIFICATE_ID.check("certificateId", id)?;
        self.load(Collection::Certificate, id).await?.ok_or_else(|| certificate_not_found(id))
    }

    pub async fn describe_certificate(&self, id: &str) -> Result<Certificate> {
        Ok(self.require_certificate(id).await?.value)
    }

    pub async fn list_certificates(
        &self,
        ca_id: Option<&str>,
        ascending: bool,
        page: &PageRequest,
    ) -> Result<Page<Certificate>> {
        if let Some(ca_id) = ca_id {
            self.require_ca_certificate(ca_id).await?;
        }
        // The index holds each certificate in both orders, overall and under its CA.
        let direction = if ascending { "a" } else { "d" };
        let prefix = match ca_id {
            Some(ca) => format!("ca/{ca}/{direction} "),
            None => format!("all/{direction} "),
        };
        let mut builder = PageBuilder::new(page, page.after()?)?;
        loop {
            let start = format!("{prefix}{}", builder.after().unwrap_or_default());
            let entries = self
                .store
                .list(Collection::CertificateOrder, Some(&start), builder.chunk())
                .await
                .map_err(storage_failure)?;
            let orders: Vec<String> =
                entries.into_iter().map_while(|entry| entry.key.strip_prefix(&prefix).map(str::to_string)).collect();
            let fetched = orders.len();
            for order in orders {
                let id = order.rsplit_once('|').map_or(order.as_str(), |(_, id)| id);
                let certificate = self.load::<Certificate>(Collection::Certificate, id).await?.map(|c| c.value);
                if let Some(page) = builder.offer(order, certificate, &mut |_| true) {
                    return Ok(page);
                }
            }
            if let Some(page) = builder.chunk_done(fetched) {
                return Ok(page);
            }
        }
    }

    pub async fn update_certificate(&self, id: &str, new_status: CertificateStatus) -> Result<()> {
        self.transact(|| async move {
            let loaded = self.require_certificate(id).await?;
            let mut certificate = loaded.value.clone();
            certificate.check_transition(new_status)?;
            if certificate.status == new_status {
                return Ok(Outcome::answer(()));
            }
            certificate.status = new_status;
            certificate.last_modified_date = self.now();
            certificate.customer_version += 1;
            Ok(Outcome::write(vec![put(Collection::Certificate, id, loaded.expect(), &certificate)], ()))
        })
        .await?;
        tracing::info!(certificate = id, status = new_status.as_str(), "certificate status changed");
        Ok(())
    }

    /// Refused while ACTIVE or attached to things; attached policies block it
    /// unless `force_delete`, which detaches them.
    pub async fn delete_certificate(&self, id: &str, force_delete: bool) -> Result<()> {
        let arn = &self.arn(ResourceKind::Certificate, id);
        self.transact(|| async move {
            let loaded = self.require_certificate(id).await?;
            let certificate = &loaded.value;
            if certificate.status == CertificateStatus::Active {
                return Err(Error::CertificateState(format!(
                    "Certificate must be deactivated (not ACTIVE) before deletion. Id: {id}"
                )));
            }
            if !certificate.things.is_empty() {
                return Err(Error::DeleteConflict(format!("Things must be detached before deletion (arn: {arn})")));
            }
            let mut writes = self.detach_target_everywhere(arn).await?;
            if !writes.is_empty() && !force_delete {
                return Err(Error::DeleteConflict(format!(
                    "Certificate policies must be detached before deletion (arn: {arn})"
                )));
            }
            // After the detachments: AttachPolicy holds the certificate, so one that committed
            // after they were read is found here.
            writes.splice(0..0, certificate_writes(id, Some(&loaded), None));
            writes.push(Write::none_with_prefix(Collection::PolicyTarget, format!("{arn} ")));
            Ok(Outcome::write(writes, ()))
        })
        .await
    }
}

/// What the device gateway's TLS verifier knows about registered certificates: each
/// certificate's status and CA, and each CA's status and PEM (held once per CA). The
/// registry updates the entries a committed write touched, never the whole snapshot.
#[derive(Debug, Default)]
pub struct TrustSnapshot {
    certificates: HashMap<String, CertificateTrust>,
    cas: HashMap<String, CaTrust>,
}

#[derive(Debug, Clone)]
struct CertificateTrust {
    active: bool,
    ca: Option<String>,
}

/// A registered CA as the verifier checks it.
#[derive(Debug, Clone)]
pub struct CaTrust {
    pub active: bool,
    pub pem: Arc<str>,
}

/// One registered certificate as the verifier checks it.
#[derive(Debug, Clone)]
pub struct DeviceTrust {
    pub active: bool,
    /// The registered CA the certificate belongs to.
    pub ca: Option<CaTrust>,
}

impl TrustSnapshot {
    /// The registered certificate with this id, with its CA. A certificate whose CA is no
    /// longer registered gets an inactive CA, so deleting a CA does not trust its devices again.
    pub fn device(&self, id: &str) -> Option<DeviceTrust> {
        let certificate = self.certificates.get(id)?;
        let ca = certificate
            .ca
            .as_ref()
            .map(|ca| self.cas.get(ca).cloned().unwrap_or_else(|| CaTrust { active: false, pem: Arc::from("") }));
        Some(DeviceTrust { active: certificate.active, ca })
    }

    fn set_certificate(&mut self, id: &str, certificate: Option<&Certificate>) {
        match certificate {
            Some(c) => {
                let trust =
                    CertificateTrust { active: c.status == CertificateStatus::Active, ca: c.ca_certificate_id.clone() };
                self.certificates.insert(id.to_string(), trust);
            }
            None => {
                self.certificates.remove(id);
            }
        }
    }

    fn set_ca(&mut self, id: &str, ca: Option<&CaCertificate>) {
        match ca {
            Some(ca) => {
                let trust = CaTrust { active: ca.status == CaStatus::Active, pem: ca.pem.as_str().into() };
                self.cas.insert(id.to_string(), trust);
            }
            None => {
                self.cas.remove(id);
            }
        }
    }
}

impl Registry {
    /// Loads the whole snapshot (at start).
    pub async fn refresh_trust(&self) -> Result<()> {
        let mut stale = self.trust_refresh.lock().await;
        self.load_trust().await?;
        *stale = false;
        Ok(())
    }

    async fn load_trust(&self) -> Result<()> {
        let mut fresh = TrustSnapshot::default();
        for ca in self.load_all::<CaCertificate>(Collection::CaCertificate).await? {
            fresh.set_ca(&ca.value.id, Some(&ca.value));
        }
        let mut after: Option<String> = None;
        loop {
            let batch = self
                .store
                .list(Collection::Certificate, after.as_deref(), SCAN_CHUNK)
                .await
                .map_err(storage_failure)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.key.clone());
            for record in &batch {
                let certificate: Certificate = decode_record(Collection::Certificate, record)?;
                fresh.set_certificate(&record.key, Some(&certificate));
            }
        }
        *self.trust.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Reloads the snapshot's entries for records a committed write touched. Refreshes
    /// take turns, so an entry read before a later commit never overwrites one read after
    /// it; after a failed refresh the next one reloads everything.
    pub(crate) async fn refresh_trust_of(&self, touched: &[(Collection, String)]) -> Result<()> {
        let mut stale = self.trust_refresh.lock().await;
        let outcome = match *stale {
            true => self.load_trust().await,
            false => self.reload_trust_entries(touched).await,
        };
        *stale = outcome.is_err();
        outcome
    }

    async fn reload_trust_entries(&self, touched: &[(Collection, String)]) -> Result<()> {
        for (collection, id) in touched {
            match collection {
                Collection::Certificate => {
                    let certificate = self.load::<Certificate>(Collection::Certificate, id).await?;
                    let mut trust = self.trust.write().unwrap_or_else(|e| e.into_inner());
                    trust.set_certificate(id, certificate.as_ref().map(|l| &l.value));
                }
                Collection::CaCertificate => {
                    let ca = self.load::<CaCertificate>(Collection::CaCertificate, id).await?;
                    let mut trust = self.trust.write().unwrap_or_else(|e| e.into_inner());
                    trust.set_ca(id, ca.as_ref().map(|l| &l.value));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_whose_ca_is_gone_is_not_trusted() {
        let certificate = |ca: &str| CertificateTrust { active: true, ca: Some(ca.to_string()) };
        let snapshot = TrustSnapshot {
            certificates: [("kept".to_string(), certificate("ca-1")), ("orphan".to_string(), certificate("ca-2"))]
                .into(),
            cas: [("ca-1".to_string(), CaTrust { active: true, pem: Arc::from("pem") })].into(),
        };
        assert!(snapshot.device("kept").unwrap().ca.is_some_and(|ca| ca.active), "positive control");
        assert!(snapshot.device("orphan").unwrap().ca.is_some_and(|ca| !ca.active));
        assert!(snapshot.device("unknown").is_none());
    }
}
