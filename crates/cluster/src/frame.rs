//! What travels between nodes: a routed message's bytes, and control events.

use bytes::{BufMut, Bytes, BytesMut};
use ferrocore_message::{Message, StoredExtras};
use ferrocore_mqtt::QoS;
use serde::{Deserialize, Serialize};

const QOS1: u8 = 1;
const RETAIN: u8 = 2;
const EXTRAS: u8 = 4;

/// A message's frame (its topic is the subject): a flags byte (QoS 1, retain,
/// extras), then, when it has MQTT 5 properties or an expiry, their length (u32)
/// and stored form, then the payload.
pub fn encode_message(message: &Message, qos: QoS, retain: bool) -> Bytes {
    let extras = (message.properties.is_some() || message.expires_at_ms.is_some())
        .then(|| serde_json::to_vec(&StoredExtras::of(message)).expect("extras always serialize"));
    let mut flags = 0;
    if qos == QoS::AtLeastOnce {
        flags |= QOS1;
    }
    if retain {
        flags |= RETAIN;
    }
    let mut frame = BytesMut::with_capacity(1 + message.payload.len() + extras.as_ref().map_or(0, |e| e.len() + 4));
    match &extras {
        Some(extras) => {
            frame.put_u8(flags | EXTRAS);
            frame.put_u32(extras.len() as u32);
            frame.put_slice(extras);
        }
        None => frame.put_u8(flags),
    }
    frame.put_slice(&message.payload);
    frame.freeze()
}

/// The message of a frame, with its QoS and RETAIN flag; `None` when it is not one.
pub fn decode_message(topic: String, mut frame: Bytes) -> Option<(Message, QoS, bool)> {
    let flags = *frame.first()?;
    let qos = if flags & QOS1 != 0 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
    let retain = flags & RETAIN != 0;
    if flags & EXTRAS == 0 {
        return Some((Message::new(topic, frame.split_off(1)), qos, retain));
    }
    let length = u32::from_be_bytes(frame.get(1..5)?.try_into().ok()?) as usize;
    let extras: StoredExtras = serde_json::from_slice(frame.get(5..5 + length)?).ok()?;
    let payload = frame.split_off(5 + length);
    Some((extras.into_message(topic, payload)?, qos, retain))
}

/// Control subjects; every node subscribes to them.
pub const HEARTBEAT: &str = "ferrocore.c.heartbeat";
pub const CLAIM: &str = "ferrocore.c.claim";
pub const DELETE_CONNECTION: &str = "ferrocore.c.delete-connection";
pub const REGISTRY: &str = "ferrocore.c.registry";
pub const RETAINED: &str = "ferrocore.c.retained";

/// A node's periodic "I am here".
#[derive(Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    /// Whether it can reach the store.
    pub store: bool,
}

/// DeleteConnection asked of every node.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteConnection {
    pub client_id: String,
    pub clean_session: bool,
    pub prevent_will: bool,
}

/// A node's answer to a claim or a DeleteConnection: whether it held the client id.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub node: String,
    pub held: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_flags_properties_and_expiry() {
        let plain = Message::new("a/b", Bytes::from_static(b"\x00payload"));
        let (back, qos, retain) = decode_message("a/b".into(), encode_message(&plain, QoS::AtMostOnce, false)).unwrap();
        assert_eq!((back, qos, retain), (plain, QoS::AtMostOnce, false));
        let properties = ferrocore_mqtt::Properties {
            user_properties: vec![("k".into(), "v".into())],
            content_type: Some("json".into()),
            correlation_data: Some(Bytes::from_static(b"\x01")),
            message_expiry_interval: Some(60),
            ..Default::default()
        };
        let full = Message::published("t", Bytes::from_static(b"{}"), &properties, 1_000);
        let (back, qos, retain) = decode_message("t".into(), encode_message(&full, QoS::AtLeastOnce, true)).unwrap();
        assert_eq!((back, qos, retain), (full, QoS::AtLeastOnce, true));
        assert!(decode_message("t".into(), Bytes::new()).is_none());
        assert!(decode_message("t".into(), Bytes::from_static(&[EXTRAS, 0, 0, 0, 9, b'{'])).is_none());
    }
}
