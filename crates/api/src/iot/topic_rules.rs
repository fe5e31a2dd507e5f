//! Topic rules and topic rule destinations (restJson1 shapes of the `iot` API).

use ferrocore_model::ResourceKind;
use ferrocore_model::registry::Tags;
use ferrocore_model::rules::{DestinationStatus, DestinationTarget, TopicRule, TopicRuleDestination, VpcDestination};
use ferrocore_registry::{ListTopicRules, Registry};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, empty, page_reply, reply, timestamp};
use crate::error::ApiError;
use crate::input::Input;

/// Tags of CreateTopicRule travel in `x-amz-tagging` as a query string (`k1=v1&k2=v2`).
fn tagging_header(input: &Input) -> Tags {
    input
        .header("x-amz-tagging", "tags")
        .map(|text| ferrocore_sigv4::form_pairs(&text).into_iter().collect())
        .unwrap_or_default()
}

pub(super) async fn create(registry: &Registry, input: &Input) -> Answer {
    registry.create_topic_rule(&input.label("ruleName"), &input.json()?, &tagging_header(input)).await?;
    empty()
}

pub(super) async fn replace(registry: &Registry, input: &Input) -> Answer {
    registry.replace_topic_rule(&input.label("ruleName"), &input.json()?).await?;
    empty()
}

pub(super) async fn get(registry: &Registry, input: &Input) -> Answer {
    let rule = registry.get_topic_rule(&input.label("ruleName")).await?;
    reply(json!({
        "ruleArn": registry.arn(ResourceKind::TopicRule, &rule.name),
        "rule": {
            "ruleName": rule.name,
            "sql": rule.sql,
            "description": rule.description,
            "createdAt": timestamp(rule.created_at),
            "actions": rule.actions,
            "ruleDisabled": rule.rule_disabled,
            "awsIotSqlVersion": rule.sql_version,
            "errorAction": rule.error_action,
        }
    }))
}

pub(super) async fn set_enabled(registry: &Registry, input: &Input, enabled: bool) -> Answer {
    registry.set_topic_rule_enabled(&input.label("ruleName"), enabled).await?;
    empty()
}

pub(super) async fn delete(registry: &Registry, input: &Input) -> Answer {
    registry.delete_topic_rule(&input.label("ruleName")).await?;
    empty()
}

/// ListTopicRules takes up to 10,000 per page; pages here hold at most the registry's page size,
/// with a `nextToken` for the rest (what any paging client follows).
fn rules_page(input: &Input) -> Result<ferrocore_registry::PageRequest, ApiError> {
    let mut page = input.page()?;
    if let Some(n) = page.max_results.filter(|n| (1..=10_000).contains(n)) {
        page.max_results = Some(n.min(ferrocore_registry::MAX_PAGE_SIZE as i64));
    }
    Ok(page)
}

pub(super) async fn list(registry: &Registry, input: &Input) -> Answer {
    let request = ListTopicRules {
        topic: input.query("topic").map(str::to_string),
        rule_disabled: input.query_as("ruleDisabled")?,
        page: rules_page(input)?,
    };
    let page = registry.list_topic_rules(&request).await?;
    page_reply("rules", page, |rule: TopicRule| {
        json!({
            "ruleArn": registry.arn(ResourceKind::TopicRule, &rule.name),
            "ruleName": rule.name,
            "topicPattern": rule.topic_pattern,
            "createdAt": timestamp(rule.created_at),
            "ruleDisabled": rule.rule_disabled,
        })
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HttpUrlConfiguration {
    confirmation_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DestinationConfiguration {
    http_url_configuration: Option<HttpUrlConfiguration>,
    vpc_configuration: Option<VpcDestination>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateDestination {
    destination_configuration: Option<DestinationConfiguration>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateDestination {
    arn: Option<String>,
    status: Option<String>,
}

fn target_json(target: &DestinationTarget, summary: bool) -> (&'static str, Value) {
    match (target, summary) {
        (DestinationTarget::Http { confirmation_url }, false) => {
            ("httpUrlProperties", json!({"confirmationUrl": confirmation_url}))
        }
        (DestinationTarget::Http { confirmation_url }, true) => {
            ("httpUrlSummary", json!({"confirmationUrl": confirmation_url}))
        }
        (DestinationTarget::Vpc(vpc), false) => ("vpcProperties", json!(vpc)),
        (DestinationTarget::Vpc(vpc), true) => ("vpcDestinationSummary", json!(vpc)),
    }
}

fn destination_json(destination: &TopicRuleDestination, summary: bool) -> Value {
    let (key, target) = target_json(&destination.target, summary);
    json!({
        "arn": destination.arn,
        "status": destination.status.as_str(),
        "statusReason": destination.status_reason,
        "createdAt": timestamp(destination.created_at),
        "lastUpdatedAt": timestamp(destination.last_updated_at),
        key: target,
    })
}

pub(super) async fn create_destination(registry: &Registry, input: &Input) -> Answer {
    let request: CreateDestination = input.json()?;
    let configuration =
        request.destination_configuration.ok_or_else(|| ApiError::invalid("destinationConfiguration is required."))?;
    let target = match (configuration.http_url_configuration, configuration.vpc_configuration) {
        (Some(http), None) => DestinationTarget::Http {
            confirmation_url: http.confirmation_url.ok_or_else(|| ApiError::invalid("confirmationUrl is required."))?,
        },
        (None, Some(vpc)) => DestinationTarget::Vpc(vpc),
        _ => {
            return Err(ApiError::invalid(
                "destinationConfiguration must set exactly one of httpUrlConfiguration and vpcConfiguration.",
            ));
        }
    };
    let destination = registry.create_topic_rule_destination(target).await?;
    reply(json!({"topicRuleDestination": destination_json(&destination, false)}))
}

pub(super) async fn get_destination(registry: &Registry, input: &Input) -> Answer {
    let destination = registry.get_topic_rule_destination(&input.label("arn")).await?;
    reply(json!({"topicRuleDestination": destination_json(&destination, false)}))
}

pub(super) async fn list_destinations(registry: &Registry, input: &Input) -> Answer {
    let page = registry.list_topic_rule_destinations(&input.page()?).await?;
    page_reply("destinationSummaries", page, |d| destination_json(&d, true))
}

pub(super) async fn update_destination(registry: &Registry, input: &Input) -> Answer {
    let request: UpdateDestination = input.json()?;
    let arn = request.arn.ok_or_else(|| ApiError::invalid("arn is required."))?;
    let status = request.status.ok_or_else(|| ApiError::invalid("status is required."))?;
    let status = DestinationStatus::parse(&status).ok_or_else(|| {
        ApiError::invalid(format!(
            "1 validation error detected: Value '{status}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, IN_PROGRESS, DISABLED, ERROR, DELETING]"
        ))
    })?;
    registry.update_topic_rule_destination(&arn, status).await?;
    empty()
}

pub(super) async fn delete_destination(registry: &Registry, input: &Input) -> Answer {
    registry.delete_topic_rule_destination(&input.label("arn")).await?;
    empty()
}
