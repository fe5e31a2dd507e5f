//! The session core: what one MQTT connection does after its CONNACK, decided
//! without I/O, in the style of quinn-proto's `Connection`. Bytes read go in,
//! the core decodes them and answers each packet with a [`Step`]; the packets it
//! sends are encoded into its output buffer; time (`Now`) and control signals are
//! passed in. What it needs to know about the rest of the gateway (policies, the
//! session's subscriptions, limits) it asks through a [`Gate`].
//!
//! The connection task (`connection.rs`) only moves bytes and carries out the
//! steps that touch shared state: routing a publish, changing the router's
//! subscriptions, storing session records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferrocore_message::Message;
use ferrocore_mqtt::{
    Ack, ConnAck, ConnectionState, DecodeError, Disconnect, Packet, Properties, Publish, PublishRef, QoS, ReasonCode,
    SubAck, Subscribe, UnsubAck, Unsubscribe, Version, decode, encode, encode_publish, topic,
};

use crate::Limits;
use crate::authorize::Refusal;
use crate::negotiate::Terms;
use crate::outbox::{Dropped, Outbox, Outgoing};
use crate::quota::QuotaWindow;
use crate::router::{Signal, Subscription, Unfinished};

/// A read asks for at least this much room while packets stream in.
const READ_CHUNK: usize = 4096;
/// The read buffer a connection waits with after a read that did not fill it (a
/// trickle): idle connections hold this much; one that fills it reads in chunks.
const IDLE_READ: usize = 64;
/// Writes below this size are a trickle (keep-alives, an occasional message): their
/// buffer is released afterwards.
const TRICKLE: usize = 256;

/// The time, read once by the connection task for a batch of work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// For keep-alive and quotas.
    pub instant: Instant,
    /// For message timestamps and expiry (milliseconds since the Unix epoch).
    pub unix_ms: u64,
}

impl Now {
    pub(crate) fn read() -> Self {
        Self { instant: Instant::now(), unix_ms: crate::now_ms() }
    }
}

/// What the core asks of the rest of the gateway.
pub(crate) trait Gate {
    fn limits(&self) -> &Limits;
    /// May this connection publish (or retain) on `topic`? Answers the topic's ARN.
    fn may_publish(&self, topic: &str, retain: bool) -> Result<String, Refusal>;
    /// iot:Subscribe on the topic filter.
    fn may_subscribe(&self, filter: &str) -> bool;
    /// iot:Receive on the topic.
    fn may_receive(&self, topic: &str) -> bool;
    /// Whether the session holds a subscription to exactly this filter.
    fn is_subscribed(&self, filter: &str) -> bool;
    /// How many subscriptions the session holds.
    fn subscription_count(&self) -> usize;
}

/// Why a connection ended, for the log line and lifecycle reporting.
#[derive(Debug, PartialEq)]
pub(crate) enum End {
    ClientDisconnected,
    ConnectionLost,
    KeepAliveTimeout,
    TakenOver,
    Refused(&'static str),
    Forbidden(String),
    Malformed(DecodeError),
    Unsupported(&'static str),
    Revoked,
    /// DeleteConnection.
    Kicked,
    /// The node was cut off from its cluster.
    SteppedDown,
}

impl From<Signal> for End {
    fn from(signal: Signal) -> Self {
        match signal {
            Signal::TakenOver => Self::TakenOver,
            Signal::Revoked => Self::Revoked,
            Signal::Kicked { .. } => Self::Kicked,
            Signal::SteppedDown => Self::SteppedDown,
        }
    }
}

impl End {
    /// The lifecycle event's `disconnectReason`, and whether the client chose to leave.
    pub(crate) fn lifecycle_reason(&self) -> (&'static str, bool) {
        match self {
            Self::ClientDisconnected => ("CLIENT_INITIATED_DISCONNECT", true),
            Self::ConnectionLost => ("CONNECTION_LOST", false),
            Self::KeepAliveTimeout => ("MQTT_KEEP_ALIVE_TIMEOUT", false),
            Self::TakenOver => ("DUPLICATE_CLIENTID", false),
            Self::Forbidden(_) => ("FORBIDDEN_ACCESS", false),
            Self::Revoked => ("AUTH_ERROR", false),
            Self::Kicked => ("API_INITIATED_DISCONNECT", false),
            Self::SteppedDown => ("SERVER_INITIATED_DISCONNECT", false),
            Self::Refused(_) | Self::Malformed(_) | Self::Unsupported(_) => ("CLIENT_ERROR", false),
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientDisconnected => f.write_str("client disconnected"),
            Self::ConnectionLost => f.write_str("connection lost"),
            Self::KeepAliveTimeout => f.write_str("keep-alive timeout"),
            Self::TakenOver => f.write_str("client id taken over"),
            Self::Refused(why) => write!(f, "protocol violation: {why}"),
            Self::Forbidden(what) => write!(f, "not authorized: {what}"),
            Self::Malformed(err) => write!(f, "{err}"),
            Self::Unsupported(what) => write!(f, "unsupported: {what}"),
            Self::Revoked => f.write_str("certificate or policy withdrawn"),
            Self::Kicked => f.write_str("disconnected through the API (DeleteConnection)"),
            Self::SteppedDown => f.write_str("this node is cut off from its cluster"),
        }
    }
}

/// A publish the client sent that may be routed: the task routes it, then calls
/// [`SessionCore::acknowledge`] (or [`SessionCore::not_stored`]).
#[derive(Debug)]
pub(crate) struct Inbound {
    pub message: Message,
    pub qos: QoS,
    pub retain: bool,
    /// The topic's ARN.
    pub resource: String,
    pub packet_id: Option<u16>,
}

/// A subscription granted by a SUBSCRIBE (its SUBACK is already encoded).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grant {
    pub filter: String,
    pub subscription: Subscription,
    retain_handling: u8,
}

impl Grant {
    /// Retain Handling: 0 sends the retained copy, 1 only for a new subscription, 2 never.
    /// AWS sends it only when the filter is exactly its topic, never to a shared subscription.
    pub(crate) fn wants_retained(&self, new: bool) -> bool {
        let wanted = match self.retain_handling {
            0 => true,
            1 => new,
            _ => false,
        };
        wanted && !self.filter.starts_with("$share/")
    }
}

/// What the task does next.
#[derive(Debug)]
#[must_use]
pub(crate) enum Step {
    /// No complete packet is buffered: read more.
    Read,
    /// A packet was handled; its answers are in the output.
    Handled,
    /// Route this publish.
    Publish(Inbound),
    /// Acknowledge this QoS 1 publish without routing it (refused with an MQTT 5
    /// reason code, or over the quota) with [`SessionCore::acknowledge`], after the
    /// publishes before it.
    Acknowledge(u16, ReasonCode),
    /// Add these subscriptions to the router, in order (and send their retained messages).
    Subscribe(Vec<Grant>),
    /// Remove these subscriptions from the router (the UNSUBACK is encoded).
    Unsubscribe(Vec<String>),
    /// The connection ends; what is in the output (a DISCONNECT for MQTT 5) is
    /// written first, within a short time. So do [`SessionCore::obey`],
    /// [`SessionCore::timed_out`] and [`SessionCore::not_stored`].
    Close(End),
    /// The connection ends without a word to the client.
    Leave(End),
}

/// The session core of one connection.
#[derive(Debug)]
pub(crate) struct SessionCore {
    version: Version,
    max_packet_size: usize,
    /// Bytes read and not yet decoded.
    input: BytesMut,
    /// The size of the last read (see [`SessionCore::read_buffer`]).
    last_read: usize,
    /// Encoded packets not yet written.
    output: BytesMut,
    /// PUBLISH packets received and encoded since [`SessionCore::take_message_counts`].
    publishes_in: u64,
    publishes_out: u64,
    /// Keep-alive and inbound topic aliases.
    state: ConnectionState,
    /// What goes out: the QoS 1 window, messages waiting for it, finished stored records.
    outbox: Outbox,
    quota: QuotaWindow,
    /// An MQTT 5 DISCONNECT may change the session expiry.
    expiry_on_disconnect: Option<u32>,
    /// Whether the session started with no expiry (MQTT 5 forbids raising it at DISCONNECT).
    expiry_was_zero: bool,
    /// DeleteConnection asked for the session to go, or for no will.
    discard_session: bool,
    prevent_will: bool,
}

/// How the session ends, for the task to park or drop it.
#[derive(Debug)]
pub(crate) struct Ending {
    /// How long the session outlives the connection (`None`: it ends now).
    pub expiry_secs: Option<u64>,
    /// Messages not acknowledged, oldest first, for redelivery.
    pub unfinished: Vec<Unfinished>,
    /// Stored queue records finished.
    pub finished: Vec<u64>,
    pub prevent_will: bool,
}

impl SessionCore {
    /// A session that starts with its CONNACK. `input` holds what was read after CONNECT.
    pub(crate) fn new(
        version: Version,
        terms: &Terms,
        accepted: ConnAck,
        limits: &Limits,
        max_packet_size: usize,
        input: BytesMut,
        now: Now,
    ) -> Self {
        let mut core = Self {
            version,
            max_packet_size,
            input,
            last_read: 0,
            output: BytesMut::new(),
            publishes_in: 0,
            publishes_out: 0,
            state: ConnectionState::new(terms.keep_alive, terms.topic_alias_maximum, now.instant),
            outbox: Outbox::new(terms.receive_maximum, terms.client_max_packet),
            quota: QuotaWindow::new(limits.rate, now.instant),
            expiry_on_disconnect: None,
            expiry_was_zero: terms.expiry_secs.is_none(),
            discard_session: false,
            prevent_will: false,
        };
        core.send(&Packet::ConnAck(accepted));
        core
    }

    /// Room for the next read: a little while the client trickles, a chunk while it streams.
    pub(crate) fn read_buffer(&mut self) -> &mut BytesMut {
        if self.input.is_empty() && self.last_read < IDLE_READ {
            if self.input.capacity() > IDLE_READ {
                self.input = BytesMut::with_capacity(IDLE_READ);
            }
        } else {
            self.input.reserve(READ_CHUNK);
        }
        &mut self.input
    }

    /// Bytes were read into [`Self::read_buffer`]: answers how long to pause reading
    /// to stay within the byte quota.
    pub(crate) fn bytes_read(&mut self, read: usize, now: Now) -> Option<Duration> {
        self.last_read = read;
        let pause = self.quota.read(read, now.instant);
        if pause.is_some() {
            metrics::counter!("ferrocore_mqtt_throttled_total", "quota" => "bytes").increment(1);
        }
        pause
    }

    /// Decodes and handles the next buffered packet.
    pub(crate) fn poll(&mut self, now: Now, gate: &impl Gate) -> Step {
        match decode(&mut self.input, Some(self.version), self.max_packet_size) {
            Ok(Some(packet)) => self.handle(packet, now, gate),
            Ok(None) => Step::Read,
            Err(err) => {
                let reason = err.reason_code();
                self.close(reason, End::Malformed(err))
            }
        }
    }

    /// When the connection times out without a packet from the client (MQTT: 1.5 keep-alive periods).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.state.deadline()
    }

    /// The deadline passed: the connection ends unless a packet came in meanwhile.
    pub(crate) fn timed_out(&mut self, now: Now) -> Option<End> {
        self.state.expired(now.instant).then(|| self.disconnect(ReasonCode::KeepAliveTimeout, End::KeepAliveTimeout))
    }

    /// A control signal (take-over, revocation, DeleteConnection) ends the connection.
    pub(crate) fn obey(&mut self, signal: Signal) -> End {
        let reason = match signal {
            Signal::TakenOver => ReasonCode::SessionTakenOver,
            Signal::Revoked => ReasonCode::NotAuthorized,
            Signal::Kicked { .. } => ReasonCode::AdministrativeAction,
            Signal::SteppedDown => ReasonCode::ServerShuttingDown,
        };
        self.note_kick(signal);
        self.disconnect(reason, End::from(signal))
    }

    /// DeleteConnection's options, also when the connection noticed the signal only as a failed write.
    pub(crate) fn note_kick(&mut self, signal: Signal) {
        if let Signal::Kicked { clean_session, prevent_will } = signal {
            self.discard_session |= clean_session;
            self.prevent_will |= prevent_will;
        }
    }

    /// Encoded packets waiting to be written.
    pub(crate) fn output(&self) -> &[u8] {
        &self.output
    }

    /// Whether the output has grown enough to be written before the batch ends.
    pub(crate) fn output_full(&self, limit: usize) -> bool {
        self.output.len() >= limit
    }

    /// The output was written: a trickle's buffer is released, a stream's kept for the next batch.
    pub(crate) fn written(&mut self) {
        if self.output.len() < TRICKLE {
            self.output = BytesMut::new();
        } else {
            self.output.clear();
        }
    }

    /// PUBLISH packets received and sent since the last call, for the shared counters.
    pub(crate) fn take_message_counts(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.publishes_in), std::mem::take(&mut self.publishes_out))
    }

    /// Whether to take more deliveries from the connection's queue (see [`Outbox::has_room`]).
    pub(crate) fn has_room(&self) -> bool {
        self.outbox.has_room()
    }

    /// A routed message for the client: sent now, held for the window, or dropped.
    pub(crate) fn deliver(&mut self, unfinished: Unfinished, qos: QoS, retain: bool, now_ms: u64) {
        if let Some(outgoing) = self.outbox.offer(unfinished, qos, retain, now_ms) {
            self.encode_publish(outgoing, now_ms);
        }
    }

    /// The QoS 1 messages a resumed session queued while the client was away, those
    /// its current iot:Receive still allows.
    pub(crate) fn replay(&mut self, queued: Vec<(u64, Arc<Message>)>, now_ms: u64, gate: &impl Gate) {
        for (seq, message) in queued {
            if gate.may_receive(&message.topic) {
                self.deliver((Some(seq), message), QoS::AtLeastOnce, false, now_ms);
            } else {
                self.outbox.skip(seq);
            }
        }
    }

    /// Acknowledges a QoS 1 publish: routed and durable where it had to be, or not routed.
    pub(crate) fn acknowledge(&mut self, packet_id: u16, reason: ReasonCode) {
        self.send(&Packet::PubAck(Ack { packet_id, reason, properties: Properties::default() }));
    }

    /// A publish could not be stored: nothing is acknowledged that is not durable.
    pub(crate) fn not_stored(&mut self) -> End {
        self.disconnect(ReasonCode::UnspecifiedError, End::Refused("message not stored"))
    }

    /// Stored queue records finished since the last call (messages dropped are counted).
    pub(crate) fn take_finished(&mut self) -> Vec<u64> {
        for dropped in self.outbox.take_dropped() {
            count_dropped(dropped);
        }
        self.outbox.take_finished()
    }

    /// The session as the connection leaves it. `expiry_secs` is what CONNECT asked for.
    pub(crate) fn end(self, expiry_secs: Option<u64>) -> Ending {
        let expiry_secs = crate::negotiate::expiry_at_end(expiry_secs, self.expiry_on_disconnect, self.discard_session);
        let mut outbox = self.outbox;
        for dropped in outbox.take_dropped() {
            count_dropped(dropped);
        }
        let (unfinished, finished) = outbox.into_unfinished();
        Ending { expiry_secs, unfinished, finished, prevent_will: self.prevent_will }
    }

    fn send(&mut self, packet: &Packet) {
        encode(packet, self.version, &mut self.output);
    }

    /// Ends the connection with a reason: MQTT 5 clients are told with DISCONNECT.
    fn disconnect(&mut self, reason: ReasonCode, end: End) -> End {
        if self.version == Version::V5 {
            self.send(&Packet::Disconnect(Disconnect { reason, properties: Properties::default() }));
        }
        end
    }

    fn close(&mut self, reason: ReasonCode, end: End) -> Step {
        Step::Close(self.disconnect(reason, end))
    }

    /// Encodes one PUBLISH: QoS 1 when it has a packet id, else QoS 0.
    fn encode_publish(&mut self, Outgoing { message, packet_id, retain }: Outgoing, now_ms: u64) {
        let properties = match self.version {
            Version::V5 => message.outgoing_properties(now_ms),
            Version::V311 => Properties::default(),
        };
        let publish = PublishRef {
            dup: false,
            qos: if packet_id.is_some() { QoS::AtLeastOnce } else { QoS::AtMostOnce },
            retain,
            topic: &message.topic,
            packet_id,
            payload: &message.payload,
            properties: &properties,
        };
        encode_publish(publish, self.version, &mut self.output);
        self.publishes_out += 1;
    }

    fn handle(&mut self, packet: Packet, now: Now, gate: &impl Gate) -> Step {
        self.state.received(now.instant);
        match packet {
            Packet::Publish(publish) => self.publish(publish, now, gate),
            Packet::Subscribe(subscribe) => self.subscribe(subscribe, gate),
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe, gate),
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                Step::Handled
            }
            // The client leaves and asks for its will to be sent, as for a lost connection.
            Packet::Disconnect(Disconnect { reason: ReasonCode::DisconnectWithWill, .. }) => {
                Step::Leave(End::ConnectionLost)
            }
            Packet::Disconnect(disconnect) => {
                let expiry = disconnect.properties.session_expiry_interval;
                if self.expiry_was_zero && expiry.is_some_and(|secs| secs > 0) {
                    // MQTT 5 §3.14.2.2.2: a session that started without expiry cannot get one now.
                    return self.close(ReasonCode::ProtocolError, End::Refused("session expiry raised at DISCONNECT"));
                }
                self.expiry_on_disconnect = expiry;
                Step::Leave(End::ClientDisconnected)
            }
            Packet::PubAck(ack) => {
                for outgoing in self.outbox.acknowledged(ack.packet_id, now.unix_ms) {
                    self.encode_publish(outgoing, now.unix_ms);
                }
                Step::Handled
            }
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                self.close(ReasonCode::QoSNotSupported, End::Unsupported("QoS 2"))
            }
            _ => self.close(ReasonCode::ProtocolError, End::Refused("unexpected packet")),
        }
    }

    fn publish(&mut self, mut publish: Publish, now: Now, gate: &impl Gate) -> Step {
        if publish.qos == QoS::ExactlyOnce {
            return self.close(ReasonCode::QoSNotSupported, End::Unsupported("QoS 2"));
        }
        if let Err(reason) = self.state.resolve_topic(&mut publish) {
            return self.close(reason, End::Refused("topic alias"));
        }
        let resource = match gate.may_publish(&publish.topic, publish.retain) {
            Ok(resource) => resource,
            Err(Refusal::InvalidTopic(_)) => {
                return self.close(ReasonCode::TopicNameInvalid, End::Refused("invalid topic name"));
            }
            Err(Refusal::Reserved | Refusal::NotAuthorized) => {
                // MQTT 5 QoS 1: a PUBACK says so and the connection stays; otherwise AWS closes it.
                return match (self.version, publish.packet_id) {
                    (Version::V5, Some(packet_id)) => Step::Acknowledge(packet_id, ReasonCode::NotAuthorized),
                    _ => self
                        .close(ReasonCode::NotAuthorized, End::Forbidden(format!("iot:Publish on {}", publish.topic))),
                };
            }
        };
        self.publishes_in += 1;
        if !self.quota.admit_publish(now.instant) {
            // AWS discards publishes over the per-connection quota, acknowledged.
            metrics::counter!("ferrocore_mqtt_throttled_total", "quota" => "publishes").increment(1);
            return match publish.packet_id {
                Some(packet_id) => Step::Acknowledge(packet_id, ReasonCode::Success),
                None => Step::Handled,
            };
        }
        let message = Message::published(publish.topic, publish.payload, &publish.properties, now.unix_ms);
        Step::Publish(Inbound {
            message,
            qos: publish.qos,
            retain: publish.retain,
            resource,
            packet_id: publish.packet_id,
        })
    }

    fn subscribe(&mut self, subscribe: Subscribe, gate: &impl Gate) -> Step {
        if !subscribe.properties.subscription_identifiers.is_empty() {
            // CONNACK said Subscription Identifier Available = 0.
            let end = End::Unsupported("subscription identifiers");
            return self.close(ReasonCode::SubscriptionIdentifiersNotSupported, end);
        }
        let limits = gate.limits();
        let (mut reasons, mut grants) = (Vec::new(), Vec::<Grant>::new());
        // Filters this packet adds, counted against the subscriptions per connection.
        let mut added = 0;
        for (index, (filter, options)) in subscribe.filters.into_iter().enumerate() {
            // `$share/<group>/<filter>`: the limits and checks apply to the filter part.
            let inner = match topic::shared_subscription(&filter) {
                None => filter.as_str(),
                // [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
                Some(Ok(_)) if options.no_local => {
                    return self.close(ReasonCode::ProtocolError, End::Refused("No Local on a shared subscription"));
                }
                Some(Ok((_, inner))) => inner,
                Some(Err(_)) => {
                    reasons.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            if topic::validate_filter(inner).is_err()
                || !limits.topic_fits(inner)
                || !topic::client_may_subscribe(inner)
            {
                reasons.push(ReasonCode::TopicFilterInvalid);
                continue;
            }
            let held = gate.is_subscribed(&filter) || grants.iter().any(|grant| grant.filter == filter);
            let over_quota = index >= limits.filters_per_subscribe
                || (!held && gate.subscription_count() + added >= limits.subscriptions_per_connection);
            if over_quota {
                reasons.push(ReasonCode::QuotaExceeded);
                continue;
            }
            if !gate.may_subscribe(&filter) {
                if self.version == Version::V311 {
                    // AWS closes MQTT 3.1.1 connections on an unauthorized subscribe.
                    return Step::Leave(End::Forbidden(format!("iot:Subscribe on {filter}")));
                }
                reasons.push(ReasonCode::NotAuthorized);
                continue;
            }
            if !held {
                added += 1;
            }
            let granted = options.qos.min(QoS::AtLeastOnce);
            reasons.push(if granted == QoS::AtLeastOnce { ReasonCode::GrantedQoS1 } else { ReasonCode::Success });
            let subscription = Subscription::granted(&options, granted);
            grants.push(Grant { filter, subscription, retain_handling: options.retain_handling });
        }
        self.send(&Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            properties: Properties::default(),
        }));
        Step::Subscribe(grants)
    }

    fn unsubscribe(&mut self, unsubscribe: Unsubscribe, gate: &impl Gate) -> Step {
        let mut removed: Vec<String> = Vec::new();
        let mut reasons = Vec::new();
        for filter in unsubscribe.filters {
            if gate.is_subscribed(&filter) && !removed.contains(&filter) {
                removed.push(filter);
                reasons.push(ReasonCode::Success);
            } else {
                reasons.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        let ack = UnsubAck { packet_id: unsubscribe.packet_id, reasons, properties: Properties::default() };
        self.send(&Packet::UnsubAck(ack));
        Step::Unsubscribe(removed)
    }
}

fn count_dropped(dropped: Dropped) {
    metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => dropped.label()).increment(1);
}

#[cfg(test)]
mod tests {
    //! The session core driven packet by packet with virtual time: no sockets, no sleeps.

    use super::*;
    use crate::quota::RateQuota;
    use bytes::Bytes;
    use ferrocore_mqtt::SubscriptionOptions;

    const T0_MS: u64 = 1_700_000_000_000;

    /// A gateway that allows everything except topics and filters under `secret/`.
    struct FakeGate {
        limits: Limits,
        subscribed: Vec<String>,
    }

    impl FakeGate {
        fn new() -> Self {
            let limits = Limits {
                subscriptions_per_connection: 3,
                filters_per_subscribe: 8,
                topic_bytes: 256,
                topic_slashes: 7,
                rate: RateQuota::default(),
            };
            Self { limits, subscribed: Vec::new() }
        }
    }

    impl Gate for FakeGate {
        fn limits(&self) -> &Limits {
            &self.limits
        }
        fn may_publish(&self, topic: &str, _retain: bool) -> Result<String, Refusal> {
            topic::validate_name(topic).map_err(|err| Refusal::InvalidTopic(err.to_string()))?;
            if topic.starts_with("secret/") { Err(Refusal::NotAuthorized) } else { Ok(format!("arn:topic/{topic}")) }
        }
        fn may_subscribe(&self, filter: &str) -> bool {
            !filter.starts_with("secret/")
        }
        fn may_receive(&self, topic: &str) -> bool {
            !topic.starts_with("secret/")
        }
        fn is_subscribed(&self, filter: &str) -> bool {
            self.subscribed.iter().any(|held| held == filter)
        }
        fn subscription_count(&self) -> usize {
            self.subscribed.len()
        }
    }

    struct Clock(Instant);

    impl Clock {
        fn at(&self, secs: f64) -> Now {
            let elapsed = Duration::from_secs_f64(secs);
            Now { instant: self.0 + elapsed, unix_ms: T0_MS + elapsed.as_millis() as u64 }
        }
    }

    fn terms(keep_alive: u16, receive_maximum: u16, expiry_secs: Option<u64>) -> Terms {
        Terms {
            client_id: "device".into(),
            keep_alive,
            expiry_secs,
            connack: Properties::default(),
            receive_maximum,
            client_max_packet: 1 << 20,
            topic_alias_maximum: 8,
        }
    }

    fn start(version: Version, terms: &Terms, gate: &FakeGate) -> (SessionCore, Clock) {
        let clock = Clock(Instant::now());
        let accepted =
            ConnAck { session_present: false, reason: ReasonCode::Success, properties: Properties::default() };
        let mut core =
            SessionCore::new(version, terms, accepted, &gate.limits, 1 << 20, BytesMut::new(), clock.at(0.0));
        assert!(matches!(sent(&mut core, version)[..], [Packet::ConnAck(_)]), "CONNACK comes first");
        (core, clock)
    }

    /// The packets the core has encoded since the last call.
    fn sent(core: &mut SessionCore, version: Version) -> Vec<Packet> {
        let mut bytes = BytesMut::from(core.output());
        core.written();
        std::iter::from_fn(|| decode(&mut bytes, Some(version), 1 << 20).unwrap()).collect()
    }

    /// Feeds one packet as the client would send it, and answers the core's step.
    fn feed(core: &mut SessionCore, version: Version, packet: Packet, now: Now, gate: &FakeGate) -> Step {
        encode(&packet, version, core.read_buffer());
        let step = core.poll(now, gate);
        assert!(matches!(core.poll(now, gate), Step::Read), "one packet fed, one handled");
        step
    }

    fn publish(topic: &str, qos: QoS, packet_id: Option<u16>) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            packet_id,
            payload: Bytes::from_static(b"{}"),
            properties: Properties::default(),
        })
    }

    fn subscribe(filters: &[(&str, QoS)]) -> Packet {
        let options =
            |qos| SubscriptionOptions { qos, no_local: false, retain_as_published: false, retain_handling: 0 };
        let filters = filters.iter().map(|(filter, qos)| (filter.to_string(), options(*qos))).collect();
        Packet::Subscribe(Subscribe { packet_id: 7, filters, properties: Properties::default() })
    }

    fn message(topic: &str) -> Arc<Message> {
        Arc::new(Message::published(topic.to_string(), Bytes::from_static(b"m"), &Properties::default(), T0_MS))
    }

    fn disconnect_reason(packets: &[Packet]) -> Option<ReasonCode> {
        packets.iter().find_map(|packet| match packet {
            Packet::Disconnect(disconnect) => Some(disconnect.reason),
            _ => None,
        })
    }

    #[test]
    fn keep_alive_ends_the_connection_after_one_and_a_half_periods_of_silence() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V5, &terms(10, 10, None), &gate);
        assert_eq!(core.deadline(), Some(clock.at(15.0).instant));
        assert_eq!(core.timed_out(clock.at(14.9)), None);
        assert!(matches!(feed(&mut core, Version::V5, Packet::PingReq, clock.at(10.0), &gate), Step::Handled));
        assert!(matches!(sent(&mut core, Version::V5)[..], [Packet::PingResp]));
        assert_eq!(core.timed_out(clock.at(24.9)), None, "the ping restarted the timer");
        assert_eq!(core.timed_out(clock.at(25.0)), Some(End::KeepAliveTimeout));
        assert_eq!(disconnect_reason(&sent(&mut core, Version::V5)), Some(ReasonCode::KeepAliveTimeout));
    }

    #[test]
    fn a_publish_is_acknowledged_only_after_it_was_routed() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let Packet::Publish(mut expiring) = publish("a/b", QoS::AtLeastOnce, Some(3)) else { unreachable!() };
        expiring.properties.message_expiry_interval = Some(10);
        let Step::Publish(inbound) = feed(&mut core, Version::V5, Packet::Publish(expiring), clock.at(2.0), &gate)
        else {
            panic!("an authorized publish is routed");
        };
        assert_eq!((inbound.resource.as_str(), inbound.packet_id), ("arn:topic/a/b", Some(3)));
        assert_eq!(inbound.message.expires_at_ms, Some(T0_MS + 12_000), "expiry counts from the time passed in");
        assert!(sent(&mut core, Version::V5).is_empty(), "no PUBACK before the message is routed");
        core.acknowledge(3, ReasonCode::Success);
        let acks = sent(&mut core, Version::V5);
        assert!(matches!(&acks[..], [Packet::PubAck(ack)] if ack.packet_id == 3 && ack.reason == ReasonCode::Success));
        assert_eq!(core.take_message_counts(), (1, 0));
    }

    #[test]
    fn an_unauthorized_publish_gets_an_mqtt5_puback_or_closes_a_311_connection() {
        let gate = FakeGate::new();
        let (mut v5, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let step = feed(&mut v5, Version::V5, publish("secret/x", QoS::AtLeastOnce, Some(1)), clock.at(1.0), &gate);
        assert!(matches!(step, Step::Acknowledge(1, ReasonCode::NotAuthorized)), "the MQTT 5 connection stays");
        v5.acknowledge(1, ReasonCode::NotAuthorized);
        let acks = sent(&mut v5, Version::V5);
        assert!(matches!(&acks[..], [Packet::PubAck(ack)] if ack.reason == ReasonCode::NotAuthorized));
        // Positive control: the same connection publishes where it may.
        let step = feed(&mut v5, Version::V5, publish("a", QoS::AtLeastOnce, Some(2)), clock.at(1.0), &gate);
        assert!(matches!(step, Step::Publish(_)));

        let (mut v3, clock) = start(Version::V311, &terms(60, 10, None), &gate);
        let step = feed(&mut v3, Version::V311, publish("secret/x", QoS::AtMostOnce, None), clock.at(1.0), &gate);
        assert!(matches!(step, Step::Close(End::Forbidden(what)) if what == "iot:Publish on secret/x"));
        assert!(sent(&mut v3, Version::V311).is_empty(), "MQTT 3.1.1 has no DISCONNECT from the server");
    }

    #[test]
    fn qos2_and_invalid_topics_close_with_their_reason_codes() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let step = feed(&mut core, Version::V5, publish("a", QoS::ExactlyOnce, Some(1)), clock.at(0.0), &gate);
        assert!(matches!(step, Step::Close(End::Unsupported("QoS 2"))));
        assert_eq!(disconnect_reason(&sent(&mut core, Version::V5)), Some(ReasonCode::QoSNotSupported));

        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let step = feed(&mut core, Version::V5, publish("a/+", QoS::AtMostOnce, None), clock.at(0.0), &gate);
        assert!(matches!(step, Step::Close(End::Refused("invalid topic name"))));
        assert_eq!(disconnect_reason(&sent(&mut core, Version::V5)), Some(ReasonCode::TopicNameInvalid));
    }

    #[test]
    fn topic_aliases_stand_for_the_topic_they_were_set_with() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let with_alias = |topic: &str, alias| {
            let Packet::Publish(mut publish) = publish(topic, QoS::AtMostOnce, None) else { unreachable!() };
            publish.properties.topic_alias = Some(alias);
            Packet::Publish(publish)
        };
        let Step::Publish(first) = feed(&mut core, Version::V5, with_alias("t/1", 2), clock.at(0.0), &gate) else {
            panic!("the publish that sets the alias is routed");
        };
        let Step::Publish(second) = feed(&mut core, Version::V5, with_alias("", 2), clock.at(0.0), &gate) else {
            panic!("the alias alone names the topic");
        };
        assert_eq!((first.message.topic.as_str(), second.message.topic.as_str()), ("t/1", "t/1"));
        let step = feed(&mut core, Version::V5, with_alias("t/2", 9), clock.at(0.0), &gate);
        assert!(matches!(step, Step::Close(End::Refused("topic alias"))), "9 is above the maximum of 8");
        assert_eq!(disconnect_reason(&sent(&mut core, Version::V5)), Some(ReasonCode::TopicAliasInvalid));
    }

    #[test]
    fn publishes_over_the_quota_are_acknowledged_and_discarded_until_the_next_second() {
        let mut gate = FakeGate::new();
        gate.limits.rate = RateQuota { publishes_per_second: Some(2), bytes_per_second: None };
        let (mut core, clock) = start(Version::V311, &terms(60, 10, None), &gate);
        for id in 1..=2 {
            let step = feed(&mut core, Version::V311, publish("a", QoS::AtLeastOnce, Some(id)), clock.at(0.1), &gate);
            assert!(matches!(step, Step::Publish(_)), "publish {id} is within the quota");
        }
        let step = feed(&mut core, Version::V311, publish("a", QoS::AtLeastOnce, Some(3)), clock.at(0.5), &gate);
        assert!(matches!(step, Step::Acknowledge(3, ReasonCode::Success)), "the third in the second is discarded");
        let step = feed(&mut core, Version::V311, publish("a", QoS::AtLeastOnce, Some(4)), clock.at(1.2), &gate);
        assert!(matches!(step, Step::Publish(_)), "a new second, a new allowance");
    }

    #[test]
    fn a_subscribe_answers_each_filter_and_grants_only_what_passes() {
        let mut gate = FakeGate::new();
        gate.subscribed.push("held/#".into());
        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let packet = subscribe(&[
            ("a/#", QoS::ExactlyOnce),
            ("a/#/b", QoS::AtMostOnce),
            ("secret/#", QoS::AtMostOnce),
            ("held/#", QoS::AtMostOnce),
            ("b", QoS::AtMostOnce),
            ("c", QoS::AtMostOnce),
        ]);
        let Step::Subscribe(grants) = feed(&mut core, Version::V5, packet, clock.at(0.0), &gate) else {
            panic!("a subscribe with valid filters grants them");
        };
        let filters: Vec<&str> = grants.iter().map(|grant| grant.filter.as_str()).collect();
        assert_eq!(filters, ["a/#", "held/#", "b"]);
        assert_eq!(grants[0].subscription.qos, QoS::AtLeastOnce, "QoS 2 is granted as 1");
        let Packet::SubAck(ack) = &sent(&mut core, Version::V5)[0] else { panic!("SUBACK") };
        // One subscription was held and the limit is 3: `c` is one too many; `held/#` replaces itself.
        use ReasonCode::*;
        assert_eq!(ack.reasons, [GrantedQoS1, TopicFilterInvalid, NotAuthorized, Success, Success, QuotaExceeded]);
    }

    #[test]
    fn an_unauthorized_subscribe_closes_a_311_connection_without_a_suback() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V311, &terms(60, 10, None), &gate);
        assert!(matches!(
            feed(&mut core, Version::V311, subscribe(&[("ok", QoS::AtMostOnce)]), clock.at(0.0), &gate),
            Step::Subscribe(grants) if grants.len() == 1
        ));
        assert!(matches!(&sent(&mut core, Version::V311)[..], [Packet::SubAck(_)]));
        let step = feed(&mut core, Version::V311, subscribe(&[("secret/#", QoS::AtMostOnce)]), clock.at(0.0), &gate);
        assert!(matches!(step, Step::Leave(End::Forbidden(_))));
        assert!(sent(&mut core, Version::V311).is_empty());
    }

    #[test]
    fn no_local_on_a_shared_subscription_is_a_protocol_error_and_shared_filters_get_no_retained_copy() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let Step::Subscribe(grants) = feed(
            &mut core,
            Version::V5,
            subscribe(&[("$share/g/t", QoS::AtMostOnce), ("t", QoS::AtMostOnce)]),
            clock.at(0.0),
            &gate,
        ) else {
            panic!("shared subscriptions are granted");
        };
        assert_eq!((grants[0].wants_retained(true), grants[1].wants_retained(true)), (false, true));
        let Packet::Subscribe(mut no_local) = subscribe(&[("$share/g/t", QoS::AtMostOnce)]) else { unreachable!() };
        no_local.filters[0].1.no_local = true;
        let step = feed(&mut core, Version::V5, Packet::Subscribe(no_local), clock.at(0.0), &gate);
        assert!(matches!(step, Step::Close(End::Refused("No Local on a shared subscription"))));
    }

    #[test]
    fn unsubscribe_answers_which_filters_were_held() {
        let mut gate = FakeGate::new();
        gate.subscribed.push("a".into());
        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: 4,
            filters: vec!["a".into(), "b".into(), "a".into()],
            properties: Properties::default(),
        });
        let Step::Unsubscribe(removed) = feed(&mut core, Version::V5, packet, clock.at(0.0), &gate) else {
            panic!("UNSUBSCRIBE removes");
        };
        assert_eq!(removed, ["a"]);
        let Packet::UnsubAck(ack) = &sent(&mut core, Version::V5)[0] else { panic!("UNSUBACK") };
        use ReasonCode::*;
        assert_eq!(ack.reasons, [Success, NoSubscriptionExisted, NoSubscriptionExisted]);
    }

    #[test]
    fn disconnect_may_shorten_the_session_expiry_but_not_give_one_to_a_session_without() {
        let gate = FakeGate::new();
        let disconnect = |expiry| {
            let properties = Properties { session_expiry_interval: expiry, ..Properties::default() };
            Packet::Disconnect(Disconnect { reason: ReasonCode::Success, properties })
        };
        let (mut core, clock) = start(Version::V5, &terms(60, 10, Some(3600)), &gate);
        let step = feed(&mut core, Version::V5, disconnect(Some(5)), clock.at(0.0), &gate);
        assert!(matches!(step, Step::Leave(End::ClientDisconnected)));
        assert_eq!(core.end(Some(3600)).expiry_secs, Some(5));

        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let step = feed(&mut core, Version::V5, disconnect(Some(5)), clock.at(0.0), &gate);
        assert!(matches!(step, Step::Close(End::Refused("session expiry raised at DISCONNECT"))));
        assert_eq!(disconnect_reason(&sent(&mut core, Version::V5)), Some(ReasonCode::ProtocolError));

        // Reason 0x04: disconnect, and send the will anyway (as for a lost connection).
        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        let with_will = Packet::Disconnect(Disconnect {
            reason: ReasonCode::DisconnectWithWill,
            properties: Properties::default(),
        });
        assert!(matches!(
            feed(&mut core, Version::V5, with_will, clock.at(0.0), &gate),
            Step::Leave(End::ConnectionLost)
        ));
    }

    #[test]
    fn qos1_deliveries_wait_for_the_window_and_unacknowledged_ones_are_kept() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V311, &terms(60, 1, Some(3600)), &gate);
        let now = clock.at(0.0);
        core.deliver((Some(10), message("a")), QoS::AtLeastOnce, false, now.unix_ms);
        core.deliver((Some(11), message("b")), QoS::AtLeastOnce, false, now.unix_ms);
        core.deliver((None, message("c")), QoS::AtMostOnce, false, now.unix_ms);
        let packets = sent(&mut core, Version::V311);
        let topics: Vec<&str> = packets
            .iter()
            .map(|packet| match packet {
                Packet::Publish(publish) => publish.topic.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(topics, ["a", "c"], "b waits for the window of 1; QoS 0 does not");
        let Packet::Publish(first) = &packets[0] else { unreachable!() };
        let ack = Packet::PubAck(Ack {
            packet_id: first.packet_id.unwrap(),
            reason: ReasonCode::Success,
            properties: Properties::default(),
        });
        assert!(matches!(feed(&mut core, Version::V311, ack, now, &gate), Step::Handled));
        assert!(matches!(&sent(&mut core, Version::V311)[..], [Packet::Publish(p)] if p.topic == "b"));
        assert_eq!(core.take_finished(), [10], "the acknowledged stored record is finished");
        assert_eq!(core.take_message_counts(), (0, 3));
        let ending = core.end(Some(3600));
        assert_eq!(ending.unfinished.len(), 1, "b is kept for redelivery");
        assert_eq!(ending.unfinished[0].0, Some(11));
    }

    #[test]
    fn a_replay_sends_only_what_iot_receive_still_allows() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V311, &terms(60, 10, Some(3600)), &gate);
        core.replay(vec![(1, message("secret/x")), (2, message("open"))], clock.at(0.0).unix_ms, &gate);
        assert!(matches!(&sent(&mut core, Version::V311)[..], [Packet::Publish(p)] if p.topic == "open"));
        assert_eq!(core.take_finished(), [1], "the denied record is finished, not kept");
    }

    #[test]
    fn signals_end_the_connection_with_aws_reason_codes() {
        let gate = FakeGate::new();
        for (signal, reason, end) in [
            (Signal::TakenOver, ReasonCode::SessionTakenOver, End::TakenOver),
            (Signal::Revoked, ReasonCode::NotAuthorized, End::Revoked),
            (Signal::Kicked { clean_session: true, prevent_will: true }, ReasonCode::AdministrativeAction, End::Kicked),
            (Signal::SteppedDown, ReasonCode::ServerShuttingDown, End::SteppedDown),
        ] {
            let (mut core, _clock) = start(Version::V5, &terms(60, 10, Some(3600)), &gate);
            assert_eq!(core.obey(signal), end);
            assert_eq!(disconnect_reason(&sent(&mut core, Version::V5)), Some(reason));
            let ending = core.end(Some(3600));
            let kicked = matches!(signal, Signal::Kicked { .. });
            assert_eq!((ending.expiry_secs.is_none(), ending.prevent_will), (kicked, kicked));
        }
    }

    #[test]
    fn malformed_input_closes_with_the_decoder_reason_and_a_quiet_client_keeps_a_small_buffer() {
        let gate = FakeGate::new();
        let (mut core, clock) = start(Version::V5, &terms(60, 10, None), &gate);
        assert!(core.read_buffer().capacity() <= IDLE_READ, "an idle connection holds a small read buffer");
        core.read_buffer().extend_from_slice(&[0x00, 0x00]);
        assert!(matches!(core.poll(clock.at(0.0), &gate), Step::Close(End::Malformed(_))));
        assert!(disconnect_reason(&sent(&mut core, Version::V5)).is_some());
    }
}
