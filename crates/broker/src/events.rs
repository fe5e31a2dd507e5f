//! Lifecycle events AWS publishes for every client: presence (connected,
//! disconnected) and subscriptions (subscribed, unsubscribed).

use bytes::Bytes;
use ferrocore_mqtt::QoS;
use serde_json::{Value, json};

use crate::router::Published;
use crate::{Shared, now_ms};

/// Who an event is about: the same values on the connect/disconnect pair.
pub(crate) struct Presence {
    pub client_id: String,
    pub session_id: uuid::Uuid,
    pub principal: String,
    pub version: u64,
}

fn publish(shared: &Shared, topic: String, mut body: Value, presence: &Presence, event_type: &str) -> Published {
    body["clientId"] = json!(presence.client_id);
    body["timestamp"] = json!(now_ms());
    body["eventType"] = json!(event_type);
    body["sessionIdentifier"] = json!(presence.session_id.to_string());
    body["principalIdentifier"] = json!(presence.principal);
    let message = ferrocore_message::Message::new(topic, Bytes::from(body.to_string()));
    shared.route(&message, QoS::AtLeastOnce, false, crate::Origin::default())
}

pub(crate) fn connected(shared: &Shared, presence: &Presence, ip: &str) -> Published {
    let topic = format!("$aws/events/presence/connected/{}", presence.client_id);
    publish(shared, topic, json!({"ipAddress": ip, "versionNumber": presence.version}), presence, "connected")
}

pub(crate) fn disconnected(shared: &Shared, presence: &Presence, reason: &str, client_initiated: bool) -> Published {
    let topic = format!("$aws/events/presence/disconnected/{}", presence.client_id);
    let body = json!({
        "versionNumber": presence.version,
        "clientInitiatedDisconnect": client_initiated,
        "disconnectReason": reason,
    });
    publish(shared, topic, body, presence, "disconnected")
}

/// `kind` is `subscribed` or `unsubscribed`.
pub(crate) fn subscriptions(shared: &Shared, presence: &Presence, kind: &str, topics: &[String]) -> Published {
    if topics.is_empty() {
        return Published::default();
    }
    let topic = format!("$aws/events/subscriptions/{kind}/{}", presence.client_id);
    publish(shared, topic, json!({"topics": topics}), presence, kind)
}
