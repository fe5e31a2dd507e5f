//! The `iot-data` data plane over HTTP: the Device Shadow operations. Changes made
//! here publish the same MQTT notifications as changes made over MQTT.

use serde_json::json;

use crate::error::ApiError;
use crate::input::Input;
use crate::{ApiState, Reply};

type Answer = Result<Reply, ApiError>;

pub(crate) async fn dispatch(state: &ApiState, operation: &'static str, input: Input) -> Answer {
    match operation {
        "GetThingShadow" => get_shadow(state, &input).await,
        "UpdateThingShadow" => update_shadow(state, &input).await,
        "DeleteThingShadow" => delete_shadow(state, &input).await,
        "ListNamedShadowsForThing" => list_named_shadows(state, &input).await,
        other => Err(ApiError::not_implemented("iot-data", other)),
    }
}

/// `?name=`: a named shadow; absent or empty, the classic one.
fn shadow_name(input: &Input) -> Option<&str> {
    input.query("name").filter(|name| !name.is_empty())
}

async fn get_shadow(state: &ApiState, input: &Input) -> Answer {
    let document = state.registry.get_shadow(&input.label("thingName"), shadow_name(input), None).await?;
    Ok(Reply::Json(document))
}

async fn update_shadow(state: &ApiState, input: &Input) -> Answer {
    let updated = state.registry.update_shadow(&input.label("thingName"), shadow_name(input), input.body()).await?;
    state.publisher.publish(updated.notifications).await;
    Ok(Reply::Json(updated.accepted))
}

async fn delete_shadow(state: &ApiState, input: &Input) -> Answer {
    let deleted = state.registry.delete_shadow(&input.label("thingName"), shadow_name(input), None).await?;
    state.publisher.publish(vec![deleted.notification]).await;
    Ok(Reply::Json(deleted.accepted))
}

async fn list_named_shadows(state: &ApiState, input: &Input) -> Answer {
    let page = state
        .registry
        .list_named_shadows(&input.label("thingName"), input.query("nextToken"), input.query_as("pageSize")?)
        .await?;
    let mut body = json!({"results": page.names});
    if let Some(token) = page.next_token {
        body["nextToken"] = json!(token);
    }
    body["timestamp"] = json!(page.timestamp);
    Ok(Reply::Json(body))
}

/// ferrocore's shadow history extension: `GET /things/<thing>/shadow/versions/<n>?name=`.
pub(crate) fn shadow_version_path(method: &str, path: &str) -> Option<(String, u64)> {
    let rest = path.strip_prefix("/things/")?;
    let (thing, rest) = rest.split_once('/')?;
    let version = rest.strip_prefix("shadow/versions/")?;
    (method == "GET").then_some(())?;
    Some((ferrocore_sigv4::percent_decode(thing), version.parse().ok()?))
}

pub(crate) async fn get_shadow_version(state: &ApiState, thing: &str, version: u64, input: &Input) -> Answer {
    Ok(Reply::Json(state.registry.shadow_version(thing, shadow_name(input), version).await?))
}
