use ferrocore_registry::Registry;
use serde::Deserialize;
use serde_json::Value;

use super::{Answer, TagDto, empty, page_reply, tags_from, tags_json};
use crate::error::ApiError;
use crate::input::Input;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceDto {
    resource_arn: String,
    tags: Vec<TagDto>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResourceDto {
    resource_arn: String,
    tag_keys: Vec<String>,
}

pub(super) async fn tag(registry: &Registry, input: &Input) -> Answer {
    let dto: TagResourceDto = input.json()?;
    registry.tag_resource(&dto.resource_arn, &tags_from(Some(dto.tags))).await?;
    empty()
}

pub(super) async fn untag(registry: &Registry, input: &Input) -> Answer {
    let dto: UntagResourceDto = input.json()?;
    registry.untag_resource(&dto.resource_arn, &dto.tag_keys).await?;
    empty()
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let arn = input.query("resourceArn").ok_or_else(|| ApiError::invalid("resourceArn is required."))?;
    let page = registry.list_tags_for_resource(arn, &input.page()?).await?;
    page_reply("tags", page, |tag| tags_json([tag]).pop().unwrap_or(Value::Null))
}
