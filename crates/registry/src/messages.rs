//! Messages between the device gateway and the services beside it: what services
//! publish into the gateway ([`Publisher`]: shadow notifications, rule republishes)
//! and what the gateway hands the rules engine ([`MessageSink`]).

use bytes::Bytes;

/// A message for the device gateway to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub topic: String,
    pub payload: Vec<u8>,
    /// 0 or 1 (capped by each subscription's QoS).
    pub qos: u8,
    /// How many rule actions led to this message (see [`RoutedMessage::hops`]).
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

/// The MQTT 5 properties of a message the rules engine can read
/// (`get_mqtt_property`, `get_user_properties`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageProperties {
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
}

/// A message the gateway routed (or took in through Basic Ingest).
#[derive(Debug, Clone, Copy)]
pub struct RoutedMessage<'a> {
    pub topic: &'a str,
    pub payload: &'a Bytes,
    pub qos: u8,
    /// The publishing client; `None` for messages services made.
    pub client_id: Option<&'a str>,
    /// The publisher's certificate id.
    pub principal: Option<&'a str>,
    pub properties: Option<&'a MessageProperties>,
    /// Rule actions (republish) that led to this message, counted through the shadow
    /// service too; the rules engine stops a chain that grows too long (a rule loop).
    pub hops: u8,
}

/// The rules engine, as the gateway sees it. Both calls sit on the message path:
/// they must not block or wait.
pub trait MessageSink: Send + Sync {
    /// Every routed message, for the rules whose FROM filter matches its topic.
    fn offer(&self, message: &RoutedMessage<'_>);
    /// A Basic Ingest message (`$aws/rules/<rule>/<rest>`): for that one rule, with
    /// `topic` the `<rest>` part. False when no such rule is enabled.
    fn ingest(&self, rule: &str, message: &RoutedMessage<'_>) -> bool;
}
