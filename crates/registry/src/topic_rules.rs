//! Topic rules: stored with their SQL checked (SqlParseException at create time),
//! listed by topic filter and state, enabled and disabled. The rules engine reads
//! them back through [`Registry::all_topic_rules`] after each change.

use ferrocore_model::registry::{Tags, validate_tags};
use ferrocore_model::rules::{
    DestinationTarget, TopicRule, TopicRulePayload, check_actions, check_rule_name, sql_version,
};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_store::{Collection, Expect, Record, Write};

use crate::indexes::{record_writes, topic_rule_entries, topic_value};
use crate::paging::{Page, PageBuilder, PageRequest};
use crate::topic_rule_destinations::http_destination_urls;
use crate::{Loaded, Outcome, Registry, decode_record, put, storage_failure};

/// A rule's write with its entry under its FROM filter.
fn rule_writes(name: &str, before: Option<&Loaded<TopicRule>>, after: Option<&TopicRule>) -> Vec<Write> {
    record_writes(Collection::TopicRule, Collection::TopicRuleTopic, name, before, after, topic_rule_entries)
}

/// Largest rule payload (AWS: 256 KB per rule).
pub const MAX_RULE_BYTES: usize = 256 * 1024;

/// ListTopicRules filters.
#[derive(Debug, Clone, Default)]
pub struct ListTopicRules {
    /// Only rules whose FROM filter is exactly this.
    pub topic: Option<String>,
    pub rule_disabled: Option<bool>,
    pub page: PageRequest,
}

/// A rule's stored form from a payload, or the error AWS gives for it.
fn rule_from(name: &str, payload: &TopicRulePayload, created_at: i64, tags: Tags) -> Result<TopicRule> {
    check_rule_name(name)?;
    let sql = payload.sql.clone().ok_or_else(|| {
        Error::invalid("1 validation error detected: Value null at 'topicRulePayload.sql' failed to satisfy constraint: Member must not be null")
    })?;
    let query = ferrocore_rules_sql::parse(&sql).map_err(|err| Error::SqlParse(format!("Syntax error: {err}")))?;
    if let Some(filter) = &query.from
        && ferrocore_mqtt::topic::validate_filter(filter).is_err()
    {
        return Err(Error::SqlParse(format!("Syntax error: '{filter}' in FROM is not a valid topic filter")));
    }
    let (actions, error_action) = check_actions(payload)?;
    for action in actions.iter().chain(&error_action) {
        check_action_values(action)?;
    }
    let rule = TopicRule {
        name: name.to_string(),
        topic_pattern: query.from.unwrap_or_default(),
        sql,
        description: payload.description.clone().unwrap_or_default(),
        actions,
        error_action,
        rule_disabled: payload.rule_disabled.unwrap_or(false),
        sql_version: sql_version(payload.aws_iot_sql_version.as_deref())?,
        created_at,
        tags,
    };
    let size = serde_json::to_vec(&rule).map_or(0, |bytes| bytes.len());
    if size > MAX_RULE_BYTES {
        return Err(Error::invalid(format!("The rule is {size} bytes; the limit is {MAX_RULE_BYTES}.")));
    }
    Ok(rule)
}

/// What the rules engine will need to run an action, checked now as AWS does: every
/// substitution template parses, and a republish QoS is 0 or 1.
fn check_action_values(action: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    fn templates(value: &serde_json::Value) -> Result<()> {
        match value {
            serde_json::Value::String(text) if text.contains("${") => ferrocore_rules_sql::Template::parse(text)
                .map(drop)
                .map_err(|err| Error::invalid(format!("The substitution template {text} is not valid: {err}"))),
            serde_json::Value::Array(items) => items.iter().try_for_each(templates),
            serde_json::Value::Object(fields) => fields.values().try_for_each(templates),
            _ => Ok(()),
        }
    }
    if let Some(qos) = action.get("republish").and_then(|r| r.get("qos"))
        && !matches!(qos.as_u64(), Some(0 | 1))
    {
        return Err(Error::invalid(format!(
            "1 validation error detected: Value '{qos}' at 'republish.qos' failed to satisfy constraint: Member must have value between 0 and 1"
        )));
    }
    action.values().try_for_each(templates)
}

impl Registry {
    /// GetTopicRule on a rule that does not exist is, on AWS, UnauthorizedException.
    async fn require_topic_rule(&self, name: &str) -> Result<Loaded<TopicRule>> {
        self.load(Collection::TopicRule, name)
            .await?
            .ok_or_else(|| Error::Unauthorized(format!("Access to topic rule '{name}' was denied")))
    }

    pub async fn create_topic_rule(&self, name: &str, payload: &TopicRulePayload, tags: &Tags) -> Result<()> {
        validate_tags(tags)?;
        let rule = rule_from(name, payload, self.now(), tags.clone())?;
        let destination_urls = http_destination_urls(&rule.actions)?;
        let (rule, destination_urls) = (&rule, &destination_urls);
        self.transact(|| async move {
            if self.load::<TopicRule>(Collection::TopicRule, name).await?.is_some() {
                return Err(Error::ResourceAlreadyExists {
                    message: format!("Topic rule {name} already exists"),
                    resource_id: name.to_string(),
                    resource_arn: self.arn(ResourceKind::TopicRule, name),
                });
            }
            let mut writes = self.missing_destinations(destination_urls).await?;
            writes.extend(rule_writes(name, None, Some(rule)));
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    /// HTTP actions get a destination (waiting for confirmation) for each URL no destination has yet.
    async fn missing_destinations(&self, urls: &[String]) -> Result<Vec<Write>> {
        let existing = self.all_topic_rule_destinations().await?;
        Ok(urls
            .iter()
            .filter(|url| {
                !existing.iter().any(
                    |d| matches!(&d.target, DestinationTarget::Http { confirmation_url } if confirmation_url == *url),
                )
            })
            .map(|url| {
                let destination = self.new_destination(DestinationTarget::Http { confirmation_url: url.clone() });
                put(Collection::TopicRuleDestination, &destination.arn.clone(), Expect::Absent, &destination)
            })
            .collect())
    }

    pub async fn get_topic_rule(&self, name: &str) -> Result<TopicRule> {
        Ok(self.require_topic_rule(name).await?.value)
    }

    /// ReplaceTopicRule: a whole new payload; creation time and tags stay.
    pub async fn replace_topic_rule(&self, name: &str, payload: &TopicRulePayload) -> Result<()> {
        let replacement = rule_from(name, payload, 0, Tags::new())?;
        let destination_urls = http_destination_urls(&replacement.actions)?;
        let (replacement, destination_urls) = (&replacement, &destination_urls);
        self.transact(|| async move {
            let loaded = self
                .require_topic_rule(name)
                .await
                .map_err(|_| Error::not_found(format!("The rule {name} does not exist.")))?;
            let rule = TopicRule {
                created_at: loaded.value.created_at,
                tags: loaded.value.tags.clone(),
                ..replacement.clone()
            };
            let mut writes = self.missing_destinations(destination_urls).await?;
            writes.extend(rule_writes(name, Some(&loaded), Some(&rule)));
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn set_topic_rule_enabled(&self, name: &str, enabled: bool) -> Result<()> {
        self.transact(|| async {
            let loaded = self.require_topic_rule(name).await?;
            let mut rule = loaded.value.clone();
            rule.rule_disabled = !enabled;
            Ok(Outcome::write(rule_writes(name, Some(&loaded), Some(&rule)), ()))
        })
        .await
    }

    pub async fn delete_topic_rule(&self, name: &str) -> Result<()> {
        check_rule_name(name)?;
        self.transact(|| async {
            let loaded = self.require_topic_rule(name).await?;
            Ok(Outcome::write(rule_writes(name, Some(&loaded), None), ()))
        })
        .await
    }

    /// One page of rules in name order, or with `topic` in the order of that filter's
    /// index entries (also by name); the token is the last key read.
    pub async fn list_topic_rules(&self, request: &ListTopicRules) -> Result<Page<TopicRule>> {
        let (source, prefix) = match request.topic.as_deref() {
            None => (Collection::TopicRule, String::new()),
            Some(topic) => (Collection::TopicRuleTopic, format!("{} ", topic_value(topic))),
        };
        let mut keep = |rule: &TopicRule| request.rule_disabled.is_none_or(|disabled| rule.rule_disabled == disabled);
        let mut builder = PageBuilder::new(&request.page, request.page.after_within(&prefix)?)?;
        loop {
            let start = builder.after().unwrap_or(&prefix).to_string();
            let records = self.store.list(source, Some(&start), builder.chunk()).await.map_err(storage_failure)?;
            let records: Vec<Record> = records.into_iter().take_while(|r| r.key.starts_with(&prefix)).collect();
            let fetched = records.len();
            for record in records {
                let rule = match source {
                    Collection::TopicRule => Some(decode_record::<TopicRule>(source, &record)?),
                    _ => {
                        let name = &record.key[prefix.len()..];
                        self.load::<TopicRule>(Collection::TopicRule, name).await?.map(|loaded| loaded.value)
                    }
                };
                if let Some(page) = builder.offer(record.key, rule, &mut keep) {
                    return Ok(page);
                }
            }
            if let Some(page) = builder.chunk_done(fetched) {
                return Ok(page);
            }
        }
    }

    /// Every rule, for the rules engine (which skips the disabled ones).
    pub async fn all_topic_rules(&self) -> Result<Vec<TopicRule>> {
        Ok(self.load_all::<TopicRule>(Collection::TopicRule).await?.into_iter().map(|l| l.value).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(sql: &str) -> TopicRulePayload {
        serde_json::from_value(json!({
            "sql": sql,
            "actions": [{"republish": {"topic": "out", "roleArn": "arn:aws:iam::1:role/r"}}],
        }))
        .unwrap()
    }

    #[test]
    fn sql_errors_are_sql_parse_exceptions() {
        let err = rule_from("r", &payload("SELECT FROM"), 0, Tags::new()).unwrap_err();
        assert!(matches!(err, Error::SqlParse(_)), "{err:?}");
    }

    #[test]
    fn actions_the_engine_could_not_run_are_refused_at_create_time() {
        let with_action = |action: serde_json::Value| -> TopicRulePayload {
            serde_json::from_value(json!({"sql": "SELECT * FROM 'a/b'", "actions": [action]})).unwrap()
        };
        let role = "arn:aws:iam::1:role/r";
        let bad_template = with_action(json!({"republish": {"topic": "out/${topic(", "roleArn": role}}));
        assert!(matches!(rule_from("r", &bad_template, 0, Tags::new()), Err(Error::InvalidRequest(_))));
        let bad_qos = with_action(json!({"republish": {"topic": "out", "roleArn": role, "qos": 300}}));
        assert!(matches!(rule_from("r", &bad_qos, 0, Tags::new()), Err(Error::InvalidRequest(_))));
        let headers = with_action(
            json!({"republish": {"topic": "out/${topic(2)}", "roleArn": role, "headers": {"contentType": "${x}"}}}),
        );
        assert!(rule_from("r", &headers, 0, Tags::new()).is_ok());
        let bad_filter = serde_json::from_value(json!({"sql": "SELECT * FROM 'a/#/b'", "actions": []})).unwrap();
        assert!(matches!(rule_from("r", &bad_filter, 0, Tags::new()), Err(Error::SqlParse(_))));
    }

    #[test]
    fn the_topic_pattern_is_the_from_filter() {
        let rule =
            rule_from("r", &payload("SELECT * FROM 'sensors/+/temperature' WHERE value > 40"), 5, Tags::new()).unwrap();
        assert_eq!(rule.topic_pattern, "sensors/+/temperature");
        assert_eq!(rule.sql_version, "2015-10-08");
        assert!(!rule.rule_disabled);
    }
}
