//! One device connection: CONNECT, then packets in and deliveries out, with
//! every action checked against the connection's permissions.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferrocore_mqtt::{
    Ack, ConnAck, Connect, ConnectionState, DecodeError, Disconnect, Packet, Properties, Publish, PublishRef, QoS,
    ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe, Version, Will, decode, encode, encode_publish, topic,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use ferrocore_model::ResourceKind;

use crate::authorize::Refusal;
use crate::events::{self, Presence};
use crate::negotiate::{ServerLimits, expiry_at_end, negotiate};
use crate::outbox::{Outbox, Outgoing};
use crate::queue;
use crate::router::{ClientEntry, Control, Delivery, PermissionsCell, Signal, Subscription, Unfinished};
use crate::sessions::SessionWrite;
use crate::{Identity, Origin, Shared, now_ms};
use ferrocore_message::Message;

/// How long a new connection may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const QUEUE_DEPTH: usize = 1024;
/// Deliveries taken from the queue before the output is written.
const OUT_BATCH: usize = 64;
/// Output buffered past this many bytes is written without waiting for the batch to end.
const OUT_FLUSH_BYTES: usize = 16 * 1024;
/// A read asks for at least this much room while packets stream in.
const READ_CHUNK: usize = 4096;
/// Writes below this size are a trickle (keep-alives, an occasional message): their
/// buffer is released afterwards.
const TRICKLE: usize = 256;
/// The read buffer a connection waits with after a read that did not fill it (a
/// trickle): idle connections hold this much; one that fills it reads in chunks.
const IDLE_READ: usize = 64;
/// How long the last packets of a connection that is told to leave may take to write.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_millis(250);

/// Why a connection ended, for the log line and lifecycle reporting.
#[derive(Debug)]
enum End {
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
}

impl From<Signal> for End {
    fn from(signal: Signal) -> Self {
        match signal {
            Signal::TakenOver => Self::TakenOver,
            Signal::Revoked => Self::Revoked,
            Signal::Kicked { .. } => Self::Kicked,
        }
    }
}

impl End {
    /// The lifecycle event's `disconnectReason`, and whether the client chose to leave.
    fn lifecycle_reason(&self) -> (&'static str, bool) {
        match self {
            Self::ClientDisconnected => ("CLIENT_INITIATED_DISCONNECT", true),
            Self::ConnectionLost => ("CONNECTION_LOST", false),
            Self::KeepAliveTimeout => ("MQTT_KEEP_ALIVE_TIMEOUT", false),
            Self::TakenOver => ("DUPLICATE_CLIENTID", false),
            Self::Forbidden(_) => ("FORBIDDEN_ACCESS", false),
            Self::Revoked => ("AUTH_ERROR", false),
            Self::Kicked => ("API_INITIATED_DISCONNECT", false),
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
        }
    }
}

struct Session<S> {
    stream: S,
    /// Bytes read and not yet decoded.
    buffer: BytesMut,
    /// PUBLISH packets encoded since the last write, for the messages-out counter.
    sent: u64,
    /// The size of the last read (see [`Session::prepare_read`]).
    last_read: usize,
    /// Encoded packets not yet written: written together before the task waits,
    /// so a burst of deliveries or acknowledgements costs one TLS record and one syscall.
    out: BytesMut,
    version: Version,
    client_id: String,
    permissions: PermissionsCell,
    shared: Arc<Shared>,
    presence: Presence,
    /// An MQTT 5 DISCONNECT may change the session expiry.
    expiry_on_disconnect: Option<u32>,
    /// Whether the session started with no expiry (MQTT 5 forbids raising it at DISCONNECT).
    expiry_was_zero: bool,
    /// DeleteConnection asked for the session to go, or for no will.
    discard_session: bool,
    prevent_will: bool,
    /// Keep-alive and inbound topic aliases.
    state: ConnectionState,
    /// What goes out: the QoS 1 window, messages waiting for it, finished stored records.
    outbox: Outbox,
    quota: crate::quota::QuotaWindow,
    /// Signals that end the connection (take-over, revocation, DeleteConnection).
    control: Control,
}

/// Checks a will at CONNECT: AWS refuses QoS 2, invalid topics and topics the
/// client may not publish (or, for a retained will, retain-publish) to.
fn check_will(will: &Will, permissions: &ferrocore_registry::Permissions, shared: &Shared) -> Result<(), ReasonCode> {
    if will.qos == QoS::ExactlyOnce {
        return Err(ReasonCode::QoSNotSupported);
    }
    match shared.may_publish(permissions, &will.topic, will.retain) {
        Ok(_) => Ok(()),
        Err(Refusal::InvalidTopic(_)) => Err(ReasonCode::TopicNameInvalid),
        Err(Refusal::Reserved | Refusal::NotAuthorized) => Err(ReasonCode::NotAuthorized),
    }
}

/// Serves one MQTT connection from its first byte to its end. The three phases are
/// separate futures, and the first and last are boxed: the state an idle connection
/// holds is the session and its run loop, not what connecting and leaving needed.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    identity: Identity,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    connection: u64,
) {
    let Some(mut opened) = Box::pin(open(stream, identity, peer, shared, connection)).await else {
        return;
    };
    let end = match opened.ended.take() {
        Some(end) => end,
        None => opened.session.run(&mut opened.receiver).await,
    };
    Box::pin(finish(opened, end)).await;
}

/// A connection past its CONNACK.
struct Opened<S> {
    session: Session<S>,
    receiver: queue::Receiver<Delivery>,
    identity: Identity,
    connection: u64,
    /// The session expiry asked for at CONNECT (`None`: the session ends with the connection).
    expiry_secs: Option<u64>,
    will: Option<Box<Will>>,
    /// Set when the connection was lost before its run loop started.
    ended: Option<End>,
}

/// CONNECT to CONNACK: checks, permissions, the router's entry, the lifecycle event and
/// the replay of a resumed session.
async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    identity: Identity,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    connection: u64,
) -> Option<Opened<S>> {
    let mut buffer = BytesMut::with_capacity(4096);
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, read_connect(&mut stream, &mut buffer, &shared)).await {
        Ok(Ok(connect)) => connect,
        Ok(Err(reason)) => {
            tracing::info!(principal = identity.principal_id(), reason = %reason, "connection refused before CONNECT");
            return None;
        }
        Err(_) => {
            tracing::info!(principal = identity.principal_id(), "no CONNECT in time");
            return None;
        }
    };
    let version = connect.version;
    let refuse = async |stream: &mut S, reason: ReasonCode| {
        let ack = Packet::ConnAck(ConnAck { session_present: false, reason, properties: Properties::default() });
        let mut out = BytesMut::new();
        encode(&ack, version, &mut out);
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    };
    let limits = ServerLimits {
        max_client_id_len: shared.max_client_id_len,
        max_packet_size: shared.max_packet_size,
        session_expiry_secs: shared.session_expiry_secs,
    };
    let terms = match negotiate(&connect, limits, || uuid::Uuid::new_v4().simple().to_string()) {
        Ok(terms) => terms,
        Err(reason) => {
            refuse(&mut stream, reason).await;
            tracing::info!(principal = identity.principal_id(), "connection refused: client id not valid");
            return None;
        }
    };
    let client_id = terms.client_id.clone();
    // Writes after this may not be in the permissions read below (see `rechecks::watch`).
    let seen_generation = shared.registry.permission_generation();
    // Boxed here and below: what runs once per connection must not enlarge the state
    // every idle connection holds (see `footprint` in lib.rs).
    let permissions = match Box::pin(shared.permissions_of(&identity, &client_id)).await {
        Ok(permissions) => permissions,
        Err(err) => {
            tracing::warn!(principal = identity.principal_id(), error = %err, "cannot read the connection's permissions");
            refuse(&mut stream, ReasonCode::ServerUnavailable).await;
            return None;
        }
    };
    if !permissions.allows("iot:Connect", &shared.arn(ResourceKind::Client, &client_id)) {
        metrics::counter!("ferrocore_mqtt_authorization_denied_total", "action" => "connect").increment(1);
        shared.forget_permissions(&identity, &client_id);
        refuse(&mut stream, ReasonCode::NotAuthorized).await;
        tracing::info!(client_id = %client_id, principal = identity.principal_id(), "connection refused: iot:Connect denied");
        return None;
    }
    if let Some(will) = &connect.will
        && let Err(reason) = check_will(will, &permissions, &shared)
    {
        shared.forget_permissions(&identity, &client_id);
        refuse(&mut stream, reason).await;
        tracing::info!(client_id = %client_id, reason = ?reason, "connection refused: will not accepted");
        return None;
    }
    let (sender, receiver) = queue::channel(QUEUE_DEPTH);
    let control = Control::new();
    let control_receiver = control.clone();
    let cell: PermissionsCell = Arc::new(std::sync::RwLock::new(permissions));
    let entry = ClientEntry {
        client_id: client_id.clone(),
        connection,
        identity: identity.clone(),
        permissions: cell.clone(),
        sender,
        control,
    };
    // One step under the router's lock: from here every message routed to this
    // client id is either in the resumed queue or in this connection's queue.
    let watched = entry.clone();
    let connected = shared.router.connect(entry, connect.clean_start, now_ms());
    Box::pin(crate::rechecks::watch(&shared, watched, seen_generation)).await;
    let session_present = connected.session_present;
    shared.store_session_writes(&client_id, connected.writes).await;
    let presence = Presence {
        client_id: client_id.clone(),
        session_id: uuid::Uuid::new_v4(),
        principal: identity.principal_id().to_string(),
        version: connected.version,
    };
    let mut session = Session {
        stream,
        buffer,
        sent: 0,
        last_read: 0,
        out: BytesMut::new(),
        version,
        client_id: client_id.clone(),
        permissions: cell,
        shared: shared.clone(),
        presence,
        expiry_on_disconnect: None,
        expiry_was_zero: terms.expiry_secs.is_none(),
        discard_session: false,
        prevent_will: false,
        state: ConnectionState::new(terms.keep_alive, terms.topic_alias_maximum, std::time::Instant::now()),
        outbox: Outbox::new(terms.receive_maximum, terms.client_max_packet),
        quota: crate::quota::QuotaWindow::new(shared.limits.rate, std::time::Instant::now()),
        control: control_receiver,
    };
    let accepted = Packet::ConnAck(ConnAck { session_present, reason: ReasonCode::Success, properties: terms.connack });
    metrics::gauge!("ferrocore_mqtt_connections").increment(1.0);
    tracing::info!(client_id = %client_id, principal = identity.principal_id(), version = ?version, keep_alive = terms.keep_alive, "client connected");
    let ended = match session.send(&accepted).await {
        Ok(()) => {
            Box::pin(shared.store_changed(events::connected(&shared, &session.presence, &peer.ip().to_string()))).await;
            session.replay(connected.replay).await.err().map(|_| End::ConnectionLost)
        }
        Err(_) => Some(End::ConnectionLost),
    };
    let expiry_secs = terms.expiry_secs;
    Some(Opened { session, receiver, identity, connection, expiry_secs, will: connect.will.map(Box::new), ended })
}

/// The end of a connection: the session parked or gone, the will, the lifecycle event.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(opened: Opened<S>, end: End) {
    let Opened { mut session, mut receiver, identity, connection, expiry_secs, will, .. } = opened;
    let shared = session.shared.clone();
    let client_id = session.client_id.clone();
    // A connection told to leave may have noticed it as a failed write.
    let signal = session.control.current();
    let end = match signal {
        Some(signal) if matches!(end, End::ConnectionLost) => End::from(signal),
        _ => end,
    };
    if let Some(Signal::Kicked { clean_session, prevent_will }) = signal {
        session.discard_session |= clean_session;
        session.prevent_will |= prevent_will;
    }
    let expiry_secs = expiry_at_end(expiry_secs, session.expiry_on_disconnect, session.discard_session);
    let mut writes = session.finished_writes();
    let (unfinished, finished) = std::mem::replace(&mut session.outbox, Outbox::new(1, 0)).into_unfinished();
    writes.extend(finished.into_iter().map(|seq| SessionWrite::Dequeue { client_id: client_id.clone(), seq }));
    writes.extend(match expiry_secs {
        Some(secs) => shared.router.park(&client_id, connection, now_ms() + secs * 1000, unfinished, &mut receiver),
        None => shared.router.disconnect(&client_id, connection, unfinished, now_ms()),
    });
    shared.store_session_writes(&client_id, writes).await;
    shared.forget_permissions(&identity, &client_id);
    shared.rechecks.unwatch(connection, &client_id);
    metrics::gauge!("ferrocore_mqtt_connections").decrement(1.0);
    tracing::info!(client_id = %client_id, reason = %end, "client disconnected");
    let (reason, client_initiated) = end.lifecycle_reason();
    if !client_initiated
        && !session.prevent_will
        && let Some(will) = &will
    {
        // The will's expiry counts from the disconnect.
        let message = Message::published(will.topic.clone(), will.payload.clone(), &will.properties, now_ms());
        if will.retain
            && let Err(err) = Box::pin(shared.retained.set(&message, will.qos, now_ms())).await
        {
            tracing::error!(client_id = %client_id, error = %err, "cannot store a retained will");
        }
        let origin =
            Origin { client_id: Some(&client_id), principal: Some(identity.principal_id()), ..Origin::default() };
        Box::pin(shared.store_changed(shared.route(&message, will.qos, will.retain, origin))).await;
    }
    Box::pin(shared.store_changed(events::disconnected(&shared, &session.presence, reason, client_initiated))).await;
    let _ = session.stream.shutdown().await;
}

/// Why a connection ended before its CONNECT.
#[derive(Debug, thiserror::Error)]
enum BeforeConnect {
    #[error("the first packet is not CONNECT")]
    NotConnect,
    #[error("closed before CONNECT")]
    Closed,
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn read_connect<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    shared: &Shared,
) -> Result<Connect, BeforeConnect> {
    loop {
        match decode(buffer, None, shared.max_packet_size)? {
            Some(Packet::Connect(connect)) => return Ok(*connect),
            Some(_) => return Err(BeforeConnect::NotConnect),
            None => {}
        }
        if stream.read_buf(buffer).await? == 0 {
            return Err(BeforeConnect::Closed);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Queues a packet for the next flush (written at once past [`OUT_FLUSH_BYTES`]).
    async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        encode(packet, self.version, &mut self.out);
        self.flush_if_full().await
    }

    async fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.out.len() >= OUT_FLUSH_BYTES { self.flush().await } else { Ok(()) }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Counted per write, not per message: the counter is shared by every connection.
        self.shared.metrics.messages_out.increment(std::mem::take(&mut self.sent));
        let Self { stream, out, control, .. } = self;
        // TLS may keep encrypted bytes back until flushed (when the socket was full).
        let write = async {
            stream.write_all(out).await?;
            stream.flush().await
        };
        // A client that stops reading blocks the write: a signal must still get through.
        let result = tokio::select! {
            biased;
            written = write => written,
            _ = control.signalled() => Err(std::io::Error::other("told to leave while writing")),
        };
        // A trickle's buffer is released; a stream's is kept for the next batch.
        if self.out.len() < TRICKLE {
            self.out = BytesMut::new();
        } else {
            self.out.clear();
        }
        result
    }

    /// Room for the next read: a little while the client trickles, a chunk while it streams.
    fn prepare_read(&mut self) {
        if self.buffer.is_empty() && self.last_read < IDLE_READ {
            if self.buffer.capacity() > IDLE_READ {
                self.buffer = BytesMut::with_capacity(IDLE_READ);
            }
        } else {
            self.buffer.reserve(READ_CHUNK);
        }
    }

    /// Ends the connection with a reason: MQTT 5 clients are told with DISCONNECT.
    /// A client that does not read cannot hold the connection open.
    async fn close(&mut self, reason: ReasonCode, end: End) -> End {
        if self.version == Version::V5 {
            encode(
                &Packet::Disconnect(Disconnect { reason, properties: Properties::default() }),
                self.version,
                &mut self.out,
            );
        }
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.flush()).await;
        end
    }

    /// Ends the connection as a signal asks.
    async fn obey(&mut self, signal: Signal) -> End {
        let reason = match signal {
            Signal::TakenOver => ReasonCode::SessionTakenOver,
            Signal::Revoked => ReasonCode::NotAuthorized,
            Signal::Kicked { clean_session, prevent_will } => {
                self.discard_session = clean_session;
                self.prevent_will = prevent_will;
                ReasonCode::AdministrativeAction
            }
        };
        self.close(reason, End::from(signal)).await
    }

    /// The store writes that remove finished messages of the stored queue (and counts the dropped).
    fn finished_writes(&mut self) -> Vec<SessionWrite> {
        for dropped in self.outbox.take_dropped() {
            metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => dropped.label()).increment(1);
        }
        let client_id = &self.client_id;
        self.outbox
            .take_finished()
            .into_iter()
            .map(|seq| SessionWrite::Dequeue { client_id: client_id.clone(), seq })
            .collect()
    }

    /// The loop an idle connection waits in. What it rarely does (leaving, storing
    /// acknowledged queue records, a throttling pause) is boxed, so its state stays small.
    async fn run(&mut self, outgoing: &mut queue::Receiver<Delivery>) -> End {
        loop {
            let signal = self.control.current();
            if let Some(signal) = signal {
                return Box::pin(self.obey(signal)).await;
            }
            while let Some(packet) = match decode(&mut self.buffer, Some(self.version), self.shared.max_packet_size) {
                Ok(packet) => packet,
                Err(err) => {
                    let reason = err.reason_code();
                    return Box::pin(self.close(reason, End::Malformed(err))).await;
                }
            } {
                self.state.received(std::time::Instant::now());
                // Boxed: the largest futures (a store commit, a shadow request) stay out of the idle state.
                if let Some(end) = Box::pin(self.handle(packet)).await {
                    return end;
                }
            }
            if self.flush().await.is_err() {
                return End::ConnectionLost;
            }
            let writes = self.finished_writes();
            if !writes.is_empty() {
                Box::pin(self.shared.store_session_writes(&self.client_id, writes)).await;
            }
            // MQTT: the server may close after 1.5 keep-alive periods without a packet.
            let idle = self.state.deadline().map_or(Duration::from_secs(u64::from(u32::MAX)), |d| {
                d.saturating_duration_since(std::time::Instant::now())
            });
            self.prepare_read();
            tokio::select! {
                biased;
                signal = self.control.signalled() => return Box::pin(self.obey(signal)).await,
                read = tokio::time::timeout(idle, self.stream.read_buf(&mut self.buffer)) => match read {
                    Err(_) => return Box::pin(self.close(ReasonCode::KeepAliveTimeout, End::KeepAliveTimeout)).await,
                    Ok(Ok(0)) | Ok(Err(_)) => return End::ConnectionLost,
                    Ok(Ok(read)) => {
                        self.last_read = read;
                        if let Some(pause) = self.quota.read(read, std::time::Instant::now()) {
                            metrics::counter!("ferrocore_mqtt_throttled_total", "quota" => "bytes").increment(1);
                            Box::pin(tokio::time::sleep(pause)).await;
                        }
                    }
                },
                // While the client's window is full, leave deliveries in the bounded queue:
                // a slow subscriber then loses messages (counted) instead of growing memory.
                message = outgoing.recv(), if self.outbox.has_room() => {
                    // Take what else is queued too, to write it in one go.
                    let mut next = message;
                    let mut taken = 0;
                    let now = now_ms();
                    loop {
                        let Some(Delivery { message, qos, retain }) = next else {
                            // Only the router closes the queue, when it parks this session.
                            return End::ConnectionLost;
                        };
                        if self.deliver((None, message), qos, retain, now).await.is_err() {
                            return End::ConnectionLost;
                        }
                        taken += 1;
                        if taken == OUT_BATCH {
                            break;
                        }
                        match outgoing.try_recv() {
                            Some(queued) => next = Some(queued),
                            None => break,
                        }
                    }
                }
            }
        }
    }

    /// Sends the QoS 1 messages a resumed session queued while the client was away
    /// (those its current iot:Receive still allows).
    async fn replay(&mut self, queued: Vec<(u64, Arc<Message>)>) -> std::io::Result<()> {
        let now = now_ms();
        for (seq, message) in queued {
            if !self.allowed("iot:Receive", &self.shared.arn(ResourceKind::Topic, &message.topic)) {
                self.outbox.skip(seq);
                continue;
            }
            self.deliver((Some(seq), message), QoS::AtLeastOnce, false, now).await?;
        }
        Ok(())
    }

    /// Sends one message now, or leaves it to the outbox (waiting for the window, or dropped).
    /// `now_ms` is read once per batch of deliveries.
    async fn deliver(&mut self, unfinished: Unfinished, qos: QoS, retain: bool, now_ms: u64) -> std::io::Result<()> {
        match self.outbox.offer(unfinished, qos, retain, now_ms) {
            Some(outgoing) => self.send_publish(outgoing, now_ms).await,
            None => Ok(()),
        }
    }

    /// Writes one PUBLISH: QoS 1 when it has a packet id, else QoS 0.
    async fn send_publish(
        &mut self,
        Outgoing { message, packet_id, retain }: Outgoing,
        now_ms: u64,
    ) -> std::io::Result<()> {
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
        encode_publish(publish, self.version, &mut self.out);
        self.sent += 1;
        self.flush_if_full().await
    }

    fn allowed(&self, action: &'static str, resource: &str) -> bool {
        let allowed = crate::router::allows(&self.permissions, action, resource);
        if !allowed {
            metrics::counter!("ferrocore_mqtt_authorization_denied_total", "action" => action).increment(1);
        }
        allowed
    }

    /// Handles one packet; `Some` ends the connection.
    async fn handle(&mut self, packet: Packet) -> Option<End> {
        let result = match packet {
            Packet::Publish(publish) => return self.publish(publish).await,
            Packet::Subscribe(subscribe) => return self.subscribe(subscribe).await,
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe).await,
            Packet::PingReq => self.send(&Packet::PingResp).await,
            // MQTT 5 reason 0x04 asks for the will to be sent anyway.
            Packet::Disconnect(disconnect) if disconnect.reason as u8 == 0x04 => {
                return Some(End::ConnectionLost);
            }
            Packet::Disconnect(disconnect) => {
                let expiry = disconnect.properties.session_expiry_interval;
                if self.expiry_was_zero && expiry.is_some_and(|secs| secs > 0) {
                    // MQTT 5 §3.14.2.2.2: a session that started without expiry cannot get one now.
                    return Some(
                        self.close(ReasonCode::ProtocolError, End::Refused("session expiry raised at DISCONNECT"))
                            .await,
                    );
                }
                self.expiry_on_disconnect = expiry;
                return Some(End::ClientDisconnected);
            }
            Packet::PubAck(ack) => {
                let mut result = Ok(());
                let now = now_ms();
                for outgoing in self.outbox.acknowledged(ack.packet_id, now) {
                    result = self.send_publish(outgoing, now).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                return Some(self.close(ReasonCode::QoSNotSupported, End::Unsupported("QoS 2")).await);
            }
            _ => {
                return Some(self.close(ReasonCode::ProtocolError, End::Refused("unexpected packet")).await);
            }
        };
        result.err().map(|_| End::ConnectionLost)
    }

    async fn publish(&mut self, mut publish: Publish) -> Option<End> {
        if publish.qos == QoS::ExactlyOnce {
            return Some(self.close(ReasonCode::QoSNotSupported, End::Unsupported("QoS 2")).await);
        }
        if let Err(reason) = self.state.resolve_topic(&mut publish) {
            return Some(self.close(reason, End::Refused("topic alias")).await);
        }
        let decision = {
            let permissions = self.permissions.read().unwrap_or_else(|e| e.into_inner());
            self.shared.may_publish(&permissions, &publish.topic, publish.retain)
        };
        let resource = match decision {
            Ok(resource) => resource,
            Err(Refusal::InvalidTopic(_)) => {
                return Some(self.close(ReasonCode::TopicNameInvalid, End::Refused("invalid topic name")).await);
            }
            Err(Refusal::Reserved | Refusal::NotAuthorized) => {
                let end = End::Forbidden(format!("iot:Publish on {}", publish.topic));
                return match (self.version, publish.packet_id) {
                    (Version::V5, Some(packet_id)) => {
                        let reason = ReasonCode::NotAuthorized;
                        let ack = Ack { packet_id, reason, properties: Properties::default() };
                        self.send(&Packet::PubAck(ack)).await.err().map(|_| End::ConnectionLost)
                    }
                    _ => Some(self.close(ReasonCode::NotAuthorized, end).await),
                };
            }
        };
        self.shared.metrics.messages_in.increment(1);
        if !self.quota.admit_publish(std::time::Instant::now()) {
            // AWS discards publishes over the per-connection quota.
            metrics::counter!("ferrocore_mqtt_throttled_total", "quota" => "publishes").increment(1);
            return self.acknowledge(publish.packet_id).await;
        }
        let message = Message::published(publish.topic, publish.payload, &publish.properties, now_ms());
        let origin = Origin { client_id: Some(&self.client_id), principal: Some(&self.presence.principal), hops: 0 };
        if let Err(err) = self.shared.accept_publish(&message, publish.qos, publish.retain, &resource, origin).await {
            tracing::error!(client_id = %self.client_id, error = %err, "cannot store a retained or queued message");
            // Nothing is acknowledged that is not durable.
            return Some(self.close(ReasonCode::UnspecifiedError, End::Refused("message not stored")).await);
        }
        self.acknowledge(publish.packet_id).await
    }

    /// PUBACK for a QoS 1 publish.
    async fn acknowledge(&mut self, packet_id: Option<u16>) -> Option<End> {
        let packet_id = packet_id?;
        let ack = Ack { packet_id, reason: ReasonCode::Success, properties: Properties::default() };
        self.send(&Packet::PubAck(ack)).await.err().map(|_| End::ConnectionLost)
    }

    async fn subscribe(&mut self, subscribe: Subscribe) -> Option<End> {
        if !subscribe.properties.subscription_identifiers.is_empty() {
            // CONNACK said Subscription Identifier Available = 0.
            let end = End::Unsupported("subscription identifiers");
            return Some(self.close(ReasonCode::SubscriptionIdentifiersNotSupported, end).await);
        }
        let (mut reasons, mut granted_filters, mut retained_for) = (Vec::new(), Vec::new(), Vec::new());
        let limits = self.shared.limits.clone();
        for (index, (filter, options)) in subscribe.filters.iter().enumerate() {
            // `$share/<group>/<filter>`: the limits and checks apply to the filter part.
            let inner = match topic::shared_subscription(filter) {
                None => filter.as_str(),
                // [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
                Some(Ok(_)) if options.no_local => {
                    return Some(
                        self.close(ReasonCode::ProtocolError, End::Refused("No Local on a shared subscription")).await,
                    );
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
            let over_quota = index >= limits.filters_per_subscribe
                || !self.shared.router.can_subscribe(&self.client_id, filter, limits.subscriptions_per_connection);
            if over_quota {
                reasons.push(ReasonCode::QuotaExceeded);
                continue;
            }
            if !self.allowed("iot:Subscribe", &self.shared.arn(ResourceKind::TopicFilter, filter)) {
                if self.version == Version::V311 {
                    // AWS closes MQTT 3.1.1 connections on an unauthorized subscribe.
                    return Some(End::Forbidden(format!("iot:Subscribe on {filter}")));
                }
                reasons.push(ReasonCode::NotAuthorized);
                continue;
            }
            let granted = options.qos.min(QoS::AtLeastOnce);
            let new = self.shared.router.subscribe(&self.client_id, filter, Subscription::granted(options, granted));
            // Retain Handling: 0 sends the retained copy, 1 only for a new subscription, 2 never.
            let wants_retained = match options.retain_handling {
                0 => true,
                1 => new == Some(true),
                _ => false,
            };
            if wants_retained {
                retained_for.push((filter.clone(), granted));
            }
            granted_filters.push(filter.clone());
            reasons.push(if granted == QoS::AtLeastOnce { ReasonCode::GrantedQoS1 } else { ReasonCode::Success });
        }
        let ack = Packet::SubAck(SubAck { packet_id: subscribe.packet_id, reasons, properties: Properties::default() });
        if self.send(&ack).await.is_err() {
            return Some(End::ConnectionLost);
        }
        for (filter, granted) in retained_for.iter().filter(|(f, _)| !f.starts_with("$share/")) {
            // AWS sends the retained copy only when the filter is exactly its topic
            // (and never to a shared subscription).
            if let Some(retained) = self.shared.retained.get(filter, now_ms()) {
                let qos = retained.qos.min(*granted);
                let resource = self.shared.arn(ResourceKind::Topic, filter);
                self.shared.router.deliver_retained(&self.client_id, &retained.message, qos, &resource);
            }
        }
        self.shared
            .store_changed(events::subscriptions(&self.shared, &self.presence, "subscribed", &granted_filters))
            .await;
        None
    }

    async fn unsubscribe(&mut self, unsubscribe: Unsubscribe) -> std::io::Result<()> {
        let mut removed = Vec::new();
        let mut reasons = Vec::new();
        for filter in &unsubscribe.filters {
            if self.shared.router.unsubscribe(&self.client_id, filter) {
                removed.push(filter.clone());
                reasons.push(ReasonCode::Success);
            } else {
                reasons.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        let ack =
            Packet::UnsubAck(UnsubAck { packet_id: unsubscribe.packet_id, reasons, properties: Properties::default() });
        self.send(&ack).await?;
        self.shared.store_changed(events::subscriptions(&self.shared, &self.presence, "unsubscribed", &removed)).await;
        Ok(())
    }
}
