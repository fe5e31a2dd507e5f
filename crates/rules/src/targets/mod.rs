//! Delivering a rule's output to an action's target: the gateway (republish),
//! HTTP endpoints, and AWS services through the AWS SDK for Rust (each service
//! behind its cargo feature, at a configurable endpoint).

pub mod aws;
// No SDK behind it, so it always compiles (and its tests run without the features).
#[cfg_attr(not(feature = "cloudwatch"), allow(dead_code))]
mod cloudwatch;
mod http;

use std::sync::{Arc, OnceLock};

use ferrocore_registry::{Notification, Publisher};
use ferrocore_rules_sql::{Template, Value};

use crate::RulesConfig;
use crate::compile::ActionSpec;

/// Why an action failed, as the error action reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The target (`failedResource`): a topic, table, queue URL, function ARN, URL.
    pub resource: String,
    pub message: String,
    /// Worth trying again (timeouts, throttling, 5xx); not for bad input or missing resources.
    pub retryable: bool,
}

impl Failure {
    pub fn permanent(resource: impl Into<String>, message: impl Into<String>) -> Self {
        Self { resource: resource.into(), message: message.into(), retryable: false }
    }

    pub fn transient(resource: impl Into<String>, message: impl Into<String>) -> Self {
        Self { resource: resource.into(), message: message.into(), retryable: true }
    }
}

/// What the rule produced for one message.
pub struct Output<'a> {
    /// The bytes actions send: raw for a binary result, compact JSON otherwise.
    pub bytes: &'a [u8],
    pub value: &'a Value,
    /// Rule actions that led to the message the output came from.
    pub hops: u8,
}

/// A republish chain longer than this is a rule loop (a rule matching its own output,
/// or rules feeding each other): the republish fails instead of running forever.
pub const MAX_REPUBLISH_HOPS: u8 = 8;

/// Renders an action's substitution templates for the message being handled.
pub type Render<'a> = dyn Fn(&Template) -> Result<String, Failure> + Send + Sync + 'a;

pub struct Targets {
    publisher: OnceLock<Arc<dyn Publisher>>,
    http: http::HttpTarget,
    aws: aws::Clients,
}

impl Targets {
    pub fn new(config: &RulesConfig) -> Self {
        Self { publisher: OnceLock::new(), http: http::HttpTarget::new(config), aws: aws::Clients::new(config) }
    }

    pub fn attach_publisher(&self, publisher: Arc<dyn Publisher>) {
        let _ = self.publisher.set(publisher);
    }

    /// Sends a topic rule destination confirmation request.
    pub async fn confirm(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        self.http.confirm(url, body).await
    }

    /// Runs one action once.
    pub async fn deliver(
        &self,
        kind: &str,
        spec: &ActionSpec,
        output: &Output<'_>,
        render: &Render<'_>,
        http_prefixes: &[String],
    ) -> Result<(), Failure> {
        match spec {
            ActionSpec::Republish { topic, qos } => {
                let topic = render(topic)?;
                if ferrocore_mqtt::topic::validate_name(&topic).is_err() {
                    return Err(Failure::permanent(topic, "The republish topic is not a valid topic name."));
                }
                if output.hops >= MAX_REPUBLISH_HOPS {
                    return Err(Failure::permanent(
                        topic,
                        format!("The message was already republished {} times by rules: a rule loop.", output.hops),
                    ));
                }
                let publisher =
                    self.publisher.get().ok_or_else(|| Failure::transient(&topic, "the gateway is not ready"))?;
                let notification =
                    Notification { topic, payload: output.bytes.to_vec(), qos: *qos, hops: output.hops + 1 };
                publisher.publish(vec![notification]).await;
                Ok(())
            }
            ActionSpec::Http(spec) => self.http.post(spec, output, render, http_prefixes, &self.aws.credentials).await,
            ActionSpec::Unsupported => Err(Failure::permanent(
                kind,
                format!("ferrocore does not deliver {kind} actions; the message was not sent."),
            )),
            aws_spec => self.aws.deliver(aws_spec, output, render).await,
        }
    }
}
