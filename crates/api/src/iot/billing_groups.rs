use ferrocore_model::ResourceKind;
use ferrocore_registry::{CreateBillingGroup, Registry};
use serde::Deserialize;
use serde_json::json;

use super::{Answer, TagDto, empty, name_or_arn, page_reply, reply, tags_from, timestamp};
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PropertiesDto {
    billing_group_description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateBillingGroupDto {
    billing_group_properties: Option<PropertiesDto>,
    tags: Option<Vec<TagDto>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateBillingGroupDto {
    billing_group_properties: Option<PropertiesDto>,
    expected_version: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MembershipDto {
    billing_group_name: Option<String>,
    billing_group_arn: Option<String>,
    thing_name: Option<String>,
    thing_arn: Option<String>,
}

pub(super) async fn create(registry: &Registry, input: &Input) -> Answer {
    let dto: CreateBillingGroupDto = input.json()?;
    let created = registry
        .create_billing_group(CreateBillingGroup {
            name: input.label("billingGroupName"),
            description: dto.billing_group_properties.and_then(|p| p.billing_group_description),
            tags: tags_from(dto.tags),
        })
        .await?;
    reply(json!({"billingGroupName": created.name, "billingGroupArn": created.arn, "billingGroupId": created.id}))
}

pub(super) async fn describe(registry: &Registry, input: &Input) -> Answer {
    let group = registry.describe_billing_group(&input.label("billingGroupName")).await?;
    reply(json!({
        "billingGroupName": group.name,
        "billingGroupId": group.id,
        "billingGroupArn": registry.arn(ResourceKind::BillingGroup, &group.name),
        "version": group.version,
        "billingGroupProperties": {"billingGroupDescription": group.description},
        "billingGroupMetadata": {"creationDate": timestamp(group.creation_date)},
    }))
}

pub(super) async fn update(registry: &Registry, input: &Input) -> Answer {
    let dto: UpdateBillingGroupDto = input.json()?;
    let description = dto.billing_group_properties.and_then(|p| p.billing_group_description);
    let version =
        registry.update_billing_group(&input.label("billingGroupName"), description, dto.expected_version).await?;
    reply(json!({"version": version}))
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_billing_group(&input.label("billingGroupName"), input.query_as("expectedVersion")?).await?;
    empty()
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_billing_groups(input.query("namePrefixFilter"), &input.page()?).await?;
    page_reply(
        "billingGroups",
        page,
        |g| json!({"groupName": g.name, "groupArn": registry.arn(ResourceKind::BillingGroup, &g.name)}),
    )
}

pub(super) async fn set_membership(registry: &Registry, input: &Input, member: bool) -> Answer {
    let dto: MembershipDto = input.json()?;
    let group = name_or_arn(dto.billing_group_name, dto.billing_group_arn, "billingGroup")?;
    let thing = name_or_arn(dto.thing_name, dto.thing_arn, "thing")?;
    registry.set_thing_billing_group(&thing, &group, member).await?;
    empty()
}

pub(super) async fn list_things(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_things_in_billing_group(&input.label("billingGroupName"), &input.page()?).await?;
    page_reply("things", page, |name| json!(name))
}
