//! Stored topic rules turned into what the engine runs: the parsed query, each
//! action's templates parsed once, and an index of FROM filters.

use std::collections::HashMap;
use std::sync::Arc;

use ferrocore_model::rules::{DestinationStatus, TopicRule, TopicRuleDestination, action_kind};
use ferrocore_rules_sql::{Query, SqlError, Template};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One rule ready to run.
#[derive(Debug)]
pub struct CompiledRule {
    pub name: String,
    pub query: Query,
    pub sql_version: String,
    pub actions: Vec<Action>,
    pub error_action: Option<Action>,
    /// Evaluation or templates call back into ferrocore (get_thing_shadow), so they run
    /// inside `block_in_place`.
    pub uses_lookups: bool,
    pub counters: RuleCounters,
}

/// `ferrocore_rules_messages_total{rule, outcome}`, registered once per rule (not per message).
#[derive(Debug)]
pub struct RuleCounters {
    pub matched: metrics::Counter,
    pub filtered: metrics::Counter,
    pub evaluation_failed: metrics::Counter,
}

impl RuleCounters {
    fn new(rule: &str) -> Self {
        let counter = |outcome: &'static str| metrics::counter!("ferrocore_rules_messages_total", "rule" => rule.to_string(), "outcome" => outcome);
        Self {
            matched: counter("matched"),
            filtered: counter("filtered"),
            evaluation_failed: counter("evaluation_failed"),
        }
    }
}

/// An action with its kind (the `Action` union member, for metrics and error payloads).
#[derive(Debug)]
pub struct Action {
    pub kind: &'static str,
    pub spec: ActionSpec,
    pub counters: ActionCounters,
}

/// `ferrocore_rules_actions_total{rule, action, outcome}`, registered once per action.
#[derive(Debug)]
pub struct ActionCounters {
    pub succeeded: metrics::Counter,
    pub failed: metrics::Counter,
    pub retried: metrics::Counter,
}

impl ActionCounters {
    fn new(rule: &str, kind: &'static str) -> Self {
        let counter = |outcome: &'static str| metrics::counter!("ferrocore_rules_actions_total", "rule" => rule.to_string(), "action" => kind, "outcome" => outcome);
        Self { succeeded: counter("succeeded"), failed: counter("failed"), retried: counter("retried") }
    }
}

#[derive(Debug)]
pub enum ActionSpec {
    Republish {
        topic: Template,
        qos: u8,
    },
    Lambda {
        function_arn: Template,
    },
    DynamoDb(DynamoDb),
    DynamoDbV2 {
        table_name: Template,
    },
    S3 {
        bucket: Template,
        key: Template,
        canned_acl: Option<String>,
    },
    Sns {
        target_arn: Template,
        json_format: bool,
    },
    Sqs {
        queue_url: Template,
        base64: bool,
    },
    Kinesis {
        stream_name: Template,
        partition_key: Option<Template>,
    },
    Firehose {
        stream_name: Template,
        separator: Option<String>,
        batch: bool,
    },
    CloudwatchLogs {
        log_group: Template,
        batch: bool,
    },
    CloudwatchMetric(Metric),
    CloudwatchAlarm {
        alarm_name: Template,
        state_reason: Template,
        state_value: Template,
    },
    Http(Http),
    /// A kind AWS has that ferrocore does not deliver to; running it fails (and
    /// reaches the error action), it never pretends to succeed.
    Unsupported,
}

#[derive(Debug)]
pub struct DynamoDb {
    pub table_name: Template,
    pub hash_key: KeyTemplate,
    pub range_key: Option<KeyTemplate>,
    pub operation: Option<Template>,
    pub payload_field: Option<Template>,
}

#[derive(Debug)]
pub struct KeyTemplate {
    pub field: Template,
    pub value: Template,
    pub numeric: bool,
}

#[derive(Debug)]
pub struct Metric {
    pub namespace: Template,
    pub name: Template,
    pub value: Template,
    pub unit: Template,
    pub timestamp: Option<Template>,
}

#[derive(Debug)]
pub struct Http {
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub sigv4: Option<SigV4>,
}

#[derive(Debug, Clone)]
pub struct SigV4 {
    pub region: String,
    pub service: String,
}

/// Every enabled rule and what the HTTP actions may reach, as of one registry change.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<CompiledRule>>,
    /// Each distinct FROM filter and the rules that use it.
    filters: Vec<(String, Vec<usize>)>,
    /// Filters by their first level, so a message is matched only against filters that
    /// can match it; filters starting with a wildcard are always tried.
    by_first_level: HashMap<String, Vec<usize>>,
    wildcard_first: Vec<usize>,
    by_name: HashMap<String, usize>,
    /// URL prefixes of ENABLED HTTP destinations.
    pub enabled_http_prefixes: Vec<String>,
}

impl RuleSet {
    /// Compiles the enabled rules; a rule that does not compile is reported and left out.
    pub fn build(rules: Vec<TopicRule>, destinations: &[TopicRuleDestination]) -> (Self, Vec<(String, String)>) {
        let mut set = RuleSet::default();
        let mut problems = Vec::new();
        let mut by_filter: HashMap<String, usize> = HashMap::new();
        for rule in rules.into_iter().filter(|r| !r.rule_disabled) {
            let name = rule.name.clone();
            let filter = rule.topic_pattern.clone();
            match compile(rule) {
                Ok(compiled) => {
                    let index = set.rules.len();
                    set.rules.push(Arc::new(compiled));
                    set.by_name.insert(name, index);
                    if !filter.is_empty() {
                        let slot = *by_filter.entry(filter.clone()).or_insert_with(|| {
                            let slot = set.filters.len();
                            match first_level(&filter) {
                                "+" | "#" => set.wildcard_first.push(slot),
                                level => set.by_first_level.entry(level.to_string()).or_default().push(slot),
                            }
                            set.filters.push((filter, Vec::new()));
                            slot
                        });
                        set.filters[slot].1.push(index);
                    }
                }
                Err(problem) => problems.push((name, problem)),
            }
        }
        set.enabled_http_prefixes = destinations
            .iter()
            .filter(|d| d.status == DestinationStatus::Enabled)
            .filter_map(|d| match &d.target {
                ferrocore_model::rules::DestinationTarget::Http { confirmation_url } => Some(confirmation_url.clone()),
                ferrocore_model::rules::DestinationTarget::Vpc(_) => None,
            })
            .collect();
        (set, problems)
    }

    /// No rule has a FROM filter (Basic Ingest-only rules still run).
    pub fn matches_nothing(&self) -> bool {
        self.filters.is_empty()
    }

    /// The rules whose FROM filter matches `topic`.
    pub fn matching(&self, topic: &str) -> Vec<Arc<CompiledRule>> {
        let mut matched = Vec::new();
        let same_first = self.by_first_level.get(first_level(topic)).map_or(&[][..], Vec::as_slice);
        for &slot in same_first.iter().chain(&self.wildcard_first) {
            let (filter, rules) = &self.filters[slot];
            if ferrocore_mqtt::topic::matches(filter, topic) {
                matched.extend(rules.iter().map(|&i| self.rules[i].clone()));
            }
        }
        matched
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<CompiledRule>> {
        self.by_name.get(name).map(|&i| self.rules[i].clone())
    }
}

fn first_level(topic: &str) -> &str {
    topic.split('/').next().unwrap_or_default()
}

fn compile(rule: TopicRule) -> Result<CompiledRule, String> {
    let query = ferrocore_rules_sql::parse(&rule.sql).map_err(|e| format!("SQL: {e}"))?;
    let compile = |stored| compile_action(&rule.name, stored);
    let actions = rule.actions.iter().map(compile).collect::<Result<Vec<_>, _>>()?;
    let error_action = rule.error_action.as_ref().map(compile).transpose()?;
    let uses_lookups = query.uses_lookups()
        || actions.iter().chain(&error_action).any(|a| a.spec.templates().iter().any(|t| t.uses_lookups()));
    Ok(CompiledRule {
        counters: RuleCounters::new(&rule.name),
        name: rule.name,
        query,
        sql_version: rule.sql_version,
        actions,
        error_action,
        uses_lookups,
    })
}

fn template(text: &str, field: &str) -> Result<Template, String> {
    Template::parse(text).map_err(|e: SqlError| format!("substitution template in {field}: {e}"))
}

fn optional(text: &Option<String>, field: &str) -> Result<Option<Template>, String> {
    text.as_deref().map(|t| template(t, field)).transpose()
}

/// The members of action bodies, as AWS names them; unknown members are ignored.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Body {
    topic: Option<String>,
    qos: Option<u8>,
    function_arn: Option<String>,
    table_name: Option<String>,
    hash_key_field: Option<String>,
    hash_key_value: Option<String>,
    hash_key_type: Option<String>,
    range_key_field: Option<String>,
    range_key_value: Option<String>,
    range_key_type: Option<String>,
    operation: Option<String>,
    payload_field: Option<String>,
    put_item: Option<PutItem>,
    bucket_name: Option<String>,
    key: Option<String>,
    canned_acl: Option<String>,
    target_arn: Option<String>,
    message_format: Option<String>,
    queue_url: Option<String>,
    use_base64: Option<bool>,
    stream_name: Option<String>,
    partition_key: Option<String>,
    delivery_stream_name: Option<String>,
    separator: Option<String>,
    batch_mode: Option<bool>,
    log_group_name: Option<String>,
    metric_namespace: Option<String>,
    metric_name: Option<String>,
    metric_value: Option<String>,
    metric_unit: Option<String>,
    metric_timestamp: Option<String>,
    alarm_name: Option<String>,
    state_reason: Option<String>,
    state_value: Option<String>,
    url: Option<String>,
    /// A list of `{key, value}` for http, an object of MQTT 5 properties for republish.
    headers: Option<Value>,
    auth: Option<HttpAuth>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PutItem {
    table_name: String,
}

#[derive(Deserialize)]
struct HttpHeader {
    key: String,
    value: String,
}

#[derive(Deserialize)]
struct HttpAuth {
    sigv4: Option<SigV4Body>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SigV4Body {
    signing_region: String,
    service_name: String,
}

fn required(value: &Option<String>, kind: &str, field: &str) -> Result<Template, String> {
    match value {
        Some(text) => template(text, field),
        None => Err(format!("{kind}.{field} is required")),
    }
}

fn compile_action(rule: &str, stored: &Map<String, Value>) -> Result<Action, String> {
    let stored_kind = action_kind(stored);
    let kind = ferrocore_model::rules::ACTION_KINDS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| *name == stored_kind)
        .ok_or_else(|| format!("unknown action {stored_kind}"))?;
    let raw = stored.get(kind).cloned().unwrap_or(Value::Null);
    let body: Body = serde_json::from_value(raw).map_err(|e| format!("{kind}: {e}"))?;
    let need = |value: &Option<String>, field: &str| required(value, kind, field);
    let spec = match kind {
        "republish" => ActionSpec::Republish {
            // `$$` writes a reserved `$` topic (e.g. `$$aws/things/x/shadow/update`).
            topic: template(&body.topic.clone().unwrap_or_default().replace("$$", "$"), "topic")?,
            qos: body.qos.unwrap_or(0).min(1),
        },
        "lambda" => ActionSpec::Lambda { function_arn: need(&body.function_arn, "functionArn")? },
        "dynamoDB" => ActionSpec::DynamoDb(DynamoDb {
            table_name: need(&body.table_name, "tableName")?,
            hash_key: KeyTemplate {
                field: need(&body.hash_key_field, "hashKeyField")?,
                value: need(&body.hash_key_value, "hashKeyValue")?,
                numeric: body.hash_key_type.as_deref() == Some("NUMBER"),
            },
            range_key: match (&body.range_key_field, &body.range_key_value) {
                (Some(field), Some(value)) => Some(KeyTemplate {
                    field: template(field, "rangeKeyField")?,
                    value: template(value, "rangeKeyValue")?,
                    numeric: body.range_key_type.as_deref() == Some("NUMBER"),
                }),
                _ => None,
            },
            operation: optional(&body.operation, "operation")?,
            payload_field: optional(&body.payload_field, "payloadField")?,
        }),
        "dynamoDBv2" => ActionSpec::DynamoDbV2 {
            table_name: template(&body.put_item.map(|p| p.table_name).unwrap_or_default(), "putItem.tableName")?,
        },
        "s3" => ActionSpec::S3 {
            bucket: need(&body.bucket_name, "bucketName")?,
            key: need(&body.key, "key")?,
            canned_acl: body.canned_acl,
        },
        "sns" => ActionSpec::Sns {
            target_arn: need(&body.target_arn, "targetArn")?,
            json_format: body.message_format.as_deref() == Some("JSON"),
        },
        "sqs" => {
            ActionSpec::Sqs { queue_url: need(&body.queue_url, "queueUrl")?, base64: body.use_base64.unwrap_or(false) }
        }
        "kinesis" => ActionSpec::Kinesis {
            stream_name: need(&body.stream_name, "streamName")?,
            partition_key: optional(&body.partition_key, "partitionKey")?,
        },
        "firehose" => ActionSpec::Firehose {
            stream_name: need(&body.delivery_stream_name, "deliveryStreamName")?,
            separator: body.separator,
            batch: body.batch_mode.unwrap_or(false),
        },
        "cloudwatchLogs" => ActionSpec::CloudwatchLogs {
            log_group: need(&body.log_group_name, "logGroupName")?,
            batch: body.batch_mode.unwrap_or(false),
        },
        "cloudwatchMetric" => ActionSpec::CloudwatchMetric(Metric {
            namespace: need(&body.metric_namespace, "metricNamespace")?,
            name: need(&body.metric_name, "metricName")?,
            value: need(&body.metric_value, "metricValue")?,
            unit: need(&body.metric_unit, "metricUnit")?,
            timestamp: optional(&body.metric_timestamp, "metricTimestamp")?,
        }),
        "cloudwatchAlarm" => ActionSpec::CloudwatchAlarm {
            alarm_name: need(&body.alarm_name, "alarmName")?,
            state_reason: need(&body.state_reason, "stateReason")?,
            state_value: need(&body.state_value, "stateValue")?,
        },
        "http" => {
            let headers: Vec<HttpHeader> = match body.headers {
                Some(list) => serde_json::from_value(list).map_err(|e| format!("http.headers: {e}"))?,
                None => Vec::new(),
            };
            ActionSpec::Http(Http {
                url: template(&body.url.unwrap_or_default(), "url")?,
                headers: headers
                    .into_iter()
                    .map(|h| Ok((h.key, template(&h.value, "headers.value")?)))
                    .collect::<Result<_, String>>()?,
                sigv4: body
                    .auth
                    .and_then(|a| a.sigv4)
                    .map(|s| SigV4 { region: s.signing_region, service: s.service_name }),
            })
        }
        _ => ActionSpec::Unsupported,
    };
    Ok(Action { kind, spec, counters: ActionCounters::new(rule, kind) })
}

impl ActionSpec {
    /// Every substitution template of the action.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            Self::Republish { topic, .. } => vec![topic],
            Self::Lambda { function_arn } => vec![function_arn],
            Self::DynamoDb(d) => {
                let mut all = vec![&d.table_name, &d.hash_key.field, &d.hash_key.value];
                if let Some(range) = &d.range_key {
                    all.extend([&range.field, &range.value]);
                }
                all.extend(d.operation.iter().chain(&d.payload_field));
                all
            }
            Self::DynamoDbV2 { table_name } => vec![table_name],
            Self::S3 { bucket, key, .. } => vec![bucket, key],
            Self::Sns { target_arn, .. } => vec![target_arn],
            Self::Sqs { queue_url, .. } => vec![queue_url],
            Self::Kinesis { stream_name, partition_key } => std::iter::once(stream_name).chain(partition_key).collect(),
            Self::Firehose { stream_name, .. } => vec![stream_name],
            Self::CloudwatchLogs { log_group, .. } => vec![log_group],
            Self::CloudwatchMetric(m) => {
                [&m.namespace, &m.name, &m.value, &m.unit].into_iter().chain(&m.timestamp).collect()
            }
            Self::CloudwatchAlarm { alarm_name, state_reason, state_value } => {
                vec![alarm_name, state_reason, state_value]
            }
            Self::Http(h) => std::iter::once(&h.url).chain(h.headers.iter().map(|(_, v)| v)).collect(),
            Self::Unsupported => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, sql: &str) -> TopicRule {
        TopicRule {
            name: name.into(),
            topic_pattern: ferrocore_rules_sql::parse(sql).unwrap().from.unwrap_or_default(),
            sql: sql.into(),
            description: String::new(),
            actions: Vec::new(),
            error_action: None,
            rule_disabled: false,
            sql_version: "2016-03-23".into(),
            created_at: 0,
            tags: Default::default(),
        }
    }

    fn names(set: &RuleSet, topic: &str) -> Vec<String> {
        let mut names: Vec<String> = set.matching(topic).iter().map(|r| r.name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn messages_match_rules_by_filter_through_the_first_level_index() {
        let rules = vec![
            rule("Exact", "SELECT * FROM 'a/b'"),
            rule("Plus", "SELECT * FROM 'a/+'"),
            rule("Again", "SELECT x FROM 'a/+'"),
            rule("Any", "SELECT * FROM '#'"),
            rule("LeadingPlus", "SELECT * FROM '+/b'"),
            rule("Shadow", "SELECT * FROM '$aws/things/+/shadow/update/accepted'"),
            rule("Other", "SELECT * FROM 'c/#'"),
            rule("Ingest", "SELECT *"),
        ];
        let (set, problems) = RuleSet::build(rules, &[]);
        assert!(problems.is_empty());
        assert_eq!(names(&set, "a/b"), ["Again", "Any", "Exact", "LeadingPlus", "Plus"]);
        assert_eq!(names(&set, "c/d/e"), ["Any", "Other"]);
        assert_eq!(names(&set, "$aws/things/t/shadow/update/accepted"), ["Shadow"], "wildcards skip $ topics");
        assert!(set.by_name("Ingest").is_some() && !set.matches_nothing());
    }

    #[test]
    fn disabled_and_broken_rules_are_left_out() {
        let mut disabled = rule("Off", "SELECT * FROM 'a'");
        disabled.rule_disabled = true;
        let mut broken = rule("Broken", "SELECT * FROM 'b'");
        broken.actions.push(serde_json::from_str(r#"{"republish": {"topic": "x/${unterminated"}}"#).unwrap());
        let (set, problems) = RuleSet::build(vec![disabled, broken], &[]);
        assert!(set.by_name("Off").is_none() && set.by_name("Broken").is_none());
        assert_eq!(problems.len(), 1);
        assert!(set.matches_nothing());
    }
}
