//! The rules engine: every message the gateway routes is matched against the
//! enabled topic rules' FROM filters, the rule's SQL is evaluated over it, and the
//! result is delivered to each action's target (the gateway, HTTP endpoints, AWS
//! services), with retries and the rule's error action on failure.
//!
//! Layout: [`compile`] turns stored rules into runnable ones (pure), [`engine`]
//! runs them off the message path, [`targets`] talks to the outside world.

mod compile;
mod engine;
mod targets;

use std::collections::BTreeMap;

pub use compile::{CompiledRule, RuleSet};
pub use engine::Engine;
pub use targets::Failure;
pub use targets::aws::StaticCredentials;

/// How the rules engine runs and where its actions go.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    pub account_id: String,
    pub region: String,
    /// Endpoint URLs by service (`dynamodb`, `s3`, `sqs`, `sns`, `kinesis`,
    /// `firehose`, `logs`, `cloudwatch`, `lambda`); `default` applies to every
    /// service without its own. None: AWS's regional endpoints.
    pub endpoints: BTreeMap<String, String>,
    /// Credentials for target services; None: the AWS_* environment variables.
    pub credentials: Option<StaticCredentials>,
    /// Matched messages whose actions run at once (evaluation itself is one at a time).
    pub max_in_flight: usize,
    /// Attempts per action before it counts as failed (retryable failures only).
    pub max_attempts: u32,
    /// Messages waiting for evaluation; beyond it they are dropped and counted.
    pub queue_capacity: usize,
    /// Let HTTP actions and destinations use plain `http://` (AWS: HTTPS only).
    pub http_allow_insecure: bool,
    /// The API's base URL, for the `enableUrl` of destination confirmations.
    pub api_url: String,
}

impl RulesConfig {
    /// The configured endpoint of a service, else the one for every service.
    pub fn endpoint(&self, service: &str) -> Option<&str> {
        self.endpoints.get(service).or_else(|| self.endpoints.get("default")).map(String::as_str)
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            endpoints: BTreeMap::new(),
            credentials: None,
            max_in_flight: 256,
            max_attempts: 3,
            queue_capacity: 10_000,
            http_allow_insecure: false,
            api_url: "http://127.0.0.1:4566".into(),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
