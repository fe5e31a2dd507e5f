//! Topic rules and topic rule destinations as the registry stores them, and the
//! checks AWS makes on a `TopicRulePayload` before any SQL is read.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::registry::Tags;
use crate::{Error, Millis, Result};

/// Actions per rule (AWS: 10).
pub const MAX_ACTIONS: usize = 10;
/// Rule names: `^[a-zA-Z0-9_]+$`, 1..128.
pub const RULE_NAME_MAX: usize = 128;
/// SQL versions AWS accepts; the first is the default when none is given.
pub const SQL_VERSIONS: [&str; 3] = ["2015-10-08", "2016-03-23", "beta"];

/// Every action kind of the `Action` union, with its required members.
pub const ACTION_KINDS: &[(&str, &[&str])] = &[
    ("republish", &["topic", "roleArn"]),
    ("lambda", &["functionArn"]),
    ("dynamoDB", &["tableName", "roleArn", "hashKeyField", "hashKeyValue"]),
    ("dynamoDBv2", &["roleArn", "putItem"]),
    ("s3", &["roleArn", "bucketName", "key"]),
    ("sns", &["targetArn", "roleArn"]),
    ("sqs", &["roleArn", "queueUrl"]),
    ("kinesis", &["roleArn", "streamName"]),
    ("firehose", &["roleArn", "deliveryStreamName"]),
    ("cloudwatchMetric", &["roleArn", "metricNamespace", "metricName", "metricValue", "metricUnit"]),
    ("cloudwatchAlarm", &["roleArn", "alarmName", "stateReason", "stateValue"]),
    ("cloudwatchLogs", &["roleArn", "logGroupName"]),
    ("http", &["url"]),
    ("kafka", &["destinationArn", "topic", "clientProperties"]),
    ("timestream", &["roleArn", "databaseName", "tableName", "dimensions"]),
    ("iotAnalytics", &[]),
    ("iotEvents", &["inputName", "roleArn"]),
    ("iotSiteWise", &["putAssetPropertyValueEntries", "roleArn"]),
    ("stepFunctions", &["stateMachineName", "roleArn"]),
    ("location", &["roleArn", "trackerName", "deviceId", "latitude", "longitude"]),
    ("openSearch", &["roleArn", "endpoint", "index", "type", "id"]),
    ("elasticsearch", &["roleArn", "endpoint", "index", "type", "id"]),
    ("salesforce", &["token", "url"]),
];

/// A stored topic rule: the payload as the client sent it (actions kept verbatim,
/// so GetTopicRule returns exactly what was configured) plus what AWS adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRule {
    pub name: String,
    pub sql: String,
    /// The FROM topic filter (empty for Basic Ingest-only rules).
    pub topic_pattern: String,
    pub description: String,
    pub actions: Vec<Map<String, Value>>,
    pub error_action: Option<Map<String, Value>>,
    pub rule_disabled: bool,
    pub sql_version: String,
    pub created_at: Millis,
    #[serde(default)]
    pub tags: Tags,
}

/// `TopicRulePayload` as the API receives it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRulePayload {
    pub sql: Option<String>,
    pub description: Option<String>,
    pub actions: Option<Vec<Value>>,
    pub rule_disabled: Option<bool>,
    pub aws_iot_sql_version: Option<String>,
    pub error_action: Option<Value>,
}

pub fn check_rule_name(name: &str) -> Result<()> {
    let valid =
        !name.is_empty() && name.len() <= RULE_NAME_MAX && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "1 validation error detected: Value '{name}' at 'ruleName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9_]+$"
    )))
}

/// The SQL version a payload asks for, AWS's default when absent.
pub fn sql_version(requested: Option<&str>) -> Result<String> {
    match requested {
        None => Ok(SQL_VERSIONS[0].to_string()),
        Some(version) if SQL_VERSIONS.contains(&version) => Ok(version.to_string()),
        Some(version) => Err(Error::invalid(format!(
            "The SQL version {version} is not supported. Supported versions: {}.",
            SQL_VERSIONS.join(", ")
        ))),
    }
}

/// One member of the `Action` union: exactly one known kind, with its required members.
pub fn check_action(action: &Value, context: &str) -> Result<Map<String, Value>> {
    let Some(object) = action.as_object() else {
        return Err(Error::invalid(format!("{context} must be an object.")));
    };
    let set: Vec<(&String, &Value)> = object.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(kind, body)] = set.as_slice() else {
        return Err(Error::invalid(format!("{context} must set exactly one action type, found {}.", set.len())));
    };
    let Some((_, required)) = ACTION_KINDS.iter().find(|(name, _)| name == kind) else {
        return Err(Error::invalid(format!("{context}: unknown action type {kind}.")));
    };
    let Some(fields) = body.as_object() else {
        return Err(Error::invalid(format!("{context}: {kind} must be an object.")));
    };
    if let Some(missing) = required.iter().find(|field| fields.get(**field).is_none_or(Value::is_null)) {
        return Err(Error::invalid(format!(
            "1 validation error detected: Value null at '{context}.{kind}.{missing}' failed to satisfy constraint: Member must not be null"
        )));
    }
    Ok(set.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A rule's actions and its error action, each a JSON object naming one action.
pub type CheckedActions = (Vec<Map<String, Value>>, Option<Map<String, Value>>);

/// The checked actions and error action of a payload.
pub fn check_actions(payload: &TopicRulePayload) -> Result<CheckedActions> {
    let actions = payload.actions.as_deref().unwrap_or_default();
    if actions.len() > MAX_ACTIONS {
        return Err(Error::invalid(format!(
            "1 validation error detected: Value at 'topicRulePayload.actions' failed to satisfy constraint: Member must have length less than or equal to {MAX_ACTIONS}"
        )));
    }
    let checked = actions
        .iter()
        .enumerate()
        .map(|(i, action)| check_action(action, &format!("topicRulePayload.actions.{}.member", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let error_action = match &payload.error_action {
        None | Some(Value::Null) => None,
        Some(action) => Some(check_action(action, "topicRulePayload.errorAction")?),
    };
    Ok((checked, error_action))
}

/// The kind of an action stored by [`check_action`].
pub fn action_kind(action: &Map<String, Value>) -> &str {
    action.keys().next().map_or("", String::as_str)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DestinationStatus {
    Enabled,
    InProgress,
    Disabled,
    Error,
    Deleting,
}

impl DestinationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "ENABLED",
            Self::InProgress => "IN_PROGRESS",
            Self::Disabled => "DISABLED",
            Self::Error => "ERROR",
            Self::Deleting => "DELETING",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Enabled, Self::InProgress, Self::Disabled, Self::Error, Self::Deleting]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpcDestination {
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    pub vpc_id: String,
    pub role_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DestinationTarget {
    /// HTTP actions whose URL starts with this confirmation URL may use the destination.
    Http {
        confirmation_url: String,
    },
    Vpc(VpcDestination),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRuleDestination {
    pub arn: String,
    pub target: DestinationTarget,
    pub status: DestinationStatus,
    pub status_reason: Option<String>,
    /// The secret a ConfirmTopicRuleDestination call must present.
    pub confirmation_token: Option<String>,
    pub created_at: Millis,
    pub last_updated_at: Millis,
}

/// Whether an HTTP action may post to `url` under a destination confirmed for
/// `confirmation_url`: AWS's prefix rule, cut at a boundary so that
/// `https://example.com` does not also cover `https://example.com.evil.net` or
/// `https://example.com@evil.net`.
pub fn url_under(confirmation_url: &str, url: &str) -> bool {
    let Some(rest) = url.strip_prefix(confirmation_url) else {
        return false;
    };
    confirmation_url.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_versions() {
        assert!(check_rule_name("Store_Sensor_Data1").is_ok());
        assert!(check_rule_name("bad-name").is_err());
        assert!(check_rule_name("").is_err());
        assert_eq!(sql_version(None).unwrap(), "2015-10-08");
        assert!(sql_version(Some("2016-03-23")).is_ok());
        assert!(sql_version(Some("2020-01-01")).is_err());
    }

    #[test]
    fn actions_are_one_known_kind_with_required_members() {
        assert!(check_action(&json!({"lambda": {"functionArn": "arn:aws:lambda:x"}}), "a").is_ok());
        let err = check_action(&json!({"lambda": {}}), "a").unwrap_err();
        assert!(err.to_string().contains("a.lambda.functionArn"), "{err}");
        assert!(check_action(&json!({"lambda": {"functionArn": "f"}, "sqs": {}}), "a").is_err());
        assert!(check_action(&json!({"teleport": {}}), "a").is_err());
        assert!(check_action(&json!({}), "a").is_err());
        // Explicit nulls for the other members (as some SDKs send) are not kinds.
        assert!(check_action(&json!({"lambda": {"functionArn": "f"}, "sqs": null}), "a").is_ok());
    }

    #[test]
    fn at_most_ten_actions() {
        let one = json!({"lambda": {"functionArn": "f"}});
        let payload = TopicRulePayload { actions: Some(vec![one; 11]), ..Default::default() };
        assert!(check_actions(&payload).is_err());
    }

    #[test]
    fn destinations_cover_urls_under_their_confirmation_url() {
        assert!(url_under("https://example.com/iot", "https://example.com/iot/ingest"));
        assert!(url_under("https://example.com/iot", "https://example.com/iot"));
        assert!(url_under("https://example.com/iot/", "https://example.com/iot/x"));
        assert!(url_under("https://example.com", "https://example.com?x=1"));
        assert!(!url_under("https://example.com/iot", "https://example.org/iot"));
        assert!(!url_under("https://example.com", "https://example.com.evil.net/x"));
        assert!(!url_under("https://example.com", "https://example.com@evil.net/x"));
        assert!(!url_under("https://example.com/iot", "https://example.com/iotx"));
    }
}
