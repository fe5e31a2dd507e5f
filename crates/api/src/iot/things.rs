use ferrocore_model::ResourceKind;
use ferrocore_model::registry::Thing;
use ferrocore_registry::{CreateThing, ListThings, Registry, UpdateThing};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, AttributePayloadDto, empty, page_reply, reply};
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateThingDto {
    thing_type_name: Option<String>,
    attribute_payload: Option<AttributePayloadDto>,
    billing_group_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateThingDto {
    thing_type_name: Option<String>,
    attribute_payload: Option<AttributePayloadDto>,
    expected_version: Option<i64>,
    #[serde(default)]
    remove_thing_type: bool,
}

pub(super) async fn create(registry: &Registry, input: &Input) -> Answer {
    let dto: CreateThingDto = input.json()?;
    let created = registry
        .create_thing(CreateThing {
            name: input.label("thingName"),
            thing_type: dto.thing_type_name,
            attributes: dto.attribute_payload.map(|p| p.attributes).unwrap_or_default(),
            billing_group: dto.billing_group_name,
        })
        .await?;
    reply(json!({"thingName": created.name, "thingArn": created.arn, "thingId": created.id}))
}

fn thing_json(registry: &Registry, thing: Thing) -> Value {
    json!({
        "thingName": thing.name,
        "thingArn": registry.arn(ResourceKind::Thing, &thing.name),
        "thingTypeName": thing.thing_type,
        "attributes": thing.attributes,
        "version": thing.version,
    })
}

pub(super) async fn describe(registry: &Registry, input: &Input) -> Answer {
    let thing = registry.describe_thing(&input.label("thingName")).await?;
    let mut value = thing_json(registry, thing.clone());
    value["defaultClientId"] = json!(thing.name);
    value["thingId"] = json!(thing.id);
    value["billingGroupName"] = json!(thing.billing_group);
    reply(value)
}

pub(super) async fn update(registry: &Registry, input: &Input) -> Answer {
    let dto: UpdateThingDto = input.json()?;
    registry
        .update_thing(UpdateThing {
            name: input.label("thingName"),
            thing_type: dto.thing_type_name,
            remove_thing_type: dto.remove_thing_type,
            attributes: dto.attribute_payload.map(Into::into),
            expected_version: dto.expected_version,
        })
        .await?;
    empty()
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_thing(&input.label("thingName"), input.query_as("expectedVersion")?).await?;
    empty()
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let request = ListThings {
        attribute_name: input.query("attributeName").map(str::to_string),
        attribute_value: input.query("attributeValue").map(str::to_string),
        use_prefix_attribute_value: input.query_flag("usePrefixAttributeValue")?,
        thing_type: input.query("thingTypeName").map(str::to_string),
        page: input.page()?,
    };
    let page = registry.list_things(&request).await?;
    page_reply("things", page, |thing| thing_json(registry, thing))
}
