//! The access keys SigV4 callers sign with, and what each may do on the data plane.
//!
//! A key without a policy acts as the account's administrator (every `iot:` action);
//! a key with one is held to it — the IAM policy of that caller on AWS, written in the
//! same language as IoT policies — for the iot-data API and its MQTT-over-WebSocket
//! connections.

use std::collections::HashMap;
use std::sync::Arc;

use ferrocore_policy::{Context, Policy};

use crate::Permissions;

/// What stands in for an IAM identity's policy when a key has none.
const ALLOW_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;

#[derive(Debug, thiserror::Error)]
#[error("the policy of access key {access_key} is not valid: {reason}")]
pub struct CredentialError {
    pub access_key: String,
    pub reason: String,
}

struct AccessKey {
    secret: String,
    policy: Arc<Policy>,
}

/// The access keys this server accepts.
#[derive(Clone)]
pub struct Credentials {
    keys: Arc<HashMap<String, AccessKey>>,
}

impl Credentials {
    /// The well-known local pair: access key `test`, secret `test`, unrestricted.
    pub fn local_default() -> Self {
        Self::from_pairs([("test".to_string(), "test".to_string())])
    }

    /// Unrestricted keys.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self::new(pairs.into_iter().map(|(key, secret)| (key, secret, None))).expect("no policies to parse")
    }

    /// Keys with an optional policy document each.
    pub fn new(keys: impl IntoIterator<Item = (String, String, Option<String>)>) -> Result<Self, CredentialError> {
        let mut parsed = HashMap::new();
        for (access_key, secret, document) in keys {
            let policy = Policy::parse(document.as_deref().unwrap_or(ALLOW_ALL))
                .map_err(|err| CredentialError { access_key: access_key.clone(), reason: err.to_string() })?;
            parsed.insert(access_key, AccessKey { secret, policy: Arc::new(policy) });
        }
        Ok(Self { keys: Arc::new(parsed) })
    }

    pub fn secret_for(&self, access_key: &str) -> Option<String> {
        self.keys.get(access_key).map(|key| key.secret.clone())
    }

    /// What a key may do; `client_id` resolves `${iot:ClientId}` for its MQTT connections.
    pub fn permissions(&self, access_key: &str, client_id: Option<&str>) -> Option<Permissions> {
        let key = self.keys.get(access_key)?;
        let mut context = Context::new();
        if let Some(client_id) = client_id {
            context.insert("iot:ClientId", vec![client_id.to_string()]);
        }
        Some(Permissions::from_policies(vec![(access_key.to_string(), key.policy.clone())], context))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_keys", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_without_a_policy_may_do_everything_and_policies_restrict() {
        let restricted = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:1:topic/${iot:ClientId}/*"}]}"#;
        let credentials = Credentials::new([
            ("admin".to_string(), "s1".to_string(), None),
            ("device".to_string(), "s2".to_string(), Some(restricted.to_string())),
        ])
        .unwrap();
        assert_eq!(credentials.secret_for("device").as_deref(), Some("s2"));
        assert!(credentials.secret_for("other").is_none());
        let admin = credentials.permissions("admin", None).unwrap();
        assert!(admin.allows("iot:DeleteConnection", "arn:aws:iot:us-east-1:1:client/x"));
        let device = credentials.permissions("device", Some("c1")).unwrap();
        assert!(device.allows("iot:Publish", "arn:aws:iot:us-east-1:1:topic/c1/a"));
        assert!(!device.allows("iot:Publish", "arn:aws:iot:us-east-1:1:topic/c2/a"));
        assert!(!device.allows("iot:Subscribe", "arn:aws:iot:us-east-1:1:topicfilter/c1/a"));
    }

    #[test]
    fn a_malformed_policy_is_refused_with_the_key_named() {
        let err = Credentials::new([("k".to_string(), "s".to_string(), Some("{".to_string()))]).err().unwrap();
        assert_eq!(err.access_key, "k");
    }
}
