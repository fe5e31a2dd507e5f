//! CA certificates and the registration code that proves ownership of their keys.

use ferrocore_model::names::CERTIFICATE_ID;
use ferrocore_model::registry::{Tags, validate_tags};
use ferrocore_model::security::{CaCertificate, CaStatus, CertificateMode, RegistrationConfig};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_pki::parse_certificate_pem;
use ferrocore_store::{Collection, Expect, Write};

use crate::certificates::creation_order_key;
use crate::paging::{Page, PageRequest, paginate};
use crate::{Outcome, Registry, new_id, put};

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

impl Registry {
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
            let existing = self.load_all::<CaCertificate>(Collection::CaCertificate).await?;
            if existing.iter().any(|c| c.value.id == ca.id) {
                return Err(Error::ResourceAlreadyExists {
                    message: "The CA certificate is already registered".into(),
                    resource_id: ca.id.clone(),
                    resource_arn: arn.clone(),
                });
            }
            let same_subject = existing
                .iter()
                .filter(|c| parse_certificate_pem(&c.value.pem).is_ok_and(|other| other.subject == ca.subject))
                .count();
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
            Ok(Outcome::write(
                vec![put(Collection::CaCertificate, &ca.id, Expect::Absent, &record)],
                (ca.id.clone(), arn.clone()),
            ))
        })
        .await
    }

    pub async fn describe_ca_certificate(&self, id: &str) -> Result<CaCertificate> {
        Ok(self.require_ca_certificate(id).await?.value)
    }

    pub async fn list_ca_certificates(&self, ascending: bool, page: &PageRequest) -> Result<Page<CaCertificate>> {
        let mut all: Vec<(String, CaCertificate)> = self
            .load_all::<CaCertificate>(Collection::CaCertificate)
            .await?
            .into_iter()
            .map(|c| (creation_order_key(c.value.creation_date, &c.value.id, ascending), c.value))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let page = paginate(all, |(key, _)| key.as_str(), page)?;
        Ok(Page { items: page.items.into_iter().map(|(_, c)| c).collect(), next_token: page.next_token })
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
            Ok(Outcome::write(vec![Write::delete(Collection::CaCertificate, id, loaded.expect())], ()))
        })
        .await
    }
}
