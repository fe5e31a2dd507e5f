//! The `iot-data` data plane over HTTP: the Device Shadow operations (changes made
//! here publish the same MQTT notifications as changes made over MQTT), Publish,
//! retained messages and DeleteConnection. Each call is authorized against the
//! caller's access-key policy with the `iot:` action AWS requires.

use axum::http::StatusCode;
use base64::Engine as _;
use ferrocore_model::ResourceKind;
use ferrocore_registry::{ApiPublish, Permissions, PublishRefused, RetainedMessage, user_properties_json};
use serde_json::json;

use crate::error::ApiError;
use crate::input::Input;
use crate::{ApiState, Reply};

type Answer = Result<Reply, ApiError>;

/// AWS's payload limit for a publish (128 KB).
const MAX_PAYLOAD: usize = 128 * 1024;
/// ListRetainedMessages pages: AWS's largest `maxResults`.
const MAX_RETAINED_PAGE: usize = 200;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The caller's permissions and the account's ARNs, for the checks each operation makes.
struct Access<'a> {
    state: &'a ApiState,
    permissions: Permissions,
}

impl Access<'_> {
    fn arn(&self, kind: ResourceKind, name: &str) -> String {
        kind.arn(name, self.state.registry.account())
    }

    /// Answers ForbiddenException unless the caller may do `action` on `resource`.
    fn require(&self, action: &str, resource: &str) -> Result<(), ApiError> {
        if self.permissions.allows(action, resource) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            format!("The caller is not authorized to perform: {action} on resource: {resource}"),
        ))
    }

    fn require_on(&self, action: &str, kind: ResourceKind, name: &str) -> Result<(), ApiError> {
        self.require(action, &self.arn(kind, name))
    }
}

pub(crate) async fn dispatch(state: &ApiState, caller: &str, operation: &'static str, input: Input) -> Answer {
    let access = access(state, caller)?;
    let thing = || input.label("thingName");
    match operation {
        "GetThingShadow" => {
            access.require_on("iot:GetThingShadow", ResourceKind::Thing, &thing())?;
            get_shadow(state, &input).await
        }
        "UpdateThingShadow" => {
            access.require_on("iot:UpdateThingShadow", ResourceKind::Thing, &thing())?;
            update_shadow(state, &input).await
        }
        "DeleteThingShadow" => {
            access.require_on("iot:DeleteThingShadow", ResourceKind::Thing, &thing())?;
            delete_shadow(state, &input).await
        }
        "ListNamedShadowsForThing" => {
            access.require_on("iot:ListNamedShadowsForThing", ResourceKind::Thing, &thing())?;
            list_named_shadows(state, &input).await
        }
        "Publish" => publish(&access, caller, &input).await,
        "GetRetainedMessage" => {
            let topic = input.label("topic");
            access.require_on("iot:GetRetainedMessage", ResourceKind::Topic, &topic)?;
            get_retained_message(state, &topic)
        }
        "ListRetainedMessages" => {
            access.require("iot:ListRetainedMessages", "*")?;
            list_retained_messages(state, &input)
        }
        "DeleteConnection" => delete_connection(&access, &input).await,
        other => Err(ApiError::not_implemented("iot-data", other)),
    }
}

fn access<'a>(state: &'a ApiState, caller: &str) -> Result<Access<'a>, ApiError> {
    let permissions = state.config.credentials.permissions(caller, None).ok_or_else(|| {
        ApiError::new(StatusCode::FORBIDDEN, "ForbiddenException", format!("The access key {caller} is not accepted."))
    })?;
    Ok(Access { state, permissions })
}

/// `POST /topics/{topic}`: checked like a device publish (iot:Publish, and
/// iot:RetainPublish to retain), then routed by the device gateway.
async fn publish(access: &Access<'_>, caller: &str, input: &Input) -> Answer {
    let topic = input.label("topic");
    if input.body().len() > MAX_PAYLOAD {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!("The payload exceeds the maximum size of {MAX_PAYLOAD} bytes."),
        ));
    }
    let request = ApiPublish::from_request(
        topic,
        input.query_pairs(),
        |name| input.header_value(name),
        input.bytes(),
        caller.to_string(),
    )
    .map_err(ApiError::invalid)?;
    access.require_on("iot:Publish", ResourceKind::Topic, &request.topic)?;
    if request.retain {
        access.require_on("iot:RetainPublish", ResourceKind::Topic, &request.topic)?;
    }
    match access.state.publisher.publish_message(request).await {
        Ok(()) => Ok(Reply::Json(json!({}))),
        Err(PublishRefused::InvalidTopic(message)) => Err(ApiError::invalid(message)),
        Err(PublishRefused::ReservedTopic(message)) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "ForbiddenException", message))
        }
        Err(PublishRefused::NotStored(message)) => Err(ApiError::internal(message)),
    }
}

fn get_retained_message(state: &ApiState, topic: &str) -> Answer {
    let message = state.publisher.retained_message(topic).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("No retained message exists for the topic {topic}."),
        )
    })?;
    let mut body = json!({
        "topic": message.topic,
        "payload": BASE64.encode(&message.payload),
        "qos": message.qos,
        "lastModifiedTime": message.last_modified_ms,
    });
    if !message.user_properties.is_empty() {
        body["userProperties"] = json!(BASE64.encode(user_properties_json(&message.user_properties)));
    }
    Ok(Reply::Json(body))
}

/// Retained messages in topic order; `nextToken` is the hex of the last topic answered.
fn list_retained_messages(state: &ApiState, input: &Input) -> Answer {
    let limit = match input.query_as::<usize>("maxResults")? {
        None => MAX_RETAINED_PAGE,
        Some(n) if (1..=MAX_RETAINED_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!("maxResults must be from 1 to {MAX_RETAINED_PAGE}, not {n}.")));
        }
    };
    let after = match input.query("nextToken") {
        Some(token) => Some(
            hex::decode(token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ApiError::invalid("The nextToken is not valid."))?,
        ),
        None => None,
    };
    // One more than asked tells whether another page follows.
    let mut page: Vec<RetainedMessage> = state.publisher.retained_messages(after.as_deref(), limit + 1);
    let more = page.len() > limit;
    page.truncate(limit);
    let topics: Vec<serde_json::Value> = page
        .iter()
        .map(|m| json!({"topic": m.topic, "payloadSize": m.payload.len(), "qos": m.qos, "lastModifiedTime": m.last_modified_ms}))
        .collect();
    let mut body = json!({"retainedTopics": topics});
    if more && let Some(last) = page.last() {
        body["nextToken"] = json!(hex::encode(&last.topic));
    }
    Ok(Reply::Json(body))
}

/// `DELETE /connections/{clientId}?cleanSession=&preventWillMessage=`.
async fn delete_connection(access: &Access<'_>, input: &Input) -> Answer {
    let client_id = input.label("clientId");
    if client_id.is_empty() || client_id.starts_with('$') {
        return Err(ApiError::invalid(format!(
            "The client id '{client_id}' is not valid: ids starting with '$' are reserved."
        )));
    }
    access.require_on("iot:DeleteConnection", ResourceKind::Client, &client_id)?;
    let clean_session = input.query_flag("cleanSession")?;
    let prevent_will = input.query_flag("preventWillMessage")?;
    if !access.state.publisher.delete_connection(&client_id, clean_session, prevent_will).await {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("No connection exists for the client id {client_id}."),
        ));
    }
    Ok(Reply::Json(json!({})))
}

/// `?name=`: a named shadow; absent or empty, the classic one.
fn shadow_name(input: &Input) -> Option<&str> {
    input.query("name").filter(|name| !name.is_empty())
}

async fn get_shadow(state: &ApiState, input: &Input) -> Answer {
    let document = state.shadows.get(&input.label("thingName"), shadow_name(input), None).await?;
    Ok(Reply::Json(document))
}

async fn update_shadow(state: &ApiState, input: &Input) -> Answer {
    // The service publishes the notifications before it answers.
    let accepted = state.shadows.update(&input.label("thingName"), shadow_name(input), input.body()).await?;
    Ok(Reply::Json(accepted))
}

async fn delete_shadow(state: &ApiState, input: &Input) -> Answer {
    let accepted = state.shadows.delete(&input.label("thingName"), shadow_name(input), None).await?;
    Ok(Reply::Json(accepted))
}

async fn list_named_shadows(state: &ApiState, input: &Input) -> Answer {
    let page = state
        .shadows
        .list_named(&input.label("thingName"), input.query("nextToken"), input.query_as("pageSize")?)
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

pub(crate) async fn get_shadow_version(
    state: &ApiState,
    caller: &str,
    thing: &str,
    version: u64,
    input: &Input,
) -> Answer {
    access(state, caller)?.require_on("iot:GetThingShadow", ResourceKind::Thing, thing)?;
    Ok(Reply::Json(state.shadows.version(thing, shadow_name(input), version).await?))
}
