use ferrocore_model::ResourceKind;
use ferrocore_registry::Registry;
use serde::Deserialize;
use serde_json::json;

use super::{Answer, TagDto, empty, marker_reply, reply, tags_from, timestamp};
use crate::error::ApiError;
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreatePolicyDto {
    policy_document: String,
    tags: Option<Vec<TagDto>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct VersionDto {
    policy_document: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TargetDto {
    target: String,
}

/// Where an attach/detach call carries its target.
pub(super) enum TargetIn {
    Body,
    /// The deprecated principal-policy operations: header `x-amzn-iot-principal`.
    PrincipalHeader,
}

fn version_label(input: &Input) -> Result<u32, ApiError> {
    let raw = input.label("policyVersionId");
    raw.parse().map_err(|_| ApiError::invalid(format!("The policy version id {raw} is not valid.")))
}

pub(super) async fn create(registry: &Registry, input: &Input) -> Answer {
    let dto: CreatePolicyDto = input.json()?;
    let name = input.label("policyName");
    let policy = registry.create_policy(&name, &dto.policy_document, &tags_from(dto.tags)).await?;
    reply(json!({
        "policyName": policy.name,
        "policyArn": registry.arn(ResourceKind::Policy, &name),
        "policyDocument": policy.default_document(),
        "policyVersionId": policy.default_version.to_string(),
    }))
}

pub(super) async fn get(registry: &Registry, input: &Input) -> Answer {
    let policy = registry.get_policy(&input.label("policyName")).await?;
    reply(json!({
        "policyName": policy.name,
        "policyArn": registry.arn(ResourceKind::Policy, &policy.name),
        "policyDocument": policy.default_document(),
        "defaultVersionId": policy.default_version.to_string(),
        "creationDate": timestamp(policy.creation_date),
        "lastModifiedDate": timestamp(policy.last_modified_date),
        "generationId": policy.generation_id,
    }))
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_policy(&input.label("policyName")).await?;
    empty()
}

fn policy_ref(registry: &Registry, name: String) -> serde_json::Value {
    json!({"policyArn": registry.arn(ResourceKind::Policy, &name), "policyName": name})
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_policies(&input.marker_page()?).await?;
    marker_reply("policies", page, |p| policy_ref(registry, p.name))
}

pub(super) async fn create_version(registry: &Registry, input: &Input) -> Answer {
    let dto: VersionDto = input.json()?;
    let name = input.label("policyName");
    let set_as_default = input.query_flag("setAsDefault")?;
    let version = registry.create_policy_version(&name, &dto.policy_document, set_as_default).await?;
    let policy = registry.get_policy(&name).await?;
    reply(json!({
        "policyArn": registry.arn(ResourceKind::Policy, &name),
        "policyDocument": dto.policy_document,
        "policyVersionId": version.to_string(),
        "isDefaultVersion": policy.default_version == version,
    }))
}

pub(super) async fn get_version(registry: &Registry, input: &Input) -> Answer {
    let (policy, version) = registry.get_policy_version(&input.label("policyName"), version_label(input)?).await?;
    reply(json!({
        "policyArn": registry.arn(ResourceKind::Policy, &policy.name),
        "policyName": policy.name,
        "policyDocument": version.document,
        "policyVersionId": version.id.to_string(),
        "isDefaultVersion": policy.default_version == version.id,
        "creationDate": timestamp(version.creation_date),
        "lastModifiedDate": timestamp(version.creation_date),
        "generationId": policy.generation_id,
    }))
}

pub(super) async fn list_versions(registry: &Registry, input: &Input) -> Answer {
    let policy = registry.get_policy(&input.label("policyName")).await?;
    let mut versions = policy.versions.clone();
    versions.sort_by_key(|v| std::cmp::Reverse(v.id));
    let versions: Vec<_> = versions
        .iter()
        .map(|v| {
            json!({
                "versionId": v.id.to_string(),
                "isDefaultVersion": v.id == policy.default_version,
                "createDate": timestamp(v.creation_date),
            })
        })
        .collect();
    reply(json!({"policyVersions": versions}))
}

pub(super) async fn delete_version(registry: &Registry, input: &Input) -> Answer {
    registry.delete_policy_version(&input.label("policyName"), version_label(input)?).await?;
    empty()
}

pub(super) async fn set_default_version(registry: &Registry, input: &Input) -> Answer {
    registry.set_default_policy_version(&input.label("policyName"), version_label(input)?).await?;
    empty()
}

fn target(input: &Input, location: TargetIn) -> Result<String, ApiError> {
    match location {
        TargetIn::Body => Ok(input.json::<TargetDto>()?.target),
        TargetIn::PrincipalHeader => input.header("x-amzn-iot-principal", "principal"),
    }
}

pub(super) async fn attach(registry: &Registry, input: &Input, location: TargetIn) -> Answer {
    registry.attach_policy(&input.label("policyName"), &target(input, location)?).await?;
    empty()
}

pub(super) async fn detach(registry: &Registry, input: &Input, location: TargetIn) -> Answer {
    registry.detach_policy(&input.label("policyName"), &target(input, location)?).await?;
    empty()
}

pub(super) async fn list_attached(registry: &Registry, input: &Input) -> Answer {
    let page = registry
        .list_attached_policies(&input.label("target"), input.query_flag("recursive")?, &input.marker_page()?)
        .await?;
    marker_reply("policies", page, |name| policy_ref(registry, name))
}

pub(super) async fn list_targets(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_targets_for_policy(&input.label("policyName"), &input.marker_page()?).await?;
    marker_reply("targets", page, |t| json!(t))
}

pub(super) async fn list_principals(registry: &Registry, input: &Input) -> Answer {
    let name = input.header("x-amzn-iot-policy", "policyName")?;
    let page = registry.list_policy_principals(&name, &input.marker_page()?).await?;
    marker_reply("principals", page, |p| json!(p))
}

pub(super) async fn list_principal_policies(registry: &Registry, input: &Input) -> Answer {
    let principal = input.header("x-amzn-iot-principal", "principal")?;
    let page = registry.list_attached_policies(&principal, false, &input.marker_page()?).await?;
    marker_reply("policies", page, |name| policy_ref(registry, name))
}
