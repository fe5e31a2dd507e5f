//! Topic rule destinations: where HTTP actions may post (after the endpoint
//! confirms it wants the traffic) and VPC destinations (enabled at once: there is
//! no VPC to attach to here). The rules engine sends confirmation requests for
//! destinations in IN_PROGRESS; `ConfirmTopicRuleDestination` enables them.

use ferrocore_model::rules::{DestinationStatus, DestinationTarget, TopicRuleDestination};
use ferrocore_model::{Error, Result};
use ferrocore_store::{Collection, Expect, Write};

use crate::paging::{Page, PageRequest};
use crate::{Loaded, Outcome, Registry, new_id, put};

impl Registry {
    async fn require_destination(&self, arn: &str) -> Result<Loaded<TopicRuleDestination>> {
        self.load(Collection::TopicRuleDestination, arn)
            .await?
            // AWS answers for a destination that does not exist as for one the caller may not see.
            .ok_or_else(|| Error::Unauthorized(format!("Access to TopicRuleDestination '{arn}' was denied")))
    }

    /// A new destination record: HTTP ones wait for confirmation, VPC ones are enabled.
    pub(crate) fn new_destination(&self, target: DestinationTarget) -> TopicRuleDestination {
        let (kind, status) = match &target {
            DestinationTarget::Http { .. } => ("http", DestinationStatus::InProgress),
            DestinationTarget::Vpc(_) => ("vpc", DestinationStatus::Enabled),
        };
        let now = self.now();
        let account = self.account();
        TopicRuleDestination {
            arn: format!("arn:aws:iot:{}:{}:ruledestination/{kind}/{}", account.region, account.id, new_id()),
            target,
            status,
            status_reason: None,
            confirmation_token: (status == DestinationStatus::InProgress).then(new_id),
            created_at: now,
            last_updated_at: now,
        }
    }

    pub async fn create_topic_rule_destination(&self, target: DestinationTarget) -> Result<TopicRuleDestination> {
        if let DestinationTarget::Http { confirmation_url } = &target {
            check_url(confirmation_url)?;
        }
        let target = &target;
        self.transact(|| async move {
            if let DestinationTarget::Http { confirmation_url } = target
                && self.all_topic_rule_destinations().await?.iter().any(|d| d.target == *target)
            {
                return Err(Error::ResourceAlreadyExists {
                    message: format!("A topic rule destination for {confirmation_url} already exists."),
                    resource_id: confirmation_url.clone(),
                    resource_arn: String::new(),
                });
            }
            let destination = self.new_destination(target.clone());
            let write = put(Collection::TopicRuleDestination, &destination.arn, Expect::Absent, &destination);
            Ok(Outcome::write(vec![write], destination))
        })
        .await
    }

    pub async fn get_topic_rule_destination(&self, arn: &str) -> Result<TopicRuleDestination> {
        Ok(self.require_destination(arn).await?.value)
    }

    pub async fn list_topic_rule_destinations(&self, page: &PageRequest) -> Result<Page<TopicRuleDestination>> {
        self.page_where(Collection::TopicRuleDestination, page, |_: &TopicRuleDestination| true).await
    }

    pub async fn all_topic_rule_destinations(&self) -> Result<Vec<TopicRuleDestination>> {
        Ok(self.load_all(Collection::TopicRuleDestination).await?.into_iter().map(|l| l.value).collect())
    }

    /// UpdateTopicRuleDestination: ENABLED and DISABLED once confirmed; IN_PROGRESS
    /// asks for a new confirmation (the engine sends it again).
    pub async fn update_topic_rule_destination(&self, arn: &str, status: DestinationStatus) -> Result<()> {
        self.transact(|| async {
            let loaded = self.require_destination(arn).await?;
            let mut destination = loaded.value.clone();
            let confirmed = destination.confirmation_token.is_none();
            match status {
                DestinationStatus::Enabled | DestinationStatus::Disabled if confirmed => {}
                DestinationStatus::Enabled | DestinationStatus::Disabled => {
                    return Err(Error::invalid(format!(
                        "The topic rule destination {arn} has not been confirmed; confirm it before enabling or disabling it."
                    )));
                }
                DestinationStatus::InProgress if matches!(destination.target, DestinationTarget::Http { .. }) => {
                    destination.confirmation_token = Some(new_id());
                }
                other => {
                    return Err(Error::invalid(format!(
                        "The status {} cannot be set on topic rule destination {arn}.",
                        other.as_str()
                    )));
                }
            }
            destination.status = status;
            destination.status_reason = None;
            destination.last_updated_at = self.now();
            Ok(Outcome::write(vec![put(Collection::TopicRuleDestination, arn, loaded.expect(), &destination)], ()))
        })
        .await
    }

    /// ConfirmTopicRuleDestination: the token sent to the confirmation URL enables the destination.
    pub async fn confirm_topic_rule_destination(&self, token: &str) -> Result<()> {
        self.transact(|| async {
            let all = self.load_all::<TopicRuleDestination>(Collection::TopicRuleDestination).await?;
            let loaded = all
                .into_iter()
                .find(|l| l.value.confirmation_token.as_deref() == Some(token))
                .ok_or_else(|| Error::invalid("The confirmation token is not valid."))?;
            let mut destination = loaded.value.clone();
            destination.status = DestinationStatus::Enabled;
            destination.confirmation_token = None;
            destination.status_reason = None;
            destination.last_updated_at = self.now();
            let arn = destination.arn.clone();
            Ok(Outcome::write(vec![put(Collection::TopicRuleDestination, &arn, loaded.expect(), &destination)], ()))
        })
        .await
    }

    pub async fn delete_topic_rule_destination(&self, arn: &str) -> Result<()> {
        self.transact(|| async {
            let loaded = self.require_destination(arn).await?;
            Ok(Outcome::write(vec![Write::delete(Collection::TopicRuleDestination, arn, loaded.expect())], ()))
        })
        .await
    }
}

/// The destination URL each HTTP action needs (its confirmationUrl, else its URL),
/// checked as AWS does when a rule is created: a templated URL needs a literal
/// confirmationUrl, and the URL must start with it.
pub(crate) fn http_destination_urls(actions: &[serde_json::Map<String, serde_json::Value>]) -> Result<Vec<String>> {
    let mut urls = Vec::new();
    for body in actions.iter().filter_map(|a| a.get("http")) {
        let url = body.get("url").and_then(serde_json::Value::as_str).unwrap_or_default();
        let confirmation = body.get("confirmationUrl").and_then(serde_json::Value::as_str);
        let templated = |text: &str| text.contains("${");
        let destination = match confirmation {
            Some(confirmation) if templated(confirmation) => continue,
            Some(confirmation) if !templated(url) && !url.starts_with(confirmation) => {
                return Err(Error::invalid(format!(
                    "The URL {url} must start with the confirmation URL {confirmation}."
                )));
            }
            Some(confirmation) => confirmation,
            None if templated(url) => {
                return Err(Error::invalid(format!(
                    "The URL {url} uses substitution templates, so a confirmationUrl is required."
                )));
            }
            None => url,
        };
        check_url(destination)?;
        if !urls.iter().any(|known| known == destination) {
            urls.push(destination.to_string());
        }
    }
    Ok(urls)
}

/// Destination and action URLs are HTTPS on AWS; plain http is accepted here for
/// local endpoints (the rules engine refuses it unless configured to allow it).
pub fn check_url(url: &str) -> Result<()> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(Error::invalid(format!("The URL {url} is not a valid HTTPS URL."))),
    }
}
