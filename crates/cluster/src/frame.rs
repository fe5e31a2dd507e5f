//! What travels between nodes: a routed message's bytes, and control events.

use bytes::{BufMut, Bytes, BytesMut};
use ferrocore_message::{Message, StoredExtras};
use ferrocore_mqtt::QoS;
use serde::{Deserialize, Serialize};

const QOS1: u8 = 1;
const RETAIN: u8 = 2;
const EXTRAS: u8 = 4;
const RECEIPT: u8 = 8;

/// Where a message comes from: the sending process (a random number each start) and
/// its place in that process's forwards, so a node that gets several copies of it
/// (one per matching NATS subscription) delivers one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub process: u64,
    pub seq: u64,
}

/// How a message travels: its QoS and retain flag, and whether its sender waits for
/// a receipt from each node that takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub qos: QoS,
    pub retain: bool,
    pub receipt: bool,
}

/// A message's frame (its topic is the subject): a flags byte (QoS 1, retain,
/// extras, receipt), its origin (two u64), then, when it has MQTT 5 properties or
/// an expiry, their length (u32) and stored form, then the payload.
pub fn encode_message(message: &Message, sent: Sent, origin: Origin) -> BytesMut {
    let Sent { qos, retain, receipt } = sent;
    let extras = (message.properties.is_some() || message.expires_at_ms.is_some())
        .then(|| serde_json::to_vec(&StoredExtras::of(message)).expect("extras always serialize"));
    let mut flags = 0;
    if qos == QoS::AtLeastOnce {
        flags |= QOS1;
    }
    if retain {
        flags |= RETAIN;
    }
    if receipt {
        flags |= RECEIPT;
    }
    let mut frame = BytesMut::with_capacity(17 + message.payload.len() + extras.as_ref().map_or(0, |e| e.len() + 4));
    frame.put_u8(if extras.is_some() { flags | EXTRAS } else { flags });
    frame.put_u64(origin.process);
    frame.put_u64(origin.seq);
    if let Some(extras) = &extras {
        frame.put_u32(extras.len() as u32);
        frame.put_slice(extras);
    }
    frame.put_slice(&message.payload);
    frame
}

/// Numbers a frame that was encoded before its place in the order was known.
pub fn set_seq(frame: &mut BytesMut, seq: u64) {
    frame[9..17].copy_from_slice(&seq.to_be_bytes());
}

/// A message as it arrived from another node.
#[derive(Debug, PartialEq)]
pub struct Arrived {
    pub message: Message,
    pub sent: Sent,
    pub origin: Origin,
}

/// The message of a frame; `None` when it is not one.
pub fn decode_message(topic: String, mut frame: Bytes) -> Option<Arrived> {
    let flags = *frame.first()?;
    let qos = if flags & QOS1 != 0 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
    let sent = Sent { qos, retain: flags & RETAIN != 0, receipt: flags & RECEIPT != 0 };
    let number = |at: usize| Some(u64::from_be_bytes(frame.get(at..at + 8)?.try_into().ok()?));
    let origin = Origin { process: number(1)?, seq: number(9)? };
    let message = if flags & EXTRAS == 0 {
        Message::new(topic, frame.split_off(17))
    } else {
        let length = u32::from_be_bytes(frame.get(17..21)?.try_into().ok()?) as usize;
        let extras: StoredExtras = serde_json::from_slice(frame.get(21..21 + length)?).ok()?;
        let payload = frame.split_off(21 + length);
        extras.into_message(topic, payload)?
    };
    Some(Arrived { message, sent, origin })
}

/// Which messages of each origin process were delivered: one window of sequence
/// numbers per process. A copy older than the window is delivered (a duplicate at
/// worst, never a loss).
#[derive(Default)]
pub struct Delivered {
    windows: std::collections::HashMap<u64, Window>,
}

/// Sequence numbers a window remembers, behind the highest seen.
const WINDOW: u64 = 64 * 1024;

struct Window {
    highest: u64,
    seen: Box<[u64]>,
}

impl Window {
    fn bit(seq: u64) -> (usize, u64) {
        let slot = seq % WINDOW;
        ((slot / 64) as usize, 1 << (slot % 64))
    }
}

impl Delivered {
    /// Whether this is the first copy of the message to arrive (and notes it).
    pub fn first(&mut self, origin: Origin) -> bool {
        let window = self.windows.entry(origin.process).or_insert_with(|| Window {
            highest: origin.seq.saturating_sub(1),
            seen: vec![0; (WINDOW / 64) as usize].into_boxed_slice(),
        });
        if origin.seq > window.highest {
            let skipped = origin.seq - window.highest;
            if skipped >= WINDOW {
                window.seen.fill(0);
            } else {
                // Their slots held numbers one window older.
                for seq in window.highest + 1..=origin.seq {
                    let (word, bit) = Window::bit(seq);
                    window.seen[word] &= !bit;
                }
            }
            window.highest = origin.seq;
        } else if window.highest - origin.seq >= WINDOW {
            return true;
        }
        let (word, bit) = Window::bit(origin.seq);
        let first = window.seen[word] & bit == 0;
        window.seen[word] |= bit;
        first
    }
}

/// Control subjects; every node subscribes to them.
pub const HEARTBEAT: &str = "ferrocore.c.heartbeat";
pub const CLAIM: &str = "ferrocore.c.claim";
pub const DELETE_CONNECTION: &str = "ferrocore.c.delete-connection";
pub const REGISTRY: &str = "ferrocore.c.registry";
pub const RETAINED: &str = "ferrocore.c.retained";
/// Changes of a node's subscriptions, numbered, for the others' interest tables.
pub const INTEREST: &str = "ferrocore.c.interest";

/// Where a node answers for the whole of its subscriptions.
pub fn interest_of(node: &str) -> String {
    format!("ferrocore.c.interest-of.{}", crate::subject::token(node))
}

/// Where the receipts for one process's messages go.
pub fn receipts_for(process: u64) -> String {
    format!("ferrocore.c.receipts.{process}")
}

/// A node's periodic "I am here".
#[derive(Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    /// Whether it can reach the store.
    pub store: bool,
    /// The sending process, and the number of its last announced change of subscriptions.
    #[serde(default)]
    pub process: u64,
    #[serde(default)]
    pub interest: u64,
}

/// Changes of one node's subscriptions (a filter, or `$share/<group>/<filter>`):
/// present or gone. `seq` numbers them per process, so a gap shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub node: String,
    pub process: u64,
    pub seq: u64,
    pub changes: Vec<(String, bool)>,
}

/// A part of the whole of a node's subscriptions as of its change `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub node: String,
    pub process: u64,
    pub seq: u64,
    pub subscriptions: Vec<String>,
    /// Whether this is the last part.
    pub last: bool,
}

/// What a node took of one process's messages: each by its number, in full
/// (routed and what it must keep stored), through its unshared subscriptions or
/// for one shared subscription.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Receipts {
    pub node: String,
    pub seqs: Vec<u64>,
    pub shared: Vec<(u64, String)>,
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
    /// To a claim: the lifecycle version number the node last gave the client id.
    #[serde(default)]
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin = Origin { process: 7, seq: 42 };
    const AT_MOST_ONCE: Sent = Sent { qos: QoS::AtMostOnce, retain: false, receipt: false };

    #[test]
    fn messages_keep_their_flags_properties_expiry_and_origin() {
        let plain = Message::new("a/b", Bytes::from_static(b"\x00payload"));
        let arrived = decode_message("a/b".into(), encode_message(&plain, AT_MOST_ONCE, ORIGIN).freeze()).unwrap();
        let sent = AT_MOST_ONCE;
        assert_eq!(arrived, Arrived { message: plain, sent, origin: ORIGIN });
        let properties = ferrocore_mqtt::Properties {
            user_properties: vec![("k".into(), "v".into())],
            content_type: Some("json".into()),
            correlation_data: Some(Bytes::from_static(b"\x01")),
            message_expiry_interval: Some(60),
            ..Default::default()
        };
        let full = Message::published("t", Bytes::from_static(b"{}"), &properties, 1_000);
        let sent = Sent { qos: QoS::AtLeastOnce, retain: true, receipt: true };
        let mut frame = encode_message(&full, sent, Origin { seq: 0, ..ORIGIN });
        set_seq(&mut frame, ORIGIN.seq);
        let arrived = decode_message("t".into(), frame.freeze()).unwrap();
        assert_eq!(arrived, Arrived { message: full, sent, origin: ORIGIN });
        assert!(decode_message("t".into(), Bytes::new()).is_none());
        assert!(decode_message("t".into(), Bytes::from_static(&[0, 0, 0])).is_none(), "no origin");
        let mut cut = encode_message(&Message::new("t", Bytes::new()), AT_MOST_ONCE, ORIGIN);
        cut[0] |= EXTRAS;
        cut.extend_from_slice(&[0, 0, 0, 9, b'{']);
        assert!(decode_message("t".into(), cut.freeze()).is_none(), "extras cut short");
    }

    #[test]
    fn each_message_is_delivered_once_whatever_the_order_of_its_copies() {
        let mut delivered = Delivered::default();
        let of = |process, seq| Origin { process, seq };
        // Two streams carrying overlapping messages, interleaved.
        let arrivals = [of(1, 1), of(1, 2), of(1, 1), of(1, 3), of(1, 2), of(2, 1), of(1, 3), of(2, 1)];
        let firsts: Vec<bool> = arrivals.iter().map(|o| delivered.first(*o)).collect();
        assert_eq!(firsts, [true, true, false, true, false, true, false, false]);
        // A jump past the window forgets the old ones; a copy older than the window is delivered.
        assert!(delivered.first(of(1, 3 + 2 * WINDOW)));
        assert!(delivered.first(of(1, 3)), "older than the window: delivered, never lost");
        assert!(!delivered.first(of(1, 3 + 2 * WINDOW)));
        assert!(delivered.first(of(1, 2 + 2 * WINDOW)), "skipped over, arriving late: first");
    }
}
