//! A message on its way through ferrocore: topic, payload and what MQTT 5 lets
//! travel with it (properties for subscribers and for rules, an expiry), one type
//! for the device gateway (routing, retained messages, session queues) and the
//! rules engine. Pure: no I/O.

use std::sync::Arc;

use bytes::Bytes;
use ferrocore_mqtt::Properties;
use serde::{Deserialize, Serialize};

/// The MQTT 5 properties that travel with a message: to MQTT 5 subscribers, into
/// stored copies, and to rules (`get_mqtt_property`, `get_user_properties`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageProperties {
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    /// In the order sent; a key may repeat.
    pub user_properties: Vec<(String, String)>,
}

/// AWS's range of the Message Expiry Interval: 0 counts as 1, more than 7 days as 7 days.
const MESSAGE_EXPIRY_RANGE_SECS: (u32, u32) = (1, 604_800);

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// Forwarded to MQTT 5 subscribers (user properties, content type, ...).
    pub properties: Option<Arc<MessageProperties>>,
    /// Unix milliseconds after which the message is no longer delivered.
    pub expires_at_ms: Option<u64>,
}

/// When a message with this Message Expiry Interval, counted from `from_ms`, expires.
pub fn expiry_deadline(interval_secs: Option<u32>, from_ms: u64) -> Option<u64> {
    interval_secs
        .map(|secs| from_ms + u64::from(secs.clamp(MESSAGE_EXPIRY_RANGE_SECS.0, MESSAGE_EXPIRY_RANGE_SECS.1)) * 1000)
}

/// The MQTT 5 properties that travel with a message, when it carries any.
pub fn message_properties(properties: &Properties) -> Option<MessageProperties> {
    let any = properties.payload_format_indicator.is_some()
        || properties.content_type.is_some()
        || properties.response_topic.is_some()
        || properties.correlation_data.is_some()
        || !properties.user_properties.is_empty();
    any.then(|| MessageProperties {
        payload_format_indicator: properties.payload_format_indicator,
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.clone(),
        user_properties: properties.user_properties.clone(),
    })
}

impl Message {
    pub fn new(topic: impl Into<String>, payload: Bytes) -> Self {
        Self { topic: topic.into(), payload, properties: None, expires_at_ms: None }
    }

    /// A message published with these MQTT 5 properties at `now_ms`.
    pub fn published(topic: impl Into<String>, payload: Bytes, properties: &Properties, now_ms: u64) -> Self {
        Self {
            topic: topic.into(),
            payload,
            properties: message_properties(properties).map(Arc::new),
            expires_at_ms: expiry_deadline(properties.message_expiry_interval, now_ms),
        }
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|deadline| deadline <= now_ms)
    }

    /// The properties of the copy sent to an MQTT 5 subscriber: the message's own,
    /// and the whole seconds left before it expires.
    pub fn outgoing_properties(&self, now_ms: u64) -> Properties {
        let mut out = Properties::default();
        if let Some(properties) = &self.properties {
            out.payload_format_indicator = properties.payload_format_indicator;
            out.content_type = properties.content_type.clone();
            out.response_topic = properties.response_topic.clone();
            out.correlation_data = properties.correlation_data.clone();
            out.user_properties = properties.user_properties.clone();
        }
        out.message_expiry_interval = self
            .expires_at_ms
            .map(|deadline| u32::try_from(deadline.saturating_sub(now_ms) / 1000).unwrap_or(u32::MAX));
        out
    }

    /// Bytes the PUBLISH of this message takes beyond its payload and topic, at most.
    pub fn properties_len(&self) -> usize {
        self.properties.as_ref().map_or(0, |p| {
            p.content_type.as_ref().map_or(0, |s| s.len() + 3)
                + p.response_topic.as_ref().map_or(0, |s| s.len() + 3)
                + p.correlation_data.as_ref().map_or(0, |d| d.len() + 3)
                + p.user_properties.iter().map(|(k, v)| k.len() + v.len() + 5).sum::<usize>()
                + 2
        }) + 5
            + 4
    }
}

/// The stored form of a message's extras (retained messages, session queues).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format_indicator: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
}

impl StoredExtras {
    pub fn of(message: &Message) -> Self {
        let mut extras = Self { expires_at_ms: message.expires_at_ms, ..Self::default() };
        if let Some(p) = &message.properties {
            extras.payload_format_indicator = p.payload_format_indicator;
            extras.content_type = p.content_type.clone();
            extras.response_topic = p.response_topic.clone();
            extras.correlation_data = p.correlation_data.as_ref().map(hex::encode);
            extras.user_properties = p.user_properties.clone();
        }
        extras
    }

    /// The message these extras belong to.
    pub fn into_message(self, topic: String, payload: Bytes) -> Option<Message> {
        let correlation_data = match self.correlation_data {
            Some(text) => Some(Bytes::from(hex::decode(text).ok()?)),
            None => None,
        };
        let properties = MessageProperties {
            payload_format_indicator: self.payload_format_indicator,
            content_type: self.content_type,
            response_topic: self.response_topic,
            correlation_data,
            user_properties: self.user_properties,
        };
        let properties = (properties != MessageProperties::default()).then(|| Arc::new(properties));
        Some(Message { topic, payload, properties, expires_at_ms: self.expires_at_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_clamped_to_aws_range() {
        assert_eq!(expiry_deadline(Some(0), 1_000), Some(2_000));
        assert_eq!(expiry_deadline(Some(10), 1_000), Some(11_000));
        assert_eq!(expiry_deadline(Some(u32::MAX), 0), Some(604_800_000));
        assert_eq!(expiry_deadline(None, 5), None);
    }

    #[test]
    fn outgoing_copies_carry_the_properties_and_the_seconds_left() {
        let properties = Properties {
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            content_type: Some("text/plain".into()),
            message_expiry_interval: Some(10),
            ..Properties::default()
        };
        let message = Message::published("t", Bytes::from_static(b"x"), &properties, 0);
        let out = message.outgoing_properties(3_500);
        assert_eq!(out.message_expiry_interval, Some(6));
        assert_eq!(out.user_properties, properties.user_properties);
        assert_eq!(message.outgoing_properties(9_200).message_expiry_interval, Some(0));
        assert!(!message.expired(9_999));
        assert!(message.expired(10_000));
        assert_eq!(Message::new("t", Bytes::new()).outgoing_properties(0), Properties::default());
    }

    #[test]
    fn stored_extras_round_trip() {
        let properties = Properties {
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            response_topic: Some("r".into()),
            message_expiry_interval: Some(5),
            ..Properties::default()
        };
        let message = Message::published("t", Bytes::from_static(b"p"), &properties, 100);
        let extras = StoredExtras::of(&message);
        let json = serde_json::to_string(&extras).unwrap();
        let back: StoredExtras = serde_json::from_str(&json).unwrap();
        assert_eq!(back.into_message("t".into(), Bytes::from_static(b"p")), Some(message));
        assert_eq!(serde_json::to_string(&StoredExtras::default()).unwrap(), "{}");
    }
}

/// A message for the device gateway to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub topic: String,
    pub payload: Vec<u8>,
    /// 0 or 1 (capped by each subscription's QoS).
    pub qos: u8,
    /// How many rule actions led to this message (see the routed message's `hops`).
    pub hops: u8,
}

/// Where the messages services make (shadow notifications, republished rule
/// output) enter the device gateway, to reach subscribers as any message does
/// (iot:Receive applies).
#[async_trait::async_trait]
pub trait Publisher: Send + Sync {
    /// Returns once the messages are routed (and queued durably for offline sessions).
    async fn publish(&self, notifications: Vec<Notification>);
}
