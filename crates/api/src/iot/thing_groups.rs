use ferrocore_model::registry::{AttributePayload, GroupProperties};
use ferrocore_registry::{CreateThingGroup, GroupRef, ListThingGroups, Registry};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, AttributePayloadDto, TagDto, empty, name_or_arn, page_reply, reply, tags_from, timestamp};
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PropertiesDto {
    thing_group_description: Option<String>,
    attribute_payload: Option<AttributePayloadDto>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateThingGroupDto {
    parent_group_name: Option<String>,
    thing_group_properties: Option<PropertiesDto>,
    tags: Option<Vec<TagDto>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateThingGroupDto {
    thing_group_properties: Option<PropertiesDto>,
    expected_version: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MembershipDto {
    thing_group_name: Option<String>,
    thing_group_arn: Option<String>,
    thing_name: Option<String>,
    thing_arn: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateGroupsForThingDto {
    thing_name: Option<String>,
    thing_groups_to_add: Option<Vec<String>>,
    thing_groups_to_remove: Option<Vec<String>>,
}

fn group_ref_json(group: GroupRef) -> Value {
    json!({"groupName": group.name, "groupArn": group.arn})
}

pub(super) async fn create(registry: &Registry, input: &Input) -> Answer {
    let dto: CreateThingGroupDto = input.json()?;
    let properties = dto.thing_group_properties.unwrap_or_default();
    let created = registry
        .create_thing_group(CreateThingGroup {
            name: input.label("thingGroupName"),
            parent: dto.parent_group_name,
            properties: GroupProperties {
                description: properties.thing_group_description,
                attributes: AttributePayload::from(properties.attribute_payload.unwrap_or_default())
                    .apply(&Default::default()),
            },
            tags: tags_from(dto.tags),
        })
        .await?;
    reply(json!({"thingGroupName": created.name, "thingGroupArn": created.arn, "thingGroupId": created.id}))
}

pub(super) async fn describe(registry: &Registry, input: &Input) -> Answer {
    let view = registry.describe_thing_group(&input.label("thingGroupName")).await?;
    let group = view.group;
    // Absent, not empty, when never set: Terraform reads an empty payload as a block to remove.
    let attributes =
        (!group.properties.attributes.is_empty()).then(|| json!({"attributes": group.properties.attributes}));
    reply(json!({
        "thingGroupName": group.name,
        "thingGroupId": group.id,
        "thingGroupArn": view.arn,
        "version": group.version,
        "thingGroupProperties": {
            "thingGroupDescription": group.properties.description,
            "attributePayload": attributes,
        },
        "thingGroupMetadata": {
            "parentGroupName": group.parent,
            "rootToParentThingGroups": view.root_to_parent.into_iter().map(group_ref_json).collect::<Vec<_>>(),
            "creationDate": timestamp(group.creation_date),
        },
    }))
}

pub(super) async fn update(registry: &Registry, input: &Input) -> Answer {
    let dto: UpdateThingGroupDto = input.json()?;
    let properties = dto.thing_group_properties.unwrap_or_default();
    let version = registry
        .update_thing_group(
            &input.label("thingGroupName"),
            properties.thing_group_description,
            properties.attribute_payload.map(Into::into),
            dto.expected_version,
        )
        .await?;
    reply(json!({"version": version}))
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_thing_group(&input.label("thingGroupName"), input.query_as("expectedVersion")?).await?;
    empty()
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let request = ListThingGroups {
        parent: input.query("parentGroup").map(str::to_string),
        name_prefix: input.query("namePrefixFilter").map(str::to_string),
        recursive: input.query_flag("recursive")?,
        page: input.page()?,
    };
    page_reply("thingGroups", registry.list_thing_groups(&request).await?, group_ref_json)
}

fn membership(input: &Input) -> Result<(String, String), crate::ApiError> {
    let dto: MembershipDto = input.json()?;
    let group = name_or_arn(dto.thing_group_name, dto.thing_group_arn, "thingGroup")?;
    let thing = name_or_arn(dto.thing_name, dto.thing_arn, "thing")?;
    Ok((group, thing))
}

pub(super) async fn add_thing(registry: &Registry, input: &Input) -> Answer {
    let (group, thing) = membership(input)?;
    registry.add_thing_to_thing_group(&group, &thing).await?;
    empty()
}

pub(super) async fn remove_thing(registry: &Registry, input: &Input) -> Answer {
    let (group, thing) = membership(input)?;
    registry.remove_thing_from_thing_group(&group, &thing).await?;
    empty()
}

pub(super) async fn update_for_thing(registry: &Registry, input: &Input) -> Answer {
    let dto: UpdateGroupsForThingDto = input.json()?;
    let thing = name_or_arn(dto.thing_name, None, "thing")?;
    registry
        .update_thing_groups_for_thing(
            &thing,
            &dto.thing_groups_to_add.unwrap_or_default(),
            &dto.thing_groups_to_remove.unwrap_or_default(),
        )
        .await?;
    empty()
}

pub(super) async fn list_things(registry: &Registry, input: &Input) -> Answer {
    let page = registry
        .list_things_in_thing_group(&input.label("thingGroupName"), input.query_flag("recursive")?, &input.page()?)
        .await?;
    page_reply("things", page, |name| json!(name))
}

pub(super) async fn list_for_thing(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_thing_groups_for_thing(&input.label("thingName"), &input.page()?).await?;
    page_reply("thingGroups", page, group_ref_json)
}
