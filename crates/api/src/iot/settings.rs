use std::collections::BTreeMap;

use ferrocore_registry::{LoggingOptions, Registry};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Answer, empty, reply};
use crate::error::ApiError;
use crate::input::Input;

pub(super) fn describe_endpoint(registry: &Registry, input: &Input) -> Answer {
    let address = registry.describe_endpoint(input.query("endpointType"))?;
    reply(json!({"endpointAddress": address}))
}

#[derive(Deserialize)]
struct EnabledDto {
    #[serde(rename = "Enabled", default)]
    enabled: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EventConfigurationsDto {
    #[serde(default)]
    event_configurations: BTreeMap<String, EnabledDto>,
}

pub(super) async fn describe_event_configurations(registry: &Registry) -> Answer {
    let configurations = registry.event_configurations().await?;
    let map: Map<String, Value> =
        configurations.into_iter().map(|(kind, enabled)| (kind, json!({"Enabled": enabled}))).collect();
    reply(json!({"eventConfigurations": map}))
}

pub(super) async fn update_event_configurations(registry: &Registry, input: &Input) -> Answer {
    let dto: EventConfigurationsDto = input.json()?;
    let changes = dto.event_configurations.into_iter().map(|(k, v)| (k, v.enabled)).collect();
    registry.update_event_configurations(&changes).await?;
    empty()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoggingOptionsDto {
    role_arn: Option<String>,
    default_log_level: Option<String>,
    #[serde(default)]
    disable_all_logs: bool,
}

pub(super) async fn get_logging_options(registry: &Registry) -> Answer {
    let options = registry.logging_options().await?;
    reply(json!({
        "roleArn": options.role_arn,
        "defaultLogLevel": options.default_log_level,
        "disableAllLogs": options.disable_all_logs,
    }))
}

pub(super) async fn set_logging_options(registry: &Registry, input: &Input) -> Answer {
    let dto: LoggingOptionsDto = input.json()?;
    registry
        .set_logging_options(LoggingOptions {
            role_arn: dto.role_arn,
            default_log_level: dto.default_log_level,
            disable_all_logs: dto.disable_all_logs,
        })
        .await?;
    empty()
}

/// The enumerated members of the indexing configuration and their allowed values.
const INDEXING_MODES: &[(&str, &str, &[&str])] = &[
    ("thingIndexingConfiguration", "thingIndexingMode", &["OFF", "REGISTRY", "REGISTRY_AND_SHADOW"]),
    ("thingIndexingConfiguration", "thingConnectivityIndexingMode", &["OFF", "STATUS"]),
    ("thingIndexingConfiguration", "deviceDefenderIndexingMode", &["OFF", "VIOLATIONS"]),
    ("thingIndexingConfiguration", "namedShadowIndexingMode", &["OFF", "ON"]),
    ("thingGroupIndexingConfiguration", "thingGroupIndexingMode", &["OFF", "ON"]),
];

/// Each part's required mode, which also defaults to OFF when the part was never set.
const REQUIRED_MODES: &[(&str, &str)] = &[
    ("thingIndexingConfiguration", "thingIndexingMode"),
    ("thingGroupIndexingConfiguration", "thingGroupIndexingMode"),
];

fn validate_indexing(document: &Map<String, Value>) -> Result<(), ApiError> {
    for (part, member, allowed) in INDEXING_MODES {
        let Some(value) = document.get(*part).and_then(|p| p.get(*member)) else {
            continue;
        };
        if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
            return Err(ApiError::invalid(format!(
                "1 validation error detected: Value '{value}' at '{part}.{member}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            )));
        }
    }
    for (part, member) in REQUIRED_MODES {
        if document.get(*part).is_some_and(|p| p.get(*member).is_none()) {
            return Err(ApiError::invalid(format!("{part}.{member} is required.")));
        }
    }
    Ok(())
}

pub(super) async fn get_indexing_configuration(registry: &Registry) -> Answer {
    let mut document = match registry.indexing_configuration().await? {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for (part, member) in REQUIRED_MODES {
        document.entry(*part).or_insert_with(|| json!({ *member: "OFF" }));
    }
    reply(Value::Object(document))
}

/// Each part given replaces the stored one; parts not given stay as they were.
pub(super) async fn update_indexing_configuration(registry: &Registry, input: &Input) -> Answer {
    let given: Map<String, Value> = input.json()?;
    validate_indexing(&given)?;
    let mut document = match registry.indexing_configuration().await? {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for (part, _) in REQUIRED_MODES {
        if let Some(value) = given.get(*part) {
            document.insert(part.to_string(), value.clone());
        }
    }
    registry.set_indexing_configuration(Value::Object(document)).await?;
    empty()
}
