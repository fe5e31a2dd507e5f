use ferrocore_model::ResourceKind;
use ferrocore_model::security::{CaStatus, CertificateMode, RegistrationConfig};
use ferrocore_registry::{RegisterCaCertificate, Registry, UpdateCaCertificate};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, TagDto, empty, marker_reply, reply, tags_from, timestamp};
use crate::error::ApiError;
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RegistrationConfigDto {
    template_body: Option<String>,
    template_name: Option<String>,
    role_arn: Option<String>,
}

impl From<RegistrationConfigDto> for RegistrationConfig {
    fn from(dto: RegistrationConfigDto) -> Self {
        Self { template_body: dto.template_body, template_name: dto.template_name, role_arn: dto.role_arn }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RegisterDto {
    ca_certificate: String,
    verification_certificate: Option<String>,
    registration_config: Option<RegistrationConfigDto>,
    tags: Option<Vec<TagDto>>,
    certificate_mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateDto {
    registration_config: Option<RegistrationConfigDto>,
    #[serde(default)]
    remove_auto_registration: bool,
}

pub(super) async fn get_registration_code(registry: &Registry) -> Answer {
    reply(json!({"registrationCode": registry.registration_code().await?}))
}

pub(super) async fn delete_registration_code(registry: &Registry) -> Answer {
    registry.delete_registration_code().await?;
    empty()
}

fn mode(text: Option<&str>) -> Result<CertificateMode, ApiError> {
    match text {
        None | Some("DEFAULT") => Ok(CertificateMode::Default),
        Some("SNI_ONLY") => Ok(CertificateMode::SniOnly),
        Some(other) => Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{other}' at 'certificateMode' failed to satisfy constraint: Member must satisfy enum value set: [DEFAULT, SNI_ONLY]"
        ))),
    }
}

pub(super) async fn register(registry: &Registry, input: &Input) -> Answer {
    let dto: RegisterDto = input.json()?;
    let (id, arn) = registry
        .register_ca_certificate(RegisterCaCertificate {
            ca_pem: dto.ca_certificate,
            verification_pem: dto.verification_certificate,
            mode: mode(dto.certificate_mode.as_deref())?,
            set_as_active: input.query_flag("setAsActive")?,
            allow_auto_registration: input.query_flag("allowAutoRegistration")?,
            registration_config: dto.registration_config.map(Into::into).unwrap_or_default(),
            tags: tags_from(dto.tags),
        })
        .await?;
    reply(json!({"certificateArn": arn, "certificateId": id}))
}

fn auto_registration(enabled: bool) -> &'static str {
    if enabled { "ENABLE" } else { "DISABLE" }
}

pub(super) async fn describe(registry: &Registry, input: &Input) -> Answer {
    let ca = registry.describe_ca_certificate(&input.label("caCertificateId")).await?;
    let config = &ca.registration_config;
    let registration_config = (config != &RegistrationConfig::default()).then(|| {
        json!({"templateBody": config.template_body, "templateName": config.template_name, "roleArn": config.role_arn})
    });
    reply(json!({
        "certificateDescription": {
            "certificateArn": registry.arn(ResourceKind::CaCertificate, &ca.id),
            "certificateId": ca.id,
            "status": ca.status.as_str(),
            "certificatePem": ca.pem,
            "ownedBy": registry.account().id,
            "creationDate": timestamp(ca.creation_date),
            "autoRegistrationStatus": auto_registration(ca.auto_registration),
            "lastModifiedDate": timestamp(ca.last_modified_date),
            "customerVersion": ca.customer_version,
            "generationId": ca.generation_id,
            "validity": {"notBefore": ca.not_before, "notAfter": ca.not_after},
            "certificateMode": ca.mode.as_str(),
        },
        "registrationConfig": registration_config,
    }))
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_ca_certificates(input.query_flag("isAscendingOrder")?, &input.marker_page()?).await?;
    marker_reply("certificates", page, |ca| -> Value {
        json!({
            "certificateArn": registry.arn(ResourceKind::CaCertificate, &ca.id),
            "certificateId": ca.id,
            "status": ca.status.as_str(),
            "creationDate": timestamp(ca.creation_date),
        })
    })
}

pub(super) async fn update(registry: &Registry, input: &Input) -> Answer {
    let dto: UpdateDto = input.json()?;
    let new_status = match input.query("newStatus") {
        None => None,
        Some("ACTIVE") => Some(CaStatus::Active),
        Some("INACTIVE") => Some(CaStatus::Inactive),
        Some(other) => {
            return Err(ApiError::invalid(format!("The status {other} is not valid for a CA certificate.")));
        }
    };
    let new_auto_registration = match input.query("newAutoRegistrationStatus") {
        None => None,
        Some("ENABLE") => Some(true),
        Some("DISABLE") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!("The auto-registration status {other} is not valid.")));
        }
    };
    registry
        .update_ca_certificate(
            &input.label("caCertificateId"),
            UpdateCaCertificate {
                new_status,
                new_auto_registration,
                registration_config: dto.registration_config.map(Into::into),
                remove_auto_registration: dto.remove_auto_registration,
            },
        )
        .await?;
    empty()
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_ca_certificate(&input.label("caCertificateId")).await?;
    empty()
}
