use ferrocore_model::ResourceKind;
use ferrocore_registry::Registry;
use serde::Deserialize;
use serde_json::json;

use super::{Answer, TagDto, empty, marker_reply, reply, tags_from, timestamp};
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RoleAliasDto {
    role_arn: Option<String>,
    credential_duration_seconds: Option<i64>,
    tags: Option<Vec<TagDto>>,
}

pub(super) async fn create(registry: &Registry, input: &Input) -> Answer {
    let dto: RoleAliasDto = input.json()?;
    let alias = input.label("roleAlias");
    let role_arn = dto.role_arn.ok_or_else(|| crate::ApiError::invalid("roleArn is required."))?;
    let arn =
        registry.create_role_alias(&alias, &role_arn, dto.credential_duration_seconds, &tags_from(dto.tags)).await?;
    reply(json!({"roleAlias": alias, "roleAliasArn": arn}))
}

pub(super) async fn describe(registry: &Registry, input: &Input) -> Answer {
    let alias = registry.describe_role_alias(&input.label("roleAlias")).await?;
    reply(json!({
        "roleAliasDescription": {
            "roleAlias": alias.alias,
            "roleAliasArn": registry.arn(ResourceKind::RoleAlias, &alias.alias),
            "roleArn": alias.role_arn,
            "owner": registry.account().id,
            "credentialDurationSeconds": alias.credential_duration_seconds,
            "creationDate": timestamp(alias.creation_date),
            "lastModifiedDate": timestamp(alias.last_modified_date),
        }
    }))
}

pub(super) async fn update(registry: &Registry, input: &Input) -> Answer {
    let dto: RoleAliasDto = input.json()?;
    let alias = input.label("roleAlias");
    registry.update_role_alias(&alias, dto.role_arn.as_deref(), dto.credential_duration_seconds).await?;
    reply(json!({"roleAlias": alias, "roleAliasArn": registry.arn(ResourceKind::RoleAlias, &alias)}))
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_role_alias(&input.label("roleAlias")).await?;
    empty()
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_role_aliases(&input.marker_page()?).await?;
    marker_reply("roleAliases", page, |alias| json!(alias))
}
