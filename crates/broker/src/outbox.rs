//! What a connection sends, decided without I/O: which routed messages go out
//! now, under which packet identifier, which wait for room in the client's
//! Receive Maximum window, which are dropped (expired, too large for the
//! client), and which stored queue records are finished. The connection task
//! encodes and writes what this answers; time is passed in.

use std::collections::VecDeque;
use std::sync::Arc;

use ferrocore_mqtt::{InFlight, QoS};

use crate::router::Unfinished;
use ferrocore_message::Message;

/// QoS 1 deliveries held beyond the client's window; past this the connection
/// leaves deliveries in its bounded queue (see [`Outbox::has_room`]).
pub(crate) const WAITING_LIMIT: usize = 1024;

/// A PUBLISH to write: QoS 1 when it has a packet identifier.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outgoing {
    pub message: Arc<Message>,
    pub packet_id: Option<u16>,
    pub retain: bool,
}

/// Why a message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    Expired,
    TooLargeForClient,
}

impl Dropped {
    /// The `reason` label of `ferrocore_mqtt_messages_dropped_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::TooLargeForClient => "too_large_for_client",
        }
    }
}

/// The outgoing side of one connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Packet identifiers and QoS 1 messages in flight (kept for redelivery, with
    /// their stored sequence number when they came from the stored queue).
    window: InFlight<Unfinished>,
    /// QoS 1 messages waiting for room in the window, with their RETAIN flag.
    waiting: VecDeque<(Unfinished, bool)>,
    /// Stored queue records finished (acknowledged or dropped): they are deleted.
    finished: Vec<u64>,
    /// The largest packet the client takes (MQTT 5 Maximum Packet Size).
    client_max_packet: usize,
    /// Counts of messages dropped, by reason, since the last [`Outbox::take_dropped`].
    dropped: Vec<Dropped>,
}

impl Outbox {
    pub(crate) fn new(receive_maximum: u16, client_max_packet: usize) -> Self {
        Self {
            window: InFlight::new(receive_maximum),
            waiting: VecDeque::new(),
            finished: Vec::new(),
            client_max_packet,
            dropped: Vec::new(),
        }
    }

    /// Whether the connection should take more deliveries from its queue: while
    /// the window is full, a slow subscriber's deliveries stay in the bounded
    /// queue (and are dropped there, counted) instead of growing memory here.
    pub(crate) fn has_room(&self) -> bool {
        self.waiting.len() < WAITING_LIMIT
    }

    fn drop_message(&mut self, seq: Option<u64>, why: Dropped) {
        self.dropped.push(why);
        self.finished.extend(seq);
    }

    /// A message for the client: sent now, held for the window, or dropped.
    pub(crate) fn offer(
        &mut self,
        (seq, message): Unfinished,
        qos: QoS,
        retain: bool,
        now_ms: u64,
    ) -> Option<Outgoing> {
        if message.expired(now_ms) {
            self.drop_message(seq, Dropped::Expired);
            return None;
        }
        if message.topic.len() + message.payload.len() + message.properties_len() > self.client_max_packet {
            self.drop_message(seq, Dropped::TooLargeForClient);
            return None;
        }
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            // Order is kept: nothing overtakes a message already waiting.
            _ if !self.window.can_send() || !self.waiting.is_empty() => {
                self.waiting.push_back(((seq, message), retain));
                return None;
            }
            _ => Some(self.window.send((seq, message.clone()))),
        };
        Some(Outgoing { message, packet_id, retain })
    }

    /// A PUBACK: the message leaves the window (its stored record is finished) and
    /// waiting messages that now fit are answered, in order.
    pub(crate) fn acknowledged(&mut self, packet_id: u16, now_ms: u64) -> Vec<Outgoing> {
        let Some((seq, _)) = self.window.acknowledged(packet_id) else {
            return Vec::new();
        };
        self.finished.extend(seq);
        let mut sendable = Vec::new();
        while self.window.can_send() {
            let Some(((seq, message), retain)) = self.waiting.pop_front() else { break };
            if message.expired(now_ms) {
                self.drop_message(seq, Dropped::Expired);
                continue;
            }
            let packet_id = Some(self.window.send((seq, message.clone())));
            sendable.push(Outgoing { message, packet_id, retain });
        }
        sendable
    }

    /// A stored message the client may no longer receive: finished without sending.
    pub(crate) fn skip(&mut self, seq: u64) {
        self.finished.push(seq);
    }

    /// Sequence numbers of stored queue records that are finished, since the last call.
    pub(crate) fn take_finished(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.finished)
    }

    /// Reasons of messages dropped since the last call.
    pub(crate) fn take_dropped(&mut self) -> Vec<Dropped> {
        std::mem::take(&mut self.dropped)
    }

    /// What the client has not acknowledged, oldest first: the window, then the
    /// waiting messages (a persistent session keeps them for redelivery).
    pub(crate) fn into_unfinished(mut self) -> (Vec<Unfinished>, Vec<u64>) {
        let mut unfinished = self.window.take_in_flight();
        unfinished.extend(self.waiting.drain(..).map(|(message, _)| message));
        (unfinished, self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const NOW: u64 = 1_000_000;

    fn message(n: u32) -> Arc<Message> {
        Arc::new(Message::new(format!("t/{n}"), Bytes::from(n.to_string())))
    }

    fn expiring(n: u32, at_ms: u64) -> Arc<Message> {
        let mut message = Message::new(format!("t/{n}"), Bytes::new());
        message.expires_at_ms = Some(at_ms);
        Arc::new(message)
    }

    fn outbox(window: u16) -> Outbox {
        Outbox::new(window, 1 << 20)
    }

    fn topics(outgoing: &[Outgoing]) -> Vec<&str> {
        outgoing.iter().map(|o| o.message.topic.as_str()).collect()
    }

    #[test]
    fn qos1_messages_beyond_the_window_wait_and_go_in_order_as_acknowledgements_come() {
        let mut outbox = outbox(2);
        let sent: Vec<Outgoing> = (1..=5)
            .filter_map(|n| outbox.offer((Some(u64::from(n)), message(n)), QoS::AtLeastOnce, false, NOW))
            .collect();
        assert_eq!(topics(&sent), ["t/1", "t/2"]);
        assert_eq!(sent.iter().map(|o| o.packet_id).collect::<Vec<_>>(), [Some(1), Some(2)]);
        // QoS 0 is not held by the window.
        let qos0 = outbox.offer((None, message(9)), QoS::AtMostOnce, false, NOW).expect("QoS 0 goes at once");
        assert_eq!(qos0.packet_id, None);

        assert!(outbox.acknowledged(7, NOW).is_empty(), "an unknown packet id changes nothing");
        let next = outbox.acknowledged(2, NOW);
        assert_eq!(topics(&next), ["t/3"]);
        assert_eq!(outbox.take_finished(), [2]);
        let next = outbox.acknowledged(1, NOW);
        assert_eq!(topics(&next), ["t/4"]);
        let (unfinished, finished) = outbox.into_unfinished();
        assert_eq!(finished, [1]);
        let left: Vec<Option<u64>> = unfinished.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(left, [Some(3), Some(4), Some(5)], "the window first, then the waiting, oldest first");
    }

    #[test]
    fn expired_and_oversized_messages_are_dropped_and_their_records_finished() {
        let mut outbox = Outbox::new(1, 20);
        assert!(outbox.offer((Some(1), expiring(1, NOW)), QoS::AtLeastOnce, false, NOW).is_none());
        let large = Arc::new(Message::new("t/2", Bytes::from_static(b"0123456789")));
        assert!(outbox.offer((Some(2), large), QoS::AtLeastOnce, false, NOW).is_none());
        assert_eq!(outbox.take_dropped(), [Dropped::Expired, Dropped::TooLargeForClient]);
        assert_eq!(outbox.take_finished(), [1, 2]);

        // A waiting message that expires while it waits is dropped when its turn comes.
        let first = outbox.offer((Some(3), message(3)), QoS::AtLeastOnce, false, NOW).expect("fits");
        assert!(outbox.offer((Some(4), expiring(4, NOW + 10)), QoS::AtLeastOnce, false, NOW).is_none());
        assert!(outbox.offer((Some(5), message(5)), QoS::AtLeastOnce, true, NOW).is_none());
        let next = outbox.acknowledged(first.packet_id.unwrap(), NOW + 10);
        assert_eq!(topics(&next), ["t/5"]);
        assert!(next[0].retain, "the RETAIN flag waits with the message");
        assert_eq!(outbox.take_dropped(), [Dropped::Expired]);
        assert_eq!(outbox.take_finished(), [3, 4]);
    }

    #[test]
    fn the_waiting_line_is_bounded() {
        let mut outbox = outbox(1);
        outbox.offer((None, message(0)), QoS::AtLeastOnce, false, NOW).expect("fills the window");
        for n in 1..=WAITING_LIMIT as u32 {
            assert!(outbox.has_room());
            assert!(outbox.offer((None, message(n)), QoS::AtLeastOnce, false, NOW).is_none());
        }
        assert!(!outbox.has_room(), "a full line leaves deliveries in the connection's queue");
        assert_eq!(outbox.acknowledged(1, NOW).len(), 1);
        assert!(outbox.has_room());
    }
}
