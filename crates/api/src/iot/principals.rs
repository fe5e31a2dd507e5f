use ferrocore_model::security::ThingPrincipalType;
use ferrocore_registry::Registry;
use serde_json::json;

use super::{Answer, empty, page_reply};
use crate::input::Input;

pub(super) async fn attach(registry: &Registry, input: &Input) -> Answer {
    let principal = input.header("x-amzn-principal", "principal")?;
    let kind = ThingPrincipalType::parse(input.query("thingPrincipalType"))?;
    registry.attach_thing_principal(&input.label("thingName"), &principal, kind).await?;
    empty()
}

pub(super) async fn detach(registry: &Registry, input: &Input) -> Answer {
    let principal = input.header("x-amzn-principal", "principal")?;
    registry.detach_thing_principal(&input.label("thingName"), &principal).await?;
    empty()
}

/// `thingPrincipalType` filters the V2 listings.
fn type_filter(input: &Input) -> Result<Option<ThingPrincipalType>, crate::ApiError> {
    input.query("thingPrincipalType").map(|t| ThingPrincipalType::parse(Some(t))).transpose().map_err(Into::into)
}

pub(super) async fn list_for_thing(registry: &Registry, input: &Input, v2: bool) -> Answer {
    let filter = type_filter(input)?;
    let mut page = registry.list_thing_principals(&input.label("thingName"), &input.page()?).await?;
    page.items.retain(|(_, kind)| filter.is_none_or(|f| f == *kind));
    if v2 {
        page_reply(
            "thingPrincipalObjects",
            page,
            |(principal, kind)| json!({"principal": principal, "thingPrincipalType": kind.as_str()}),
        )
    } else {
        page_reply("principals", page, |(principal, _)| json!(principal))
    }
}

pub(super) async fn list_for_principal(registry: &Registry, input: &Input, v2: bool) -> Answer {
    let principal = input.header("x-amzn-principal", "principal")?;
    let filter = type_filter(input)?;
    let mut page = registry.list_principal_things(&principal, &input.page()?).await?;
    page.items.retain(|(_, kind)| filter.is_none_or(|f| f == *kind));
    if v2 {
        page_reply(
            "principalThingObjects",
            page,
            |(thing, kind)| json!({"thingName": thing, "thingPrincipalType": kind.as_str()}),
        )
    } else {
        page_reply("things", page, |(thing, _)| json!(thing))
    }
}
