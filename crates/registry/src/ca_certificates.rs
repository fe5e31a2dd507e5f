//! CA certificates and the registration code that proves ownership of their keys.

use ferrocore_model::names::CERTIFICATE_ID;
use ferrocore_model::registry::{Tags, validate_tags};
use ferrocore_model::security::{CaCertificate, CaStatus, CertificateMode, RegistrationConfig};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_pki::parse_certificate_pem;
use ferrocore_store::{Collection, Expect, Write};

use std::collections::BTreeSet;

use crate::certificates::creation_order_key;
use crate::indexes::record_writes;
use crate::paging::{Page, PageBuilder, PageRequest, token_for};
use crate::{Loaded, Outcome, Registry, new_id, put, storage_failure};

/// CA certificates with one subject an account may register (AWS's limit).
const MAX_CAS_PER_SUBJECT: usize = 10;
const REGISTRATION_CODE_KEY: &str = "registration_code";

#[derive(Debug, Clone)]
pub struct RegisterCaCertificate {
    pub ca_pem: String,
    pub verification_pem: Option<String>,
    pub mode: CertificateMode,
    pub set_as_active: bool,
    pub allow_auto_registration: bool,
    pub registration_config: RegistrationConfig,
    pub tags: Tags,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateCaCertificate {
    pub new_status: Option<CaStatus>,
    pub new_auto_registration: Option<bool>,
    pub registration_config: Option<RegistrationConfig>,
    pub remove_auto_registration: bool,
}

/// A distinguished name as an index value (no spaces: the hex of its attribute pairs).
pub(crate) fn subject_value(subject: &[(String, String)]) -> String {
    token_for(&serde_json::to_string(subject).expect("strings serialize"))
}

/// A CA certificate's entries in `CaCertificateIndex`: its creation order both ways and
/// its subject. What they index never changes.
pub(crate) fn ca_entries(ca: &CaCertificate) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (ascending, direction) in [(true, "a"), (false, "d")] {
        keys.insert(format!("order/{direction} {}", creation_order_key(ca.creation_date, &ca.id, ascending)));
    }
    // Stored CAs were parsed when registered.
    if let Ok(parsed) = parse_certificate_pem(&ca.pem) {
        keys.insert(format!("subject/{} {}", subject_value(&parsed.subject), ca.id));
    }
    keys
}

fn ca_writes(id: &str, before: Option<&Loaded<CaCertificate>>, after: Option<&CaCertificate>) -> Vec<Write> {
    record_writes(Collection::CaCertificate, Collection::CaCertificateIndex, id, before, after, ca_entries)
}

impl Registry {
    /// The registered CA certificates with this subject (AWS allows a few per subject).
    pub(crate) async fn cas_with_subject(&self, subject: &[(String, String)]) -> Result<Vec<Loaded<CaCertificate>>> {
        let value = format!("subject/{}", subject_value(subject));
        let mut found = Vec::new();
        for id in self.all_indexed(Collection::CaCertificateIndex, &value).await? {
            if let Some(ca) = self.load::<CaCertificate>(Collection::CaCertificate, &id).await? {
                found.push(ca);
            }
        }
        Ok(found)
    }

    /// The account's registration code, created on first use.
    pub async fn registration_code(&self) -> Result<String> {
        self.transact(|| async {
            if let Some(code) = self.load::<String>(Collection::Setting, REGISTRATION_CODE_KEY).await? {
                return Ok(Outcome::answer(code.value));
            }
            let code = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            Ok(Outcome::write(vec![put(Collection::Setting, REGISTRATION_CODE_KEY, Expect::Absent, &code)], code))
        })
        .await
    }

    pub async fn delete_registration_code(&self) -> Result<()> {
        self.transact(|| async {
            match self.load::<String>(Collection::Setting, REGISTRATION_CODE_KEY).await? {
                Some(code) => Ok(Outcome::write(
                    vec![Write::delete(Collection::Setting, REGISTRATION_CODE_KEY, code.expect())],
                    (),
                )),
                None => Ok(Outcome::answer(())),
            }
        })
        .await
    }

    pub(crate) async fn require_ca_certificate(&self, id: &str) -> Result<crate::Loaded<CaCertificate>> {
        CERTIFICATE_ID.check("caCertificateId", id)?;
        self.load(Collection::CaCertificate, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("The CA certificate {id} does not exist.")))
    }

    pub async fn register_ca_certificate(&self, request: RegisterCaCertificate) -> Result<(String, String)> {
        validate_tags(&request.tags)?;
        let ca = self.parse_valid_certificate(&request.ca_pem)?;
        if !ca.is_ca {
            return Err(Error::CertificateValidation(
                "The certificate is not a CA certificate (basicConstraints CA:TRUE).".into(),
            ));
        }
        if request.mode == CertificateMode::Default {
            let Some(verification_pem) = &request.verification_pem else {
                return Err(Error::invalid("A verificationCertificate is required for certificateMode DEFAULT."));
            };
            let verification = self.parse_valid_certificate(verification_pem)?;
            if !verification.is_signed_by(&ca) {
                return Err(Error::CertificateValidation(
                    "The verification certificate is not signed by the CA certificate's private key.".into(),
                ));
            }
            let code = self.registration_code().await?;
            if verification.common_name() != Some(code.as_str()) {
                return Err(Error::RegistrationCodeValidation(
                    "The common name of the verification certificate does not match the registration code.".into(),
                ));
            }
        }
        let arn = self.arn(ResourceKind::CaCertificate, &ca.id);
        let (ca, request, arn) = (&ca, &request, &arn);
        self.transact(|| async move {
            if self.load::<CaCertificate>(Collection::CaCertificate, &ca.id).await?.is_some() {
                return Err(Error::ResourceAlreadyExists {
                    message: "The CA certificate is already registered".into(),
                    resource_id: ca.id.clone(),
                    resource_arn: arn.clone(),
                });
            }
            let same_subject = self.cas_with_subject(&ca.subject).await?.len();
            if same_subject >= MAX_CAS_PER_SUBJECT {
                return Err(Error::LimitExceeded(format!(
                    "At most {MAX_CAS_PER_SUBJECT} CA certificates with the same subject can be registered."
                )));
            }
            let now = self.now();
            let record = CaCertificate {
                id: ca.id.clone(),
                // As given: AWS answers the registered PEM byte for byte.
                pem: request.ca_pem.clone(),
                status: if request.set_as_active { CaStatus::Active } else { CaStatus::Inactive },
                auto_registration: request.allow_auto_registration,
                registration_config: request.registration_config.clone(),
                mode: request.mode,
                creation_date: now,
                last_modified_date: now,
                customer_version: 1,
                generation_id: new_id(),
                not_before: ca.not_before,
                not_after: ca.not_after,
                tags: request.tags.clone(),
            };
            Ok(Outcome::write(ca_writes(&ca.id, None, Some(&record)), (ca.id.clone(), arn.clone())))
        })
        .await
    }

    pub async fn describe_ca_certificate(&self, id: &str) -> Result<CaCertificate> {
        Ok(self.require_ca_certificate(id).await?.value)
    }

    /// One page in creation order from the index; the token is the last order key read.
    pub async fn list_ca_certificates(&self, ascending: bool, page: &PageRequest) -> Result<Page<CaCertificate>> {
        let prefix = if ascending { "order/a " } else { "order/d " };
        let mut builder = PageBuilder::new(page, page.after()?)?;
        loop {
            let start = format!("{prefix}{}", builder.after().unwrap_or_default());
            let entries = self
                .store
                .list(Collection::CaCertificateIndex, Some(&start), builder.chunk())
                .await
                .map_err(storage_failure)?;
            let orders: Vec<String> =
                entries.into_iter().map_while(|entry| entry.key.strip_prefix(prefix).map(str::to_string)).collect();
            let fetched = orders.len();
            for order in orders {
                let id = order.rsplit_once('|').map_or(order.as_str(), |(_, id)| id);
                let ca = self.load::<CaCertificate>(Collection::CaCertificate, id).await?.map(|c| c.value);
                if let Some(page) = builder.offer(order, ca, &mut |_| true) {
                    return Ok(page);
                }
            }
            if let Some(page) = builder.chunk_done(fetched) {
                return Ok(page);
            }
        }
    }

    pub async fn update_ca_certificate(&self, id: &str, update: UpdateCaCertificate) -> Result<()> {
        let update = &update;
        self.transact(|| async move {
            let loaded = self.require_ca_certificate(id).await?;
            let mut ca = loaded.value.clone();
            if let Some(status) = update.new_status {
                ca.status = status;
            }
            if let Some(auto) = update.new_auto_registration {
                ca.auto_registration = auto;
            }
            if update.remove_auto_registration {
                ca.registration_config = RegistrationConfig::default();
            } else if let Some(config) = &update.registration_config {
                ca.registration_config = config.clone();
            }
            ca.last_modified_date = self.now();
            ca.customer_version += 1;
            Ok(Outcome::write(vec![put(Collection::CaCertificate, id, loaded.expect(), &ca)], ()))
        })
        .await
    }

    /// Refused while ACTIVE.
    pub async fn delete_ca_certificate(&self, id: &str) -> Result<()> {
        self.transact(|| async {
            let loaded = self.require_ca_certificate(id).await?;
            if loaded.value.status == CaStatus::Active {
                return Err(Error::CertificateState(format!(
                    "The CA certificate must be deactivated (not ACTIVE) before deletion. Id: {id}"
                )));
            }
            Ok(Outcome::write(ca_writes(id, Some(&loaded), None), ()))
        })
        .await
    }
}
