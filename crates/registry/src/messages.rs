//! Messages between the device gateway and the services beside it: what services
//! publish into the gateway ([`Publisher`]: shadow notifications, rule republishes)
//! and what the gateway hands the rules engine ([`MessageSink`]).

use bytes::Bytes;

pub use ferrocore_message::{MessageProperties, Notification, Publisher};

/// A message the gateway routed (or took in through Basic Ingest).
#[derive(Debug, Clone, Copy)]
pub struct RoutedMessage<'a> {
    /// The topic rules match: the message's, or for Basic Ingest what follows
    /// `$aws/rules/<rule>/`.
    pub topic: &'a str,
    /// Payload and properties, shared with the subscribers' copies: the rules engine
    /// keeps a reference, not a copy.
    pub message: &'a std::sync::Arc<ferrocore_message::Message>,
    pub qos: u8,
    /// The publishing client; `None` for messages services made.
    pub client_id: Option<&'a str>,
    /// The publisher's certificate id.
    pub principal: Option<&'a str>,
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

/// A message published through an API (iot-data `Publish`, HTTPS `POST /topics/...`)
/// rather than by a device connection. The caller has checked iot:Publish (and
/// iot:RetainPublish) for its principal.
#[derive(Debug, Clone, Default)]
pub struct ApiPublish {
    pub topic: String,
    pub payload: Bytes,
    /// 0 or 1.
    pub qos: u8,
    pub retain: bool,
    pub properties: Option<MessageProperties>,
    /// MQTT 5 Message Expiry Interval, in seconds.
    pub message_expiry_secs: Option<u32>,
    /// The caller (certificate id or access key id), for the rules engine.
    pub principal: String,
}

impl ApiPublish {
    /// The iot-data Publish request (`POST /topics/{topic}`, the same on the API and
    /// the HTTPS device listener): `qos`, `retain`, `contentType`, `responseTopic` and
    /// `messageExpiry` from the query, the `x-amz-mqtt5-*` headers, the body as payload;
    /// the topic must be a topic name. The error is the InvalidRequestException message.
    pub fn from_request<'a>(
        topic: String,
        query: &[(String, String)],
        header: impl Fn(&str) -> Option<&'a str>,
        payload: Bytes,
        principal: String,
    ) -> Result<Self, String> {
        if let Err(err) = ferrocore_mqtt::topic::validate_name(&topic) {
            return Err(format!("Invalid topic name: {err}."));
        }
        let param = |name: &str| query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let qos = match param("qos") {
            None | Some("0") => 0,
            Some("1") => 1,
            Some(other) => return Err(format!("qos must be 0 or 1, not '{other}'.")),
        };
        let retain = match param("retain").map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("retain must be true or false, not '{other}'.")),
        };
        let message_expiry_secs = match param("messageExpiry") {
            None => None,
            Some(text) => Some(
                text.parse::<u64>()
                    .ok()
                    .filter(|secs| *secs > 0)
                    .ok_or_else(|| format!("messageExpiry must be a positive number of seconds, not '{text}'."))?
                    .min(u64::from(u32::MAX)) as u32,
            ),
        };
        let response_topic = param("responseTopic").map(str::to_string);
        if let Some(topic) = &response_topic
            && ferrocore_mqtt::topic::validate_name(topic).is_err()
        {
            return Err(format!("responseTopic '{topic}' is not a valid topic name."));
        }
        let payload_format_indicator = match header("x-amz-mqtt5-payload-format-indicator") {
            None => None,
            Some("UNSPECIFIED_BYTES") => Some(0),
            Some("UTF8_DATA") => Some(1),
            Some(other) => {
                return Err(format!("payloadFormatIndicator must be UNSPECIFIED_BYTES or UTF8_DATA, not '{other}'."));
            }
        };
        if payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err() {
            return Err("The payload is not UTF-8 although payloadFormatIndicator is UTF8_DATA.".to_string());
        }
        let correlation_data = match header("x-amz-mqtt5-correlation-data") {
            None => None,
            Some(text) => Some(Bytes::from(
                BASE64.decode(text.trim()).map_err(|_| "correlationData must be base64.".to_string())?,
            )),
        };
        let user_properties = match header("x-amz-mqtt5-user-properties") {
            None => Vec::new(),
            Some(text) => parse_user_properties(text)?,
        };
        let properties = MessageProperties {
            payload_format_indicator,
            content_type: param("contentType").map(str::to_string),
            response_topic,
            correlation_data,
            user_properties,
        };
        Ok(Self {
            topic,
            payload,
            qos,
            retain,
            properties: (properties != MessageProperties::default()).then_some(properties),
            message_expiry_secs,
            principal,
        })
    }
}

use base64::Engine as _;
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `x-amz-mqtt5-user-properties`: base64 of a JSON list of one-pair objects
/// (`[{"a":"1"},{"a":"2"}]`), order and repeats kept. A list sent as a JSON string is taken too.
fn parse_user_properties(header: &str) -> Result<Vec<(String, String)>, String> {
    let invalid = || "userProperties must be base64 of a JSON list of objects with string values.".to_string();
    let text = BASE64.decode(header.trim()).map_err(|_| invalid())?;
    let mut value: serde_json::Value = serde_json::from_slice(&text).map_err(|_| invalid())?;
    if let serde_json::Value::String(inner) = &value {
        value = serde_json::from_str(inner).map_err(|_| invalid())?;
    }
    let serde_json::Value::Array(items) = value else {
        return Err(invalid());
    };
    let mut pairs = Vec::new();
    for item in items {
        let serde_json::Value::Object(object) = item else {
            return Err(invalid());
        };
        for (key, value) in object {
            let serde_json::Value::String(value) = value else {
                return Err(invalid());
            };
            pairs.push((key, value));
        }
    }
    Ok(pairs)
}

/// Renders user properties as the iot-data API answers them: a JSON list of one-pair objects.
pub fn user_properties_json(pairs: &[(String, String)]) -> String {
    let items: Vec<serde_json::Value> = pairs.iter().map(|(k, v)| serde_json::json!({ k: v })).collect();
    serde_json::Value::Array(items).to_string()
}

/// Why the gateway did not take an [`ApiPublish`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    #[error("{0}")]
    InvalidTopic(String),
    /// A reserved `$` topic that clients may not publish to (or retain on).
    #[error("{0}")]
    ReservedTopic(String),
    #[error("the message could not be stored: {0}")]
    NotStored(String),
}

/// A retained message as the iot-data API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RetainedMessage {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    /// Unix milliseconds of the publish that stored it.
    pub last_modified_ms: u64,
    pub user_properties: Vec<(String, String)>,
}

/// The device gateway's data plane, as the iot-data API uses it.
#[async_trait::async_trait]
pub trait DataPlane: Publisher {
    /// Routes (and, when asked, retains) a message; returns once it is routed and durable.
    async fn publish_message(&self, message: ApiPublish) -> Result<(), PublishRefused>;
    /// The message retained on exactly `topic`, unless it expired.
    fn retained_message(&self, topic: &str) -> Option<RetainedMessage>;
    /// Retained messages in topic order, after `after`, at most `limit`.
    fn retained_messages(&self, after: Option<&str>, limit: usize) -> Vec<RetainedMessage>;
    /// Disconnects a client (DeleteConnection); false when it is neither connected
    /// nor holding a persistent session.
    async fn delete_connection(&self, client_id: &str, clean_session: bool, prevent_will: bool) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &[(&str, &str)], headers: &[(&str, &str)], payload: &'static [u8]) -> Result<ApiPublish, String> {
        let query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let header = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        ApiPublish::from_request("t/1".into(), &query, header, Bytes::from_static(payload), "p".into())
    }

    #[test]
    fn a_publish_request_with_every_mqtt5_header() {
        let users = BASE64.encode(r#"[{"a":"1"},{"b":"2"},{"a":"3"}]"#);
        let correlation = BASE64.encode([0u8, 255]);
        let published = request(
            &[
                ("qos", "1"),
                ("retain", "true"),
                ("contentType", "text/plain"),
                ("responseTopic", "r/1"),
                ("messageExpiry", "30"),
            ],
            &[
                ("x-amz-mqtt5-user-properties", &users),
                ("x-amz-mqtt5-payload-format-indicator", "UTF8_DATA"),
                ("x-amz-mqtt5-correlation-data", &correlation),
            ],
            b"hello",
        )
        .unwrap();
        assert_eq!((published.qos, published.retain, published.message_expiry_secs), (1, true, Some(30)));
        let properties = published.properties.unwrap();
        assert_eq!(
            properties.user_properties,
            vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("a".into(), "3".into())]
        );
        assert_eq!(properties.correlation_data.as_deref(), Some(&[0u8, 255][..]));
        assert_eq!(
            (properties.payload_format_indicator, properties.content_type.as_deref()),
            (Some(1), Some("text/plain"))
        );
        assert_eq!(user_properties_json(&properties.user_properties), r#"[{"a":"1"},{"b":"2"},{"a":"3"}]"#);
    }

    #[test]
    fn defaults_and_refusals() {
        let plain = request(&[], &[], b"x").unwrap();
        let wildcard = ApiPublish::from_request("a/#".into(), &[], |_| None, Bytes::new(), "p".into());
        assert!(wildcard.is_err());
        assert_eq!((plain.qos, plain.retain, plain.properties), (0, false, None));
        let as_string = BASE64.encode(serde_json::to_string(r#"[{"k":"v"}]"#).unwrap());
        let parsed = request(&[], &[("x-amz-mqtt5-user-properties", &as_string)], b"").unwrap();
        assert_eq!(parsed.properties.unwrap().user_properties, vec![("k".into(), "v".into())]);
        for (query, headers) in [
            (vec![("qos", "2")], vec![]),
            (vec![("retain", "maybe")], vec![]),
            (vec![("messageExpiry", "-1")], vec![]),
            (vec![("messageExpiry", "0")], vec![]),
            (vec![("responseTopic", "a/#")], vec![]),
            (vec![], vec![("x-amz-mqtt5-payload-format-indicator", "TEXT")]),
            (vec![], vec![("x-amz-mqtt5-correlation-data", "***")]),
            (vec![], vec![("x-amz-mqtt5-user-properties", "e30=")]),
        ] {
            assert!(request(&query, &headers, b"x").is_err(), "{query:?} {headers:?}");
        }
        let not_utf8 = request(&[], &[("x-amz-mqtt5-payload-format-indicator", "UTF8_DATA")], b"\xff");
        assert!(not_utf8.is_err());
    }
}
