//! Reading update, get and delete requests the way the Device Shadow service does.

use serde_json::Value;

use crate::{Limits, Map, ShadowError};

/// AWS's limit on `clientToken`, in bytes.
pub const CLIENT_TOKEN_MAX_BYTES: usize = 64;

/// What an update asks of one section (`desired` or `reported`).
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// The section was not in the request: it stays as it is.
    Keep,
    /// `"desired": null`: the whole section goes.
    Remove,
    /// A partial document merged into the section.
    Merge(Map),
}

/// A validated update request.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRequest {
    pub desired: Patch,
    pub reported: Patch,
    /// When present, the update applies only to this current version.
    pub version: Option<u64>,
    pub client_token: Option<String>,
    /// The `state` node as sent (`None` for `"state": null`), echoed in `/accepted`.
    pub state: Option<Map>,
}

/// Parses and validates an update request document.
pub fn parse_update(payload: &[u8], limits: &Limits) -> Result<UpdateRequest, ShadowError> {
    let text = std::str::from_utf8(payload).map_err(|_| ShadowError::UnsupportedEncoding)?;
    let Ok(Value::Object(mut document)) = serde_json::from_str::<Value>(text) else {
        return Err(ShadowError::InvalidJson);
    };
    let client_token = client_token_of(&document)?;
    let version = match document.get("version") {
        None => None,
        Some(value) => Some(value.as_u64().ok_or(ShadowError::InvalidVersion)?),
    };
    let state = match document.remove("state") {
        None => return Err(ShadowError::MissingState),
        // `"state": null` clears both sections.
        Some(Value::Null) => {
            return Ok(UpdateRequest {
                desired: Patch::Remove,
                reported: Patch::Remove,
                version,
                client_token,
                state: None,
            });
        }
        Some(Value::Object(state)) => state,
        Some(_) => return Err(ShadowError::StateNotObject),
    };
    if state.keys().any(|key| key != "desired" && key != "reported") {
        return Err(ShadowError::InvalidStateNode);
    }
    let desired = patch_of(state.get("desired"), ShadowError::DesiredNotObject, limits)?;
    let reported = patch_of(state.get("reported"), ShadowError::ReportedNotObject, limits)?;
    Ok(UpdateRequest { desired, reported, version, client_token, state: Some(state) })
}

/// The `clientToken` of a get or delete request; their payload is otherwise
/// ignored, so anything that is not a JSON object carries no token.
pub fn request_token(payload: &[u8]) -> Result<Option<String>, ShadowError> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(document)) => client_token_of(&document),
        _ => Ok(None),
    }
}

fn client_token_of(document: &Map) -> Result<Option<String>, ShadowError> {
    match document.get("clientToken") {
        None => Ok(None),
        Some(Value::String(token)) if token.len() <= CLIENT_TOKEN_MAX_BYTES => Ok(Some(token.clone())),
        Some(_) => Err(ShadowError::InvalidClientToken),
    }
}

fn patch_of(section: Option<&Value>, not_object: ShadowError, limits: &Limits) -> Result<Patch, ShadowError> {
    match section {
        None => Ok(Patch::Keep),
        Some(Value::Null) => Ok(Patch::Remove),
        Some(Value::Object(map)) => {
            if depth_of_map(map) > limits.max_depth {
                return Err(ShadowError::TooDeep);
            }
            if map.values().any(has_null_in_array) {
                return Err(ShadowError::InvalidJson);
            }
            Ok(Patch::Merge(map.clone()))
        }
        Some(_) => Err(not_object),
    }
}

/// Levels of objects and arrays, counting the section itself as the first.
fn depth_of_map(map: &Map) -> usize {
    1 + map.values().map(depth_of).max().unwrap_or(0)
}

fn depth_of(value: &Value) -> usize {
    match value {
        Value::Object(map) => depth_of_map(map),
        Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

/// Arrays are whole values in a shadow and may not hold `null`.
fn has_null_in_array(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.values().any(has_null_in_array),
        Value::Array(items) => items.iter().any(|item| item.is_null() || has_null_in_array(item)),
        _ => false,
    }
}
