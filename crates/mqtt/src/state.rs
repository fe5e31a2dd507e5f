//! The sans-I/O parts of a connection: keep-alive deadlines and inbound topic
//! aliases ([`ConnectionState`]), packet identifiers and the window of QoS 1
//! messages in flight, the client's Receive Maximum ([`InFlight`]). Time is
//! passed in, so tests drive it with virtual time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::{Publish, ReasonCode};

/// The inbound side of one connection: keep-alive and topic aliases.
#[derive(Debug)]
pub struct ConnectionState {
    keep_alive: Duration,
    last_received: Instant,
    topic_alias_maximum: u16,
    aliases: HashMap<u16, String>,
}

/// QoS 1 messages sent and not yet acknowledged, under their packet identifiers,
/// within the client's Receive Maximum. `T` is what the caller keeps per message
/// (for redelivery after a lost connection).
#[derive(Debug)]
pub struct InFlight<T> {
    next_packet_id: u16,
    in_flight: VecDeque<(u16, T)>,
    receive_maximum: usize,
}

impl ConnectionState {
    /// `keep_alive_secs` as granted (0: none); `topic_alias_maximum` as the server announces it.
    pub fn new(keep_alive_secs: u16, topic_alias_maximum: u16, now: Instant) -> Self {
        Self {
            keep_alive: Duration::from_secs(u64::from(keep_alive_secs)),
            last_received: now,
            topic_alias_maximum,
            aliases: HashMap::new(),
        }
    }

    /// Any packet from the client restarts the keep-alive timer.
    pub fn received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// When the connection times out without another packet: 1.5 keep-alive periods.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.keep_alive.is_zero()).then(|| self.last_received + self.keep_alive * 3 / 2)
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// Applies an inbound topic alias: records a new mapping or fills in the topic.
    pub fn resolve_topic(&mut self, publish: &mut Publish) -> Result<(), ReasonCode> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return if publish.topic.is_empty() { Err(ReasonCode::ProtocolError) } else { Ok(()) };
        };
        if alias == 0 || alias > self.topic_alias_maximum {
            return Err(ReasonCode::TopicAliasInvalid);
        }
        if publish.topic.is_empty() {
            publish.topic = self.aliases.get(&alias).cloned().ok_or(ReasonCode::ProtocolError)?;
        } else {
            self.aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }
}

impl<T> InFlight<T> {
    /// `receive_maximum` as the client set it.
    pub fn new(receive_maximum: u16) -> Self {
        Self { next_packet_id: 1, in_flight: VecDeque::new(), receive_maximum: usize::from(receive_maximum.max(1)) }
    }

    /// Whether another QoS 1 message may be sent before an acknowledgement.
    pub fn can_send(&self) -> bool {
        self.in_flight.len() < self.receive_maximum
    }

    /// Puts a QoS 1 message in flight under a fresh packet identifier.
    pub fn send(&mut self, message: T) -> u16 {
        let id = loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.in_flight.iter().any(|(used, _)| *used == id) {
                break id;
            }
        };
        self.in_flight.push_back((id, message));
        id
    }

    /// A PUBACK: answers the message that was in flight under this identifier.
    pub fn acknowledged(&mut self, packet_id: u16) -> Option<T> {
        let index = self.in_flight.iter().position(|(id, _)| *id == packet_id)?;
        self.in_flight.remove(index).map(|(_, message)| message)
    }

    /// The messages still unacknowledged, oldest first.
    pub fn take_in_flight(&mut self) -> Vec<T> {
        self.in_flight.drain(..).map(|(_, message)| message).collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Properties, QoS};

    fn publish(topic: &str, alias: Option<u16>) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            payload: Bytes::new(),
            properties: Properties { topic_alias: alias, ..Properties::default() },
        }
    }

    #[test]
    fn keep_alive_expires_after_one_and_a_half_periods() {
        let start = Instant::now();
        let mut state = ConnectionState::new(60, 8, start);
        assert!(!state.expired(start + Duration::from_secs(89)));
        assert!(state.expired(start + Duration::from_secs(90)));
        state.received(start + Duration::from_secs(80));
        assert!(!state.expired(start + Duration::from_secs(90)));
        assert!(ConnectionState::new(0, 8, start).deadline().is_none());
    }

    #[test]
    fn the_window_follows_receive_maximum_and_ids_are_not_reused_while_in_flight() {
        let mut state = InFlight::new(2);
        let first = state.send("a");
        let second = state.send("b");
        assert!(!state.can_send());
        assert_ne!(first, second);
        assert!(state.acknowledged(first).is_some());
        assert!(state.acknowledged(first).is_none(), "only once");
        assert!(state.can_send());
        state.next_packet_id = second; // wrap onto an id still in flight
        let third = state.send("c");
        assert_ne!(third, second);
        assert_eq!(state.take_in_flight(), vec!["b", "c"]);
    }

    #[test]
    fn topic_aliases() {
        let mut state = ConnectionState::new(60, 8, Instant::now());
        let mut first = publish("sensors/1", Some(3));
        state.resolve_topic(&mut first).unwrap();
        let mut aliased = publish("", Some(3));
        state.resolve_topic(&mut aliased).unwrap();
        assert_eq!(aliased.topic, "sensors/1");
        assert_eq!(state.resolve_topic(&mut publish("", Some(4))), Err(ReasonCode::ProtocolError));
        assert_eq!(state.resolve_topic(&mut publish("x", Some(9))), Err(ReasonCode::TopicAliasInvalid));
        assert_eq!(state.resolve_topic(&mut publish("x", Some(0))), Err(ReasonCode::TopicAliasInvalid));
        assert_eq!(state.resolve_topic(&mut publish("", None)), Err(ReasonCode::ProtocolError));
    }
}
