use ferrocore_model::ResourceKind;
use ferrocore_model::registry::ThingType;
use ferrocore_registry::{CreateThingType, Registry};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, TagDto, empty, page_reply, reply, tags_from, timestamp};
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PropertiesDto {
    thing_type_description: Option<String>,
    searchable_attributes: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateThingTypeDto {
    thing_type_properties: Option<PropertiesDto>,
    tags: Option<Vec<TagDto>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateThingTypeDto {
    thing_type_properties: Option<PropertiesDto>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeprecateDto {
    #[serde(default)]
    undo_deprecate: bool,
}

pub(super) async fn create(registry: &Registry, input: &Input) -> Answer {
    let dto: CreateThingTypeDto = input.json()?;
    let properties = dto.thing_type_properties.unwrap_or_default();
    let created = registry
        .create_thing_type(CreateThingType {
            name: input.label("thingTypeName"),
            description: properties.thing_type_description,
            searchable_attributes: properties.searchable_attributes.unwrap_or_default(),
            tags: tags_from(dto.tags),
        })
        .await?;
    reply(json!({"thingTypeName": created.name, "thingTypeArn": created.arn, "thingTypeId": created.id}))
}

fn thing_type_json(registry: &Registry, thing_type: ThingType) -> Value {
    json!({
        "thingTypeName": thing_type.name,
        "thingTypeId": thing_type.id,
        "thingTypeArn": registry.arn(ResourceKind::ThingType, &thing_type.name),
        "thingTypeProperties": {
            "thingTypeDescription": thing_type.description,
            "searchableAttributes": thing_type.searchable_attributes,
        },
        "thingTypeMetadata": {
            "deprecated": thing_type.deprecated,
            "deprecationDate": thing_type.deprecation_date.map(timestamp),
            "creationDate": timestamp(thing_type.creation_date),
        },
    })
}

pub(super) async fn describe(registry: &Registry, input: &Input) -> Answer {
    let thing_type = registry.describe_thing_type(&input.label("thingTypeName")).await?;
    reply(thing_type_json(registry, thing_type))
}

pub(super) async fn update(registry: &Registry, input: &Input) -> Answer {
    let dto: UpdateThingTypeDto = input.json()?;
    let properties = dto.thing_type_properties.unwrap_or_default();
    registry
        .update_thing_type(
            &input.label("thingTypeName"),
            properties.thing_type_description,
            properties.searchable_attributes,
        )
        .await?;
    empty()
}

pub(super) async fn deprecate(registry: &Registry, input: &Input) -> Answer {
    let dto: DeprecateDto = input.json()?;
    registry.deprecate_thing_type(&input.label("thingTypeName"), dto.undo_deprecate).await?;
    empty()
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_thing_type(&input.label("thingTypeName")).await?;
    empty()
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_thing_types(input.query("thingTypeName"), &input.page()?).await?;
    page_reply("thingTypes", page, |t| {
        let mut value = thing_type_json(registry, t);
        value.as_object_mut().map(|o| o.remove("thingTypeId"));
        value
    })
}
