//! One device connection: CONNECT, then packets in and deliveries out, with
//! every action checked against the connection's permissions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferrocore_mqtt::{ConnAck, Connect, DecodeError, Packet, Properties, QoS, ReasonCode, Will, decode, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use ferrocore_model::ResourceKind;

use crate::authorize::Refusal;
use crate::events::{self, Presence};
use crate::negotiate::{ServerLimits, negotiate};
use crate::pipeline::PeersWait;
use crate::queue;
use crate::router::{ClientEntry, Control, Delivery, PermissionsCell};
use crate::session_core::{End, Ending, Gate, Grant, Inbound, Now, SessionCore, Step};
use crate::sessions::SessionWrite;
use crate::{Identity, Limits, Origin, Shared, now_ms};
use ferrocore_message::Message;

/// How long a new connection may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const QUEUE_DEPTH: usize = 1024;
/// Deliveries taken from the queue before the output is written.
const OUT_BATCH: usize = 64;
/// Output buffered past this many bytes is written without waiting for the batch to end.
const OUT_FLUSH_BYTES: usize = 16 * 1024;
/// How long the last packets of a connection that is told to leave may take to write.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_millis(250);
/// QoS 1 publishes waiting for other nodes beyond which the connection stops reading.
const ACKS_WAITING: usize = 256;

/// The task side of one connection: the stream, the shared state the session core's
/// steps touch, and the core itself.
struct Session<S> {
    stream: S,
    core: SessionCore,
    client_id: String,
    permissions: PermissionsCell,
    shared: Arc<Shared>,
    presence: Presence,
    /// Signals that end the connection (take-over, revocation, DeleteConnection).
    control: Control,
    /// In a cluster, a persistent session's expiry in seconds: its record is stored
    /// while it is live too, so it outlives this node.
    stored_live: Option<u64>,
    /// In a cluster, the QoS 1 publishes not acknowledged yet because one before
    /// them waits for other nodes: acknowledged in the order they came.
    acks: VecDeque<Due>,
}

/// A QoS 1 acknowledgement in line: its packet id, its reason code, and what the
/// publish still waits for on other nodes.
struct Due {
    packet_id: u16,
    reason: ReasonCode,
    wait: Option<PeersWait>,
}

/// The session core's view of the gateway, for one connection.
struct ConnectionGate<'a> {
    shared: &'a Shared,
    permissions: &'a PermissionsCell,
    client_id: &'a str,
}

impl ConnectionGate<'_> {
    fn allowed(&self, action: &'static str, resource: &str) -> bool {
        let allowed = crate::router::allows(self.permissions, action, resource);
        if !allowed {
            metrics::counter!("ferrocore_mqtt_authorization_denied_total", "action" => action).increment(1);
        }
        allowed
    }
}

impl Gate for ConnectionGate<'_> {
    fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    fn may_publish(&self, topic: &str, retain: bool) -> Result<String, Refusal> {
        let permissions = self.permissions.read().unwrap_or_else(|e| e.into_inner());
        self.shared.may_publish(&permissions, topic, retain)
    }

    fn may_subscribe(&self, filter: &str) -> bool {
        self.allowed("iot:Subscribe", &self.shared.arn(ResourceKind::TopicFilter, filter))
    }

    fn may_receive(&self, topic: &str) -> bool {
        self.allowed("iot:Receive", &self.shared.arn(ResourceKind::Topic, topic))
    }

    fn is_subscribed(&self, filter: &str) -> bool {
        self.shared.router.is_subscribed(self.client_id, filter)
    }

    fn subscription_count(&self) -> usize {
        self.shared.router.subscription_count(self.client_id)
    }
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
    let end = opened.session.run(&mut opened.receiver).await;
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
    if let Some(peers) = shared.peers.get() {
        if !peers.reachable() {
            shared.forget_permissions(&identity, &client_id);
            refuse(&mut stream, ReasonCode::ServerUnavailable).await;
            tracing::warn!(client_id = %client_id, "connection refused: the cluster's message bus is unreachable");
            return None;
        }
        // The client id is unique in the cluster: take it (and its session) from
        // another node first — only for a client allowed to connect as it.
        let taken = match Box::pin(peers.claim(&client_id)).await {
            Ok(version) => {
                let loaded = Box::pin(crate::upkeep::load_session(&shared, &client_id)).await;
                // Lifecycle version numbers count on from the last node's.
                shared.router.note_version(&client_id, version, now_ms());
                loaded.map_err(Unclaimed::Session)
            }
            Err(err) => Err(Unclaimed::Peers(err)),
        };
        if let Err(err) = taken {
            tracing::warn!(client_id = %client_id, error = %err, "connection refused: the client id cannot be taken in the cluster");
            shared.forget_permissions(&identity, &client_id);
            refuse(&mut stream, ReasonCode::ServerUnavailable).await;
            return None;
        }
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
    let stored_live = terms.expiry_secs.filter(|_| shared.peers.get().is_some());
    let presence = Presence {
        client_id: client_id.clone(),
        session_id: uuid::Uuid::new_v4(),
        principal: identity.principal_id().to_string(),
        version: connected.version,
    };
    let accepted = ConnAck { session_present, reason: ReasonCode::Success, properties: terms.connack.clone() };
    let now = Now::read();
    let core = SessionCore::new(version, &terms, accepted, &shared.limits, shared.max_packet_size, buffer, now);
    let mut session = Session {
        stream,
        core,
        client_id: client_id.clone(),
        permissions: cell,
        shared: shared.clone(),
        presence,
        control: control_receiver,
        stored_live,
        acks: VecDeque::new(),
    };
    Box::pin(session.store_live_session()).await;
    metrics::gauge!("ferrocore_mqtt_connections").increment(1.0);
    tracing::info!(client_id = %client_id, principal = identity.principal_id(), version = ?version, keep_alive = terms.keep_alive, "client connected");
    Box::pin(shared.store_changed(events::connected(&shared, &session.presence, &peer.ip().to_string()))).await;
    let (core, gate) = session.core_and_gate();
    core.replay(connected.replay, now.unix_ms, &gate);
    Some(Opened {
        session,
        receiver,
        identity,
        connection,
        expiry_secs: terms.expiry_secs,
        will: connect.will.map(Box::new),
    })
}

/// The end of a connection: the session parked or gone, the will, the lifecycle event.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(opened: Opened<S>, end: End) {
    let Opened { session, mut receiver, identity, connection, expiry_secs, will } = opened;
    let Session { mut stream, mut core, client_id, shared, presence, control, .. } = session;
    // Whatever happens below, a node taking this client id over waits for the session writes only.
    let ended = EndOnDrop(control.clone());
    // A connection told to leave may have noticed it as a failed write.
    let signal = control.current();
    let end = match signal {
        Some(signal) if matches!(end, End::ConnectionLost) => End::from(signal),
        _ => end,
    };
    if let Some(signal) = signal {
        core.note_kick(signal);
    }
    let Ending { expiry_secs, unfinished, finished, prevent_will } = core.end(expiry_secs);
    // A node cut off from its cluster leaves like a dead one: the router let go of
    // the session already, and the store keeps it for the node that takes it.
    let stepped_down = end == End::SteppedDown;
    if !stepped_down {
        let mut writes: Vec<SessionWrite> = SessionWrite::dequeues(&client_id, finished).collect();
        writes.extend(match expiry_secs {
            Some(secs) => shared.router.park(&client_id, connection, now_ms() + secs * 1000, unfinished, &mut receiver),
            None => shared.router.disconnect(&client_id, connection, unfinished, now_ms()),
        });
        shared.store_session_writes(&client_id, writes).await;
    }
    drop(ended);
    shared.forget_permissions(&identity, &client_id);
    shared.rechecks.unwatch(connection, &client_id);
    metrics::gauge!("ferrocore_mqtt_connections").decrement(1.0);
    tracing::info!(client_id = %client_id, reason = %end, "client disconnected");
    if stepped_down {
        let _ = stream.shutdown().await;
        return;
    }
    let (reason, client_initiated) = end.lifecycle_reason();
    if !client_initiated
        && !prevent_will
        && let Some(will) = &will
    {
        // The will's expiry counts from the disconnect.
        let message = Message::published(will.topic.clone(), will.payload.clone(), &will.properties, now_ms());
        if will.retain
            && let Err(err) = Box::pin(shared.set_retained(&message, will.qos)).await
        {
            tracing::error!(client_id = %client_id, error = %err, "cannot store a retained will");
        }
        let origin =
            Origin { client_id: Some(&client_id), principal: Some(identity.principal_id()), ..Origin::default() };
        Box::pin(shared.store_changed(shared.route(&message, will.qos, will.retain, origin))).await;
    }
    Box::pin(shared.store_changed(events::disconnected(&shared, &presence, reason, client_initiated))).await;
    let _ = stream.shutdown().await;
}

/// Tells whoever waits for a connection's end (a node taking its client id) once dropped.
struct EndOnDrop(Control);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Why a cluster node could not take a client id from the others.
#[derive(Debug, thiserror::Error)]
enum Unclaimed {
    #[error(transparent)]
    Peers(crate::peers::PeersError),
    #[error("cannot load its stored session: {0}")]
    Session(ferrocore_store::StoreError),
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
    /// The core, and its view of the gateway.
    fn core_and_gate(&mut self) -> (&mut SessionCore, ConnectionGate<'_>) {
        let gate = ConnectionGate { shared: &self.shared, permissions: &self.permissions, client_id: &self.client_id };
        (&mut self.core, gate)
    }

    /// Writes the core's output: together, before the task waits, so a burst of
    /// deliveries or acknowledgements costs one TLS record and one syscall.
    async fn flush(&mut self) -> std::io::Result<()> {
        // Counted per write, not per message: the counters are shared by every connection.
        let (received, sent) = self.core.take_message_counts();
        if received > 0 {
            self.shared.metrics.messages_in.increment(received);
        }
        if self.core.output().is_empty() {
            return Ok(());
        }
        self.shared.metrics.messages_out.increment(sent);
        let Self { stream, core, control, .. } = self;
        // TLS may keep encrypted bytes back until flushed (when the socket was full).
        let write = async {
            stream.write_all(core.output()).await?;
            stream.flush().await
        };
        // A client that stops reading blocks the write: a signal must still get through.
        let result = tokio::select! {
            biased;
            written = write => written,
            _ = control.signalled() => Err(std::io::Error::other("told to leave while writing")),
        };
        self.core.written();
        result
    }

    async fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.core.output_full(OUT_FLUSH_BYTES) { self.flush().await } else { Ok(()) }
    }

    /// Ends the connection after writing what the core has for the client (a
    /// DISCONNECT): a client that does not read cannot hold the connection open.
    async fn close(&mut self, end: End) -> End {
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.flush()).await;
        end
    }

    /// The loop an idle connection waits in. What it rarely does (leaving, storing
    /// acknowledged queue records, a throttling pause) is boxed, so its state stays small.
    async fn run(&mut self, outgoing: &mut queue::Receiver<Delivery>) -> End {
        loop {
            if let Some(signal) = self.control.current() {
                let end = self.core.obey(signal);
                return Box::pin(self.close(end)).await;
            }
            // Read once for the packets already buffered.
            let now = Now::read();
            while self.acks.len() < ACKS_WAITING {
                let (core, gate) = self.core_and_gate();
                match core.poll(now, &gate) {
                    Step::Read => break,
                    Step::Handled => {}
                    // Boxed: the largest futures (a store commit, a shadow request) stay out of the idle state.
                    step => {
                        if let Some(end) = Box::pin(self.carry_out(step)).await {
                            return end;
                        }
                    }
                }
                if self.flush_if_full().await.is_err() {
                    return End::ConnectionLost;
                }
            }
            self.acknowledge_ready();
            if self.flush().await.is_err() {
                return End::ConnectionLost;
            }
            let finished = self.core.take_finished();
            if !finished.is_empty() {
                let writes = SessionWrite::dequeues(&self.client_id, finished).collect();
                Box::pin(self.shared.store_session_writes(&self.client_id, writes)).await;
            }
            let idle = self.core.deadline().map_or(Duration::from_secs(u64::from(u32::MAX)), |deadline| {
                deadline.saturating_duration_since(std::time::Instant::now())
            });
            tokio::select! {
                biased;
                signal = self.control.signalled() => {
                    let end = self.core.obey(signal);
                    return Box::pin(self.close(end)).await;
                }
                waited = peers_wait(&mut self.acks), if self.acks.front().is_some_and(|due| due.wait.is_some()) => {
                    match waited {
                        Ok(()) => {
                            if let Some(due) = self.acks.front_mut() {
                                due.wait = None;
                            }
                        }
                        Err(err) => return Box::pin(self.not_kept(&err)).await,
                    }
                }
                read = tokio::time::timeout(idle, self.stream.read_buf(self.core.read_buffer())), if self.acks.len() < ACKS_WAITING => match read {
                    Err(_) => {
                        if let Some(end) = self.core.timed_out(Now::read()) {
                            return Box::pin(self.close(end)).await;
                        }
                    }
                    Ok(Ok(0)) | Ok(Err(_)) => return End::ConnectionLost,
                    Ok(Ok(read)) => {
                        if let Some(pause) = self.core.bytes_read(read, Now::read()) {
                            Box::pin(tokio::time::sleep(pause)).await;
                        }
                    }
                },
                // While the client's window is full, leave deliveries in the bounded queue:
                // a slow subscriber then loses messages (counted) instead of growing memory.
                message = outgoing.recv(), if self.core.has_room() => {
                    // Take what else is queued too, to write it in one go.
                    let mut next = message;
                    let mut taken = 0;
                    let now = now_ms();
                    loop {
                        let Some(Delivery { message, qos, retain, stored }) = next else {
                            // Only the router closes the queue, when it parks this session.
                            return End::ConnectionLost;
                        };
                        self.core.deliver((stored, message), qos, retain, now);
                        if self.flush_if_full().await.is_err() {
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

    /// Carries out a step of the core that touches shared state; `Some` ends the connection.
    async fn carry_out(&mut self, step: Step) -> Option<End> {
        match step {
            Step::Read | Step::Handled => None,
            Step::Publish(inbound) => self.route(inbound).await,
            Step::Acknowledge(packet_id, reason) => {
                self.acknowledge(Due { packet_id, reason, wait: None });
                None
            }
            Step::Subscribe(grants) => {
                self.subscribe(grants).await;
                self.store_live_session().await;
                None
            }
            Step::Unsubscribe(filters) => {
                for filter in &filters {
                    self.shared.router.unsubscribe(&self.client_id, filter);
                }
                let event = events::subscriptions(&self.shared, &self.presence, "unsubscribed", &filters);
                self.shared.store_changed(event).await;
                self.store_live_session().await;
                None
            }
            Step::Close(end) => Some(self.close(end).await),
            Step::Leave(end) => Some(end),
        }
    }

    /// Routes a publish the core accepted; it is acknowledged once durable where it
    /// must be, after the publishes before it.
    async fn route(&mut self, Inbound { message, qos, retain, resource, packet_id }: Inbound) -> Option<End> {
        let origin = Origin { client_id: Some(&self.client_id), principal: Some(&self.presence.principal), hops: 0 };
        match self.shared.accept_publish(&message, qos, retain, &resource, origin).await {
            Ok(wait) => {
                if let Some(packet_id) = packet_id {
                    self.acknowledge(Due { packet_id, reason: ReasonCode::Success, wait });
                }
                None
            }
            Err(err) => Some(self.not_kept(&err).await),
        }
    }

    /// Ends the connection for a publish that could not be kept: neither it nor
    /// those after it are acknowledged, so the client sends them again.
    async fn not_kept(&mut self, err: &(dyn std::error::Error + Send + Sync)) -> End {
        tracing::error!(client_id = %self.client_id, error = %err, "a publish could not be kept: not acknowledged");
        let end = self.core.not_stored();
        self.close(end).await
    }

    /// Acknowledges a QoS 1 publish now, or in line after those that wait.
    fn acknowledge(&mut self, due: Due) {
        if due.wait.is_none() && self.acks.is_empty() {
            self.core.acknowledge(due.packet_id, due.reason);
        } else {
            self.acks.push_back(due);
        }
    }

    /// Acknowledges the publishes at the front of the line that wait for nothing more.
    fn acknowledge_ready(&mut self) {
        while self.acks.front().is_some_and(|due| due.wait.is_none()) {
            if let Some(due) = self.acks.pop_front() {
                self.core.acknowledge(due.packet_id, due.reason);
            }
        }
    }

    /// Stores a live persistent session of a cluster node (identity, subscriptions),
    /// so another node resumes it if this one dies.
    async fn store_live_session(&self) {
        if let Some(secs) = self.stored_live
            && let Some(write) = self.shared.router.live_record(&self.client_id, secs)
        {
            self.shared.store_session_writes(&self.client_id, vec![write]).await;
        }
    }

    /// Adds granted subscriptions to the router, then queues the retained messages they asked for.
    async fn subscribe(&mut self, grants: Vec<Grant>) {
        let now = now_ms();
        let mut filters = Vec::with_capacity(grants.len());
        for grant in grants {
            let new = self.shared.router.subscribe(&self.client_id, &grant.filter, grant.subscription);
            if grant.wants_retained(new == Some(true))
                && let Some(retained) = self.shared.retained.get(&grant.filter, now)
            {
                // AWS sends the retained copy only when the filter is exactly its topic.
                let qos = retained.qos.min(grant.subscription.qos);
                let resource = self.shared.arn(ResourceKind::Topic, &grant.filter);
                self.shared.router.deliver_retained(&self.client_id, &retained.message, qos, &resource);
            }
            filters.push(grant.filter);
        }
        if let Some(peers) = self.shared.peers.get() {
            // Publishes on other nodes after the SUBACK reach the new subscriptions.
            peers.interest_settled().await;
        }
        self.shared.store_changed(events::subscriptions(&self.shared, &self.presence, "subscribed", &filters)).await;
    }
}

/// What the first publish in line waits for on other nodes (pending while it waits for nothing).
async fn peers_wait(acks: &mut VecDeque<Due>) -> Result<(), crate::peers::PeersError> {
    match acks.front_mut().and_then(|due| due.wait.as_mut()) {
        Some(wait) => std::pin::Pin::new(wait).await,
        None => std::future::pending().await,
    }
}
