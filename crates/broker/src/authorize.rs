//! The one decision on whether an identity may publish (or retain) on a topic,
//! for every way a message comes in: MQTT (TLS and WebSocket), wills, HTTPS
//! publish, and the iot-data API (which authorizes its caller itself and asks
//! only for the topic rules).

use ferrocore_registry::{Permissions, PublishRefused};

use ferrocore_model::ResourceKind;

use crate::Shared;

/// Why a publish is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a valid topic name, or beyond the topic limits.
    InvalidTopic(String),
    /// A reserved `$` topic clients may not publish to, or retain on.
    Reserved,
    /// The policies deny iot:Publish (or iot:RetainPublish for a retained message).
    NotAuthorized,
}

impl Refusal {
    /// The iot-data API's answer.
    pub(crate) fn into_api(self, topic: &str) -> PublishRefused {
        match self {
            Self::InvalidTopic(message) => PublishRefused::InvalidTopic(message),
            Self::Reserved | Self::NotAuthorized => {
                PublishRefused::ReservedTopic(format!("Publishing to the reserved topic {topic} is not allowed."))
            }
        }
    }
}

impl Shared {
    /// The rules every publish follows: a valid topic name within the limits, and
    /// not one of AWS's reserved topics (a retained message on no `$` topic at all).
    pub(crate) fn check_topic(&self, topic: &str, retain: bool) -> Result<(), Refusal> {
        if let Err(err) = ferrocore_mqtt::topic::validate_name(topic) {
            return Err(Refusal::InvalidTopic(format!("Invalid topic name: {err}.")));
        }
        if !self.limits.topic_fits(topic) {
            return Err(Refusal::InvalidTopic(format!(
                "The topic is longer than {} bytes or has more than {} slashes.",
                self.limits.topic_bytes, self.limits.topic_slashes
            )));
        }
        if !ferrocore_mqtt::topic::client_may_publish(topic) || (retain && topic.starts_with('$')) {
            return Err(Refusal::Reserved);
        }
        Ok(())
    }

    /// [`Self::check_topic`], then the identity's policies: iot:Publish on the topic,
    /// and iot:RetainPublish too for a retained message. Answers the topic's ARN.
    pub(crate) fn may_publish(&self, permissions: &Permissions, topic: &str, retain: bool) -> Result<String, Refusal> {
        self.check_topic(topic, retain)?;
        let resource = self.arn(ResourceKind::Topic, topic);
        for action in ["iot:Publish", "iot:RetainPublish"].into_iter().take(if retain { 2 } else { 1 }) {
            if !permissions.allows(action, &resource) {
                metrics::counter!("ferrocore_mqtt_authorization_denied_total", "action" => action).increment(1);
                return Err(Refusal::NotAuthorized);
            }
        }
        Ok(resource)
    }
}
