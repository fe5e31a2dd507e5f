use ferrocore_model::ResourceKind;
use ferrocore_model::security::{Certificate, CertificateStatus};
use ferrocore_registry::{CertificateCreated, Registry};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, empty, marker_reply, reply, timestamp};
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CsrDto {
    certificate_signing_request: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RegisterDto {
    certificate_pem: String,
    ca_certificate_pem: Option<String>,
    status: Option<String>,
}

fn created_json(created: &CertificateCreated) -> Value {
    json!({"certificateArn": created.arn, "certificateId": created.id, "certificatePem": created.pem})
}

pub(super) async fn create_keys_and_certificate(registry: &Registry, input: &Input) -> Answer {
    let created = registry.create_keys_and_certificate(input.query_flag("setAsActive")?).await?;
    let mut value = created_json(&created);
    if let Some((public, private)) = &created.key_pair {
        value["keyPair"] = json!({"PublicKey": public, "PrivateKey": private});
    }
    reply(value)
}

pub(super) async fn create_from_csr(registry: &Registry, input: &Input) -> Answer {
    let dto: CsrDto = input.json()?;
    let created = registry
        .create_certificate_from_csr(&dto.certificate_signing_request, input.query_flag("setAsActive")?)
        .await?;
    reply(created_json(&created))
}

/// The status a registration asks for: `status`, else the deprecated `setAsActive`.
fn registration_status(dto: &RegisterDto, input: &Input) -> Result<CertificateStatus, crate::ApiError> {
    match &dto.status {
        Some(status) => Ok(CertificateStatus::parse(status)?),
        None if input.query_flag("setAsActive")? => Ok(CertificateStatus::Active),
        None => Ok(CertificateStatus::Inactive),
    }
}

pub(super) async fn register(registry: &Registry, input: &Input) -> Answer {
    let dto: RegisterDto = input.json()?;
    let status = registration_status(&dto, input)?;
    let created =
        registry.register_certificate(&dto.certificate_pem, dto.ca_certificate_pem.as_deref(), status).await?;
    reply(json!({"certificateArn": created.arn, "certificateId": created.id}))
}

pub(super) async fn register_without_ca(registry: &Registry, input: &Input) -> Answer {
    let dto: RegisterDto = input.json()?;
    let status = registration_status(&dto, input)?;
    let created = registry.register_certificate_without_ca(&dto.certificate_pem, status).await?;
    reply(json!({"certificateArn": created.arn, "certificateId": created.id}))
}

pub(super) async fn describe(registry: &Registry, input: &Input) -> Answer {
    let certificate = registry.describe_certificate(&input.label("certificateId")).await?;
    reply(json!({
        "certificateDescription": {
            "certificateArn": registry.arn(ResourceKind::Certificate, &certificate.id),
            "certificateId": certificate.id,
            "caCertificateId": certificate.ca_certificate_id,
            "status": certificate.status.as_str(),
            "certificatePem": certificate.pem,
            "ownedBy": registry.account().id,
            "creationDate": timestamp(certificate.creation_date),
            "lastModifiedDate": timestamp(certificate.last_modified_date),
            "customerVersion": certificate.customer_version,
            "generationId": certificate.generation_id,
            "transferData": {},
            "validity": {"notBefore": certificate.not_before, "notAfter": certificate.not_after},
            "certificateMode": certificate.mode.as_str(),
        }
    }))
}

fn summary_json(registry: &Registry, certificate: Certificate) -> Value {
    json!({
        "certificateArn": registry.arn(ResourceKind::Certificate, &certificate.id),
        "certificateId": certificate.id,
        "status": certificate.status.as_str(),
        "certificateMode": certificate.mode.as_str(),
        "creationDate": timestamp(certificate.creation_date),
    })
}

pub(super) async fn list(registry: &Registry, input: &Input, ca_id: Option<String>) -> Answer {
    let ascending = input.query_flag("isAscendingOrder")?;
    let page = registry.list_certificates(ca_id.as_deref(), ascending, &input.marker_page()?).await?;
    marker_reply("certificates", page, |c| summary_json(registry, c))
}

pub(super) async fn update(registry: &Registry, input: &Input) -> Answer {
    let status = input.query("newStatus").ok_or_else(|| crate::ApiError::invalid("newStatus is required."))?;
    registry.update_certificate(&input.label("certificateId"), CertificateStatus::parse(status)?).await?;
    empty()
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_certificate(&input.label("certificateId"), input.query_flag("forceDelete")?).await?;
    empty()
}
