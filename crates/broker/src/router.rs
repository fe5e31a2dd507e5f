//! Who holds each client id — a live connection or a parked persistent session —
//! and an index of their subscriptions. Deliveries are checked against each
//! subscriber's current permissions (iot:Receive) before they are queued.
//!
//! The table is sharded by client id: connecting, parking and subscribing lock one
//! shard, and a publish reads the shards one after another, never all at once.
//! A client id's live connection and parked session live in the same shard under
//! the same lock, so a publish finds every session exactly once: the hand-over from
//! a parked session to a resuming connection (and back) is atomic with respect to
//! routing. Shared subscriptions span shards; their groups have a lock of their
//! own, always taken before a shard's, never while holding one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use ferrocore_mqtt::{FilterIndex, QoS, SubscriptionOptions, topic};
use ferrocore_registry::Permissions;

use crate::Identity;
use crate::peers::Interest;
use crate::queue;
use crate::sessions::{SessionRecord, SessionWrite};
use ferrocore_message::Message;

/// A connection's permissions, replaced when the registry changes.
pub type PermissionsCell = Arc<RwLock<Arc<Permissions>>>;

pub fn current(cell: &PermissionsCell) -> Arc<Permissions> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Whether the permissions in `cell` allow `action` on `resource` (without taking a
/// reference to them: this runs for every subscriber of every publish).
pub fn allows(cell: &PermissionsCell, action: &str, resource: &str) -> bool {
    cell.read().unwrap_or_else(|e| e.into_inner()).allows(action, resource)
}

/// Replaces a connection's permissions.
pub fn replace(cell: &PermissionsCell, permissions: Arc<Permissions>) {
    *cell.write().unwrap_or_else(|e| e.into_inner()) = permissions;
}

/// A signal that ends a connection. It travels beside the deliveries, never
/// behind them, and cannot be lost: the first signal sent is kept until read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Another connection took over this client id.
    TakenOver,
    /// Its certificate or the policy that let it connect was withdrawn.
    Revoked,
    /// DeleteConnection: leave, discarding the session when `clean_session`,
    /// without the will when `prevent_will`.
    Kicked { clean_session: bool, prevent_will: bool },
    /// This node was cut off from its cluster, which counts it dead: leave as from
    /// a dead node, the stored session left as it was for the node that takes it.
    SteppedDown,
}

/// A connection's control slot, held by the connection and by whoever may signal it.
#[derive(Clone)]
pub struct Control(Arc<Slot>);

struct Slot {
    signal: std::sync::Mutex<Option<Signal>>,
    changed: tokio::sync::Notify,
    /// The connection finished: its session is parked and stored, or gone.
    ended: tokio::sync::watch::Sender<bool>,
}

impl Control {
    pub fn new() -> Self {
        let ended = tokio::sync::watch::Sender::new(false);
        Self(Arc::new(Slot { signal: std::sync::Mutex::new(None), changed: tokio::sync::Notify::new(), ended }))
    }

    /// Says the connection finished (its session's store writes are done).
    pub fn end(&self) {
        self.0.ended.send_replace(true);
    }

    /// Waits until the connection finished.
    pub async fn ended(&self) {
        let mut ended = self.0.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Tells the connection to end; a signal already sent stays the reason.
    pub fn signal(&self, signal: Signal) {
        let mut slot = self.0.signal.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(signal);
            drop(slot);
            self.0.changed.notify_waiters();
        }
    }

    /// The signal sent, if any.
    pub fn current(&self) -> Option<Signal> {
        *self.0.signal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a signal is sent.
    pub async fn signalled(&self) -> Signal {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a signal sent in between wakes it.
            changed.as_mut().enable();
            if let Some(signal) = self.current() {
                return signal;
            }
            changed.await;
        }
    }
}

/// A message for a connection to send. `retain` is set on the stored copy sent at
/// subscribe time and, for Retain As Published subscriptions, on retained publishes.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Shared by every copy of one publish: a delivery costs a reference, not a copy.
    pub message: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    /// The sequence number of its stored queue record: a delivery to a live
    /// persistent session of a cluster node is stored until the client acknowledges it.
    pub stored: Option<u64>,
}

/// A connected client, as the router and the revalidation task see it.
#[derive(Clone)]
pub struct ClientEntry {
    pub client_id: String,
    pub connection: u64,
    pub identity: Identity,
    pub permissions: PermissionsCell,
    pub sender: queue::Sender<Delivery>,
    pub control: Control,
}

/// What a subscription asked for (MQTT 5 subscription options; 3.1.1 sets only the QoS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub qos: QoS,
    /// Not sent the subscriber's own publishes.
    pub no_local: bool,
    /// Live copies keep the publisher's RETAIN flag.
    pub retain_as_published: bool,
}

impl Subscription {
    #[cfg(test)]
    pub fn with_qos(qos: QoS) -> Self {
        Self { qos, no_local: false, retain_as_published: false }
    }

    pub fn granted(options: &SubscriptionOptions, qos: QoS) -> Self {
        Self { qos, no_local: options.no_local, retain_as_published: options.retain_as_published }
    }

    /// The stored form: the MQTT 5 subscription options byte (bits 0–1 QoS, 2 No Local,
    /// 3 Retain As Published), so sessions stored as a plain QoS still load.
    pub fn to_byte(self) -> u8 {
        (self.qos as u8) | (u8::from(self.no_local) << 2) | (u8::from(self.retain_as_published) << 3)
    }

    pub fn from_byte(byte: u8) -> Self {
        Self {
            qos: if byte & 0x03 >= 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce },
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
        }
    }
}

/// A persistent session whose client is away.
pub struct Parked {
    pub identity: Identity,
    pub permissions: PermissionsCell,
    /// QoS 1 messages kept for the client, oldest first, by their stored sequence number.
    pub queue: VecDeque<(u64, Arc<Message>)>,
    pub expires_at_ms: u64,
}

enum State {
    Online(ClientEntry),
    Offline(Box<Parked>),
}

/// One client id's session.
struct Entry {
    subscriptions: HashMap<String, Subscription>,
    /// Lifecycle `versionNumber`: one more on every connect.
    version: u64,
    /// The next sequence number of a stored queued message.
    next_seq: u64,
    /// Whether the store holds a session record for this client id.
    stored: bool,
    state: State,
}

impl Entry {
    fn online(&self) -> Option<&ClientEntry> {
        match &self.state {
            State::Online(client) => Some(client),
            State::Offline(_) => None,
        }
    }
}

/// The online members of one shared subscription (`$share/<group>/<filter>`).
struct SharedGroup {
    members: Vec<String>,
    /// Where the round-robin over members continues (moved by publishes, which share the table).
    next: std::sync::atomic::AtomicUsize,
}

/// How long a departed client id's version number is remembered (AWS resets it
/// to 0 after about an hour disconnected).
const VERSION_MEMORY_MS: u64 = 3600 * 1000;

/// One shard: its client ids' sessions and an index of their subscriptions, filter
/// level by filter level with the client ids subscribed to each (shared
/// subscriptions are in [`SharedGroups`]).
#[derive(Default)]
struct Table {
    /// With a fast hasher: every delivery looks its subscriber up here.
    sessions: std::collections::HashMap<String, Entry, foldhash::fast::RandomState>,
    /// Unshared subscriptions: client ids with their options under each filter.
    index: FilterIndex<Subscription>,
    /// Version numbers of client ids that left without a session, with when they left.
    departed: HashMap<String, (u64, u64)>,
    /// The node's subscriptions, counted across shards (for the peers of a cluster).
    interest: Arc<Interest>,
}

/// Shared subscriptions by their whole `$share/<group>/<filter>` string, with
/// their members (of any shard), found through an index of their filters.
#[derive(Default)]
struct SharedGroups {
    groups: HashMap<String, SharedGroup>,
    /// Filter of each shared subscription → the `$share/<group>/<filter>` names over it.
    index: FilterIndex,
}

impl SharedGroups {
    fn join(&mut self, name: &str, inner: &str, client_id: &str, interest: &Interest) {
        let group = self.groups.entry(name.to_string()).or_insert_with(|| {
            self.index.insert(inner, name, ());
            interest.add(name);
            SharedGroup { members: Vec::new(), next: Default::default() }
        });
        if !group.members.iter().any(|m| m == client_id) {
            group.members.push(client_id.to_string());
        }
    }

    fn leave(&mut self, name: &str, inner: &str, client_id: &str, interest: &Interest) {
        if let Some(group) = self.groups.get_mut(name) {
            group.members.retain(|m| m != client_id);
            if group.members.is_empty() {
                self.groups.remove(name);
                self.index.remove(inner, name);
                interest.remove(name);
            }
        }
    }
}

/// The shared subscriptions among `subscriptions`, whose groups follow a change of them.
fn shared_names(subscriptions: &HashMap<String, Subscription>) -> Vec<String> {
    subscriptions.keys().filter(|filter| shared_filter(filter).is_some()).cloned().collect()
}

/// The filter of a shared subscription, for subscriptions the gateway accepted.
fn shared_filter(subscription: &str) -> Option<&str> {
    topic::shared_subscription(subscription).and_then(Result::ok).map(|(_, filter)| filter)
}

impl Table {
    /// Indexes an unshared subscription, or replaces its options (shared ones are in [`SharedGroups`]).
    fn add_filter(&mut self, client_id: &str, filter: &str, subscription: Subscription) {
        if shared_filter(filter).is_none() && self.index.insert(filter, client_id, subscription) {
            self.interest.add(filter);
        }
    }

    fn remove_filter(&mut self, client_id: &str, filter: &str) {
        if shared_filter(filter).is_none() && self.index.remove(filter, client_id) {
            self.interest.remove(filter);
        }
    }

    fn clear_subscriptions(&mut self, client_id: &str, subscriptions: &HashMap<String, Subscription>) {
        for filter in subscriptions.keys() {
            self.remove_filter(client_id, filter);
        }
    }

    /// Forgets a client id's session, remembering its version number for a while.
    fn remove(&mut self, client_id: &str, now_ms: u64) -> Option<Entry> {
        let entry = self.sessions.remove(client_id)?;
        self.clear_subscriptions(client_id, &entry.subscriptions);
        self.departed.insert(client_id.to_string(), (entry.version, now_ms));
        Some(entry)
    }

    /// Each session subscribed to `topic_name` (its own publishes left out where it
    /// asked for No Local), once, with the highest QoS it was granted. A client id
    /// appears once per filter, so merging is needed only when several filters match.
    fn subscribers(&self, topic_name: &str, publisher: Option<&str>) -> Vec<(&str, &Entry, Subscription)> {
        let mut matched: Vec<(&str, &Entry, Subscription)> = Vec::new();
        let mut filters = 0;
        self.index.for_each_match(topic_name, |_, subscribers| {
            filters += 1;
            for (id, subscription) in subscribers {
                if subscription.no_local && publisher == Some(id.as_str()) {
                    continue;
                }
                let Some(entry) = self.sessions.get(id) else { continue };
                matched.push((id.as_str(), entry, *subscription));
            }
        });
        if filters > 1 {
            matched.sort_unstable_by(|a, b| a.0.cmp(b.0));
            matched.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.2.qos = kept.2.qos.max(later.2.qos);
                    kept.2.retain_as_published |= later.2.retain_as_published;
                }
                same
            });
        }
        matched
    }
}

/// Queues a message for a client when its iot:Receive allows it; false when it does not.
fn offer(client: &ClientEntry, delivery: Delivery, receive_resource: &str, full: &mut Vec<Pending>) -> bool {
    if !allows(&client.permissions, "iot:Receive", receive_resource) {
        metrics::counter!("ferrocore_mqtt_authorization_denied_total", "action" => "iot:Receive").increment(1);
        return false;
    }
    if let Err(queue::TrySendError::Full(delivery)) = client.sender.try_send(delivery) {
        full.push(Pending { client_id: client.client_id.clone(), sender: client.sender.clone(), delivery });
    }
    true
}

impl Parked {
    /// Appends a QoS 1 message to the queue (dropping the oldest past `limit`), with the
    /// store writes that record it; `stored` is its sequence number when it has a record.
    fn keep(
        &mut self,
        client_id: &str,
        next_seq: &mut u64,
        stored: Option<u64>,
        message: Arc<Message>,
        limit: usize,
        writes: &mut Vec<SessionWrite>,
    ) {
        let seq = stored.unwrap_or_else(|| {
            let seq = *next_seq;
            *next_seq += 1;
            writes.push(SessionWrite::Queue { client_id: client_id.to_string(), seq, message: message.clone() });
            seq
        });
        self.queue.push_back((seq, message));
        while self.queue.len() > limit {
            let Some((oldest, _)) = self.queue.pop_front() else { break };
            metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "session_queue_full").increment(1);
            writes.push(SessionWrite::Dequeue { client_id: client_id.to_string(), seq: oldest });
        }
    }

    /// [`Self::keep`] for each message a connection had not finished.
    fn keep_all(
        &mut self,
        client_id: &str,
        next_seq: &mut u64,
        unfinished: Vec<Unfinished>,
        limit: usize,
        writes: &mut Vec<SessionWrite>,
    ) {
        for (stored, message) in unfinished {
            self.keep(client_id, next_seq, stored, message, limit, writes);
        }
    }
}

/// The shards, each behind a read-write lock: publishes share them (they only read,
/// but for a shared group's cursor, an atomic); connecting, parking and subscribing
/// take their client id's shard alone. A publish that must queue for a parked
/// session takes its shard alone briefly.
pub struct Router {
    shards: Box<[RwLock<Table>]>,
    hasher: std::collections::hash_map::RandomState,
    shared: RwLock<SharedGroups>,
    /// QoS 1 messages a parked session keeps at most; older ones are dropped.
    queue_limit: usize,
    interest: Arc<Interest>,
    /// A cluster node's: QoS 1 deliveries to live persistent sessions are stored
    /// until acknowledged, so a node taking the session after this one dies has them.
    durable_live: AtomicBool,
}

/// Which subscriptions a publish is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every subscriber: a node alone.
    All,
    /// Unshared subscriptions only: in a cluster, a shared subscription's one member
    /// is picked across the nodes ([`Scope::Group`] on the node picked).
    Unshared,
    /// One member of this `$share/<group>/<filter>`.
    Group(&'a str),
}

/// A delivery whose subscriber queue was full: the publisher waits a little for room.
pub struct Pending {
    pub client_id: String,
    pub sender: queue::Sender<Delivery>,
    pub delivery: Delivery,
}

/// What a publish left to do outside the router's lock: store writes of parked
/// sessions' queues (made durable before the publisher is acknowledged), and
/// deliveries whose subscriber queue was full (the publisher waits a little for
/// room, so a flood slows down to what subscribers take instead of being dropped).
#[derive(Default)]
pub struct Published {
    pub writes: Vec<SessionWrite>,
    pub full: Vec<Pending>,
    /// Deliveries to live sessions whose deliveries are stored: sent once `writes`
    /// (with their records) are committed, so a client's acknowledgement never
    /// comes before the record it finishes.
    pub stored_first: Vec<Pending>,
    /// In a cluster: how the message went to the other nodes.
    pub forwarded: Forwarded,
}

/// How a publish went to the other nodes of a cluster.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// Alone, or a message from a peer.
    #[default]
    No,
    /// Queued to leave: the publisher waits while too many are waiting.
    Queued,
    /// A QoS 1 message queued as forward `number`: the publisher is acknowledged once
    /// the other nodes that take it have it.
    QueuedAtLeastOnce { number: u64 },
    /// Too many messages are waiting to leave.
    Refused { qos: QoS },
}

/// A connection registered with the router.
pub struct Connected {
    /// The lifecycle `versionNumber`.
    pub version: u64,
    pub session_present: bool,
    /// QoS 1 messages the resumed session kept, to send first, with their sequence numbers.
    pub replay: Vec<(u64, Arc<Message>)>,
    /// Store writes: a discarded session's records.
    pub writes: Vec<SessionWrite>,
}

/// A QoS 1 message a connection had not finished delivering; `seq` when it is stored.
pub type Unfinished = (Option<u64>, Arc<Message>);

/// A session loaded from the store at start-up.
pub struct Loaded {
    pub client_id: String,
    pub record: SessionRecord,
    pub permissions: PermissionsCell,
    pub queue: Vec<(u64, Message)>,
}

impl Router {
    /// A router with one shard per core.
    pub fn new(queue_limit: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::with_shards(queue_limit, cores.clamp(1, 64))
    }

    pub fn with_shards(queue_limit: usize, shards: usize) -> Self {
        let interest = Arc::new(Interest::default());
        let table = || RwLock::new(Table { interest: interest.clone(), ..Table::default() });
        Self {
            shards: (0..shards.max(1)).map(|_| table()).collect(),
            hasher: Default::default(),
            shared: RwLock::default(),
            queue_limit: queue_limit.max(1),
            interest,
            durable_live: AtomicBool::new(false),
        }
    }

    /// From now on QoS 1 deliveries to live persistent sessions (those with a stored
    /// record) are stored until acknowledged (a node of a cluster).
    pub fn store_live_deliveries(&self) {
        self.durable_live.store(true, Ordering::Relaxed);
    }

    /// The node's subscriptions, as its peers hear of them.
    pub(crate) fn interest(&self) -> &Interest {
        &self.interest
    }

    fn shard(&self, client_id: &str) -> &RwLock<Table> {
        use std::hash::BuildHasher;
        &self.shards[(self.hasher.hash_one(client_id) % self.shards.len() as u64) as usize]
    }

    /// The client id's shard, alone.
    fn lock(&self, client_id: &str) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.shard(client_id).write().unwrap_or_else(|e| e.into_inner())
    }

    /// The client id's shard, shared.
    fn read(&self, client_id: &str) -> std::sync::RwLockReadGuard<'_, Table> {
        self.shard(client_id).read().unwrap_or_else(|e| e.into_inner())
    }

    fn every_shard(&self) -> impl Iterator<Item = std::sync::RwLockReadGuard<'_, Table>> {
        self.shards.iter().map(|shard| shard.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Brings the shared groups named in line with the client's subscriptions, after a
    /// change of them (called without a shard lock held: the groups' lock comes first).
    fn sync_groups(&self, client_id: &str, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let mut groups = self.shared.write().unwrap_or_else(|e| e.into_inner());
        let table = self.read(client_id);
        let held = table.sessions.get(client_id).map(|entry| &entry.subscriptions);
        for name in names {
            let Some(inner) = shared_filter(name) else { continue };
            if held.is_some_and(|subscriptions| subscriptions.contains_key(name)) {
                groups.join(name, inner, client_id, &self.interest);
            } else {
                groups.leave(name, inner, client_id, &self.interest);
            }
        }
    }

    /// Registers a connection. An older connection with the same client id is told
    /// to leave. Unless `clean_start`, the session carries over — a live one's
    /// subscriptions, or a parked one's subscriptions and queued messages (to replay
    /// before anything routed from now on) — else it is discarded.
    pub fn connect(&self, entry: ClientEntry, clean_start: bool, now_ms: u64) -> Connected {
        let client_id = entry.client_id.clone();
        let mut table = self.lock(&client_id);
        let mut left_groups = Vec::new();
        let mut connected = Connected { version: 1, session_present: false, replay: Vec::new(), writes: Vec::new() };
        let (mut subscriptions, mut next_seq, mut stored) = (HashMap::new(), 0, false);
        if let Some(previous) = table.sessions.remove(&client_id) {
            connected.version = previous.version + 1;
            let resumable = match &previous.state {
                State::Online(old) => {
                    old.control.signal(Signal::TakenOver);
                    true
                }
                State::Offline(parked) => parked.expires_at_ms > now_ms,
            };
            if clean_start || !resumable {
                table.clear_subscriptions(&client_id, &previous.subscriptions);
                left_groups = shared_names(&previous.subscriptions);
                if previous.stored {
                    connected.writes.push(SessionWrite::Forget { client_id: client_id.clone() });
                }
                if let State::Offline(parked) = previous.state {
                    connected
                        .writes
                        .extend(SessionWrite::dequeues(&client_id, parked.queue.iter().map(|(seq, _)| *seq)));
                }
            } else {
                connected.session_present = true;
                (subscriptions, next_seq, stored) = (previous.subscriptions, previous.next_seq, previous.stored);
                if let State::Offline(parked) = previous.state {
                    connected.replay = parked.queue.into_iter().collect();
                }
            }
        } else if let Some((version, _)) = table.departed.remove(&client_id) {
            connected.version = version + 1;
        }
        table.sessions.insert(
            client_id.clone(),
            Entry { subscriptions, version: connected.version, next_seq, stored, state: State::Online(entry) },
        );
        drop(table);
        self.sync_groups(&client_id, &left_groups);
        connected
    }

    /// Parks a persistent session whose connection ended: its unfinished messages,
    /// then what is still in its delivery queue (closed here, under the lock, so
    /// nothing routed to the connection is lost), are kept for the client. When a
    /// newer connection took the client id, the unfinished messages go to it.
    pub fn park(
        &self,
        client_id: &str,
        connection: u64,
        expires_at_ms: u64,
        unfinished: Vec<Unfinished>,
        deliveries: &mut queue::Receiver<Delivery>,
    ) -> Vec<SessionWrite> {
        let mut table = self.lock(client_id);
        let mut writes = Vec::new();
        let Some(entry) = table.sessions.get_mut(client_id) else {
            return forget_unfinished(client_id, unfinished);
        };
        let mut unfinished: Vec<Unfinished> = unfinished;
        let ours = entry.online().is_some_and(|c| c.connection == connection);
        if ours {
            deliveries.close();
            while let Some(delivery) = deliveries.try_recv() {
                if delivery.qos == QoS::AtLeastOnce {
                    unfinished.push((delivery.stored, delivery.message));
                }
            }
        }
        let client = match &mut entry.state {
            State::Online(client) => client.clone(),
            State::Offline(parked) => {
                // A newer connection came and went: its parked session takes them.
                parked.keep_all(client_id, &mut entry.next_seq, unfinished, self.queue_limit, &mut writes);
                return writes;
            }
        };
        if !ours {
            // Taken over by a resuming connection: hand it what this one had not finished
            // (with its stored record while the new connection's deliveries are stored).
            let durable = self.durable_live.load(Ordering::Relaxed) && entry.stored;
            for (seq, message) in unfinished {
                let stored = seq.filter(|_| durable);
                let delivery = Delivery { message, qos: QoS::AtLeastOnce, retain: false, stored };
                let sent = client.sender.try_send(delivery).is_ok();
                if !sent {
                    metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "queue_full").increment(1);
                }
                if let Some(seq) = seq.filter(|_| !sent || !durable) {
                    writes.push(SessionWrite::Dequeue { client_id: client_id.to_string(), seq });
                }
            }
            return writes;
        }
        let mut parked = Parked {
            identity: client.identity,
            permissions: client.permissions,
            queue: VecDeque::new(),
            expires_at_ms,
        };
        parked.keep_all(client_id, &mut entry.next_seq, unfinished, self.queue_limit, &mut writes);
        entry.stored = true;
        let record = SessionRecord {
            identity: parked.identity.clone(),
            subscriptions: stored_subscriptions(&entry.subscriptions),
            expires_at_ms: parked.expires_at_ms,
            live_expiry_secs: None,
            version: entry.version,
        };
        writes.push(SessionWrite::Save { client_id: client_id.to_string(), record });
        entry.state = State::Offline(Box::new(parked));
        writes
    }

    /// Forgets a client whose connection ended without a persistent session, unless a
    /// newer connection already took its id; answers the store writes that remove
    /// what was stored for it.
    pub fn disconnect(
        &self,
        client_id: &str,
        connection: u64,
        unfinished: Vec<Unfinished>,
        now_ms: u64,
    ) -> Vec<SessionWrite> {
        let mut table = self.lock(client_id);
        let ours = table.sessions.get(client_id).and_then(Entry::online).is_some_and(|c| c.connection == connection);
        let mut writes = forget_unfinished(client_id, unfinished);
        if ours && let Some(entry) = table.remove(client_id, now_ms) {
            drop(table);
            self.sync_groups(client_id, &shared_names(&entry.subscriptions));
            if entry.stored {
                writes.push(SessionWrite::Forget { client_id: client_id.to_string() });
            }
        }
        writes
    }

    /// Keeps a QoS 1 delivery that found its connection's queue closed: the session
    /// was parked meanwhile.
    pub fn requeue_closed(&self, client_id: &str, delivery: Delivery) -> Vec<SessionWrite> {
        let mut table = self.lock(client_id);
        let mut writes = Vec::new();
        if let Some(entry) = table.sessions.get_mut(client_id)
            && let State::Offline(parked) = &mut entry.state
        {
            let (stored, message) = (delivery.stored, delivery.message);
            parked.keep(client_id, &mut entry.next_seq, stored, message, self.queue_limit, &mut writes);
        } else {
            metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "connection_closed").increment(1);
            writes.extend(SessionWrite::dequeues(client_id, delivery.stored));
        }
        writes
    }

    /// Loads the sessions of disconnected clients (at start-up, or taken from another
    /// node); a client id held here already keeps what it has. Answers the client ids loaded.
    pub fn load(&self, sessions: Vec<Loaded>) -> Vec<String> {
        let mut taken = Vec::new();
        for loaded in sessions {
            let mut table = self.lock(&loaded.client_id);
            if table.sessions.contains_key(&loaded.client_id) {
                // Connected or taken here meanwhile (a cluster's node taking sessions).
                continue;
            }
            let subscriptions: HashMap<String, Subscription> = loaded
                .record
                .subscriptions
                .iter()
                .map(|(f, byte)| (f.clone(), Subscription::from_byte(*byte)))
                .collect();
            for (filter, subscription) in &subscriptions {
                table.add_filter(&loaded.client_id, filter, *subscription);
            }
            let next_seq = loaded.queue.last().map_or(0, |(seq, _)| seq + 1);
            let parked = Parked {
                identity: loaded.record.identity,
                permissions: loaded.permissions,
                queue: loaded.queue.into_iter().map(|(seq, message)| (seq, Arc::new(message))).collect(),
                expires_at_ms: loaded.record.expires_at_ms,
            };
            let groups = shared_names(&subscriptions);
            let version = loaded.record.version;
            let entry =
                Entry { subscriptions, version, next_seq, stored: true, state: State::Offline(Box::new(parked)) };
            table.sessions.insert(loaded.client_id.clone(), entry);
            drop(table);
            self.sync_groups(&loaded.client_id, &groups);
            taken.push(loaded.client_id);
        }
        taken
    }

    /// Drops expired parked sessions (and forgets version numbers of client ids
    /// gone for an hour); answers the store writes that remove them.
    pub fn expire(&self, now_ms: u64) -> Vec<SessionWrite> {
        let mut writes = Vec::new();
        for shard in self.shards.iter() {
            let mut table = shard.write().unwrap_or_else(|e| e.into_inner());
            table.departed.retain(|_, (_, left_ms)| now_ms.saturating_sub(*left_ms) < VERSION_MEMORY_MS);
            let expired: Vec<String> = table
                .sessions
                .iter()
                .filter(|(_, e)| matches!(&e.state, State::Offline(p) if p.expires_at_ms <= now_ms))
                .map(|(id, _)| id.clone())
                .collect();
            let removed: Vec<(String, Entry)> =
                expired.into_iter().filter_map(|id| table.remove(&id, now_ms).map(|entry| (id, entry))).collect();
            drop(table);
            for (id, entry) in removed {
                self.sync_groups(&id, &shared_names(&entry.subscriptions));
                writes.extend(discard(&id, entry));
            }
        }
        writes
    }

    /// The live connection `connection` of a client id, if it still is.
    pub fn client(&self, client_id: &str, connection: u64) -> Option<ClientEntry> {
        let table = self.read(client_id);
        table.sessions.get(client_id).and_then(Entry::online).filter(|c| c.connection == connection).cloned()
    }

    /// The live connections.
    pub fn clients(&self) -> Vec<ClientEntry> {
        self.every_shard()
            .flat_map(|table| table.sessions.values().filter_map(Entry::online).cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Adds or replaces a subscription of a live client; answers whether it is new
    /// (`None` when the client is not connected).
    pub fn subscribe(&self, client_id: &str, filter: &str, subscription: Subscription) -> Option<bool> {
        let mut table = self.lock(client_id);
        let entry = table.sessions.get_mut(client_id).filter(|e| e.online().is_some())?;
        let new = entry.subscriptions.insert(filter.to_string(), subscription).is_none();
        table.add_filter(client_id, filter, subscription);
        drop(table);
        if new && shared_filter(filter).is_some() {
            self.sync_groups(client_id, &[filter.to_string()]);
        }
        Some(new)
    }

    /// Queues the retained copy of a topic for one client, if its iot:Receive allows it.
    pub fn deliver_retained(&self, client_id: &str, message: &Message, qos: QoS, receive_resource: &str) {
        let table = self.read(client_id);
        let Some(client) = table.sessions.get(client_id).and_then(Entry::online) else {
            return;
        };
        if !allows(&client.permissions, "iot:Receive", receive_resource) {
            return;
        }
        let delivery = Delivery { message: Arc::new(message.clone()), qos, retain: true, stored: None };
        if client.sender.try_send(delivery).is_err() {
            metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "queue_full").increment(1);
        }
    }

    /// Tells a connected client to leave (DeleteConnection); false when it is not connected.
    pub fn kick(&self, client_id: &str, clean_session: bool, prevent_will: bool) -> bool {
        let table = self.read(client_id);
        let Some(client) = table.sessions.get(client_id).and_then(Entry::online) else {
            return false;
        };
        client.control.signal(Signal::Kicked { clean_session, prevent_will });
        true
    }

    pub fn has_offline(&self, client_id: &str) -> bool {
        self.read(client_id).sessions.get(client_id).is_some_and(|e| e.online().is_none())
    }

    /// Forgets the persistent session of a disconnected client; `None` when it has
    /// none, else the store writes that remove it.
    pub fn discard_offline(&self, client_id: &str, now_ms: u64) -> Option<Vec<SessionWrite>> {
        let mut table = self.lock(client_id);
        if table.sessions.get(client_id)?.online().is_some() {
            return None;
        }
        let entry = table.remove(client_id, now_ms)?;
        drop(table);
        self.sync_groups(client_id, &shared_names(&entry.subscriptions));
        Some(discard(client_id, entry))
    }

    /// Whether the session holds a subscription to exactly this filter.
    pub fn is_subscribed(&self, client_id: &str, filter: &str) -> bool {
        self.read(client_id).sessions.get(client_id).is_some_and(|entry| entry.subscriptions.contains_key(filter))
    }

    /// How many subscriptions the session holds.
    pub fn subscription_count(&self, client_id: &str) -> usize {
        self.read(client_id).sessions.get(client_id).map_or(0, |entry| entry.subscriptions.len())
    }

    pub fn unsubscribe(&self, client_id: &str, filter: &str) -> bool {
        let mut table = self.lock(client_id);
        let removed =
            table.sessions.get_mut(client_id).is_some_and(|entry| entry.subscriptions.remove(filter).is_some());
        if removed {
            table.remove_filter(client_id, filter);
            drop(table);
            if shared_filter(filter).is_some() {
                self.sync_groups(client_id, &[filter.to_string()]);
            }
        }
        removed
    }

    /// Queues a message for every subscriber allowed to receive it (`publisher`, the
    /// publishing client, is skipped by its No Local subscriptions), and for one
    /// online member of each matching shared subscription (round-robin). QoS 1
    /// messages matching a QoS 1 subscription of a parked persistent session are
    /// kept for it (AWS's rule) — for a shared subscription only when no member
    /// is online — and the store writes that keep them are returned.
    pub fn publish(
        &self,
        message: &Arc<Message>,
        qos: QoS,
        retain: bool,
        publisher: Option<&str>,
        receive_resource: &str,
        scope: Scope<'_>,
    ) -> Published {
        let topic_name = message.topic.as_str();
        let mut published = Published::default();
        // Parked sessions (direct subscribers, and one per shared subscription nobody
        // online took) are queued for afterwards, under their shard alone: only their
        // ids are copied here.
        // Live sessions whose QoS 1 deliveries are stored join them: their sequence
        // numbers are taken under their shard alone too.
        let mut parked_subscribers: Vec<(String, bool)> = Vec::new();
        let durable_live = self.durable_live.load(Ordering::Relaxed);
        // A group's member picked on this node: the unshared subscribers were served where it was published.
        let shards = if matches!(scope, Scope::Group(_)) { 0 } else { self.shards.len() };
        for table in self.every_shard().take(shards) {
            for (client_id, entry, subscription) in table.subscribers(topic_name, publisher) {
                let at_least_once = qos == QoS::AtLeastOnce && subscription.qos == QoS::AtLeastOnce;
                let retain = retain && subscription.retain_as_published;
                match entry.online() {
                    Some(_) if at_least_once && durable_live && entry.stored => {
                        parked_subscribers.push((client_id.to_string(), retain));
                    }
                    Some(client) => {
                        let delivery =
                            Delivery { message: message.clone(), qos: qos.min(subscription.qos), retain, stored: None };
                        offer(client, delivery, receive_resource, &mut published.full);
                    }
                    None if at_least_once => parked_subscribers.push((client_id.to_string(), false)),
                    None => {}
                }
            }
        }
        if scope != Scope::Unshared {
            self.publish_to_groups(message, qos, receive_resource, scope, &mut published, &mut parked_subscribers);
        }
        for (client_id, retain) in &parked_subscribers {
            let mut table = self.lock(client_id);
            self.keep_for(&mut table, client_id, message, *retain, receive_resource, &mut published);
        }
        published
    }

    /// Offers a message to one online member of each matching shared subscription,
    /// round-robin; when none takes a QoS 1 message, names the first parked member
    /// with a QoS 1 subscription to keep it.
    fn publish_to_groups(
        &self,
        message: &Arc<Message>,
        qos: QoS,
        receive_resource: &str,
        scope: Scope<'_>,
        published: &mut Published,
        parked_subscribers: &mut Vec<(String, bool)>,
    ) {
        let shared = self.shared.read().unwrap_or_else(|e| e.into_inner());
        if shared.groups.is_empty() {
            return;
        }
        let durable_live = self.durable_live.load(Ordering::Relaxed);
        let mut durable_members: Vec<String> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        shared.index.for_each_match(&message.topic, |_, found| names.extend(found.keys().map(String::as_str)));
        if let Scope::Group(only) = scope {
            names.retain(|name| *name == only);
        }
        for name in names {
            let Some(group) = shared.groups.get(name) else { continue };
            let members = group.members.len();
            let start = group.next.load(Ordering::Relaxed);
            let served = (0..members).find(|step| {
                let member = &group.members[(start + step) % members];
                let table = self.read(member);
                let Some(entry) = table.sessions.get(member) else { return false };
                let (Some(client), Some(granted)) = (entry.online(), entry.subscriptions.get(name)) else {
                    return false;
                };
                let stored_later = durable_live && entry.stored && qos == QoS::AtLeastOnce && granted.qos == qos;
                if stored_later {
                    // Queued with a stored record below, under its shard alone.
                    let receives = allows(&client.permissions, "iot:Receive", receive_resource);
                    if receives {
                        durable_members.push(member.clone());
                    }
                    return receives;
                }
                let delivery =
                    Delivery { message: message.clone(), qos: qos.min(granted.qos), retain: false, stored: None };
                offer(client, delivery, receive_resource, &mut published.full)
            });
            if let Some(step) = served {
                group.next.store((start + step + 1) % members, Ordering::Relaxed);
                continue;
            }
            if qos != QoS::AtLeastOnce {
                continue;
            }
            let keeper = group.members.iter().find(|member| {
                let table = self.read(member);
                table.sessions.get(member.as_str()).is_some_and(|entry| {
                    let receives = |p: &Parked| allows(&p.permissions, "iot:Receive", receive_resource);
                    entry.subscriptions.get(name).is_some_and(|s| s.qos == QoS::AtLeastOnce)
                        && matches!(&entry.state, State::Offline(parked) if receives(parked))
                })
            });
            parked_subscribers.extend(keeper.map(|member| (member.clone(), false)));
        }
        parked_subscribers.extend(durable_members.into_iter().map(|member| (member, false)));
    }

    /// Keeps a QoS 1 message for a session whose iot:Receive allows it: a parked one
    /// queues it, a live one is sent it — with a stored record when its deliveries
    /// are stored (a cluster's live persistent session), so it outlives this node.
    fn keep_for(
        &self,
        table: &mut Table,
        client_id: &str,
        message: &Arc<Message>,
        retain: bool,
        receive_resource: &str,
        published: &mut Published,
    ) {
        let Some(Entry { state, next_seq, stored, .. }) = table.sessions.get_mut(client_id) else { return };
        match state {
            State::Offline(parked) => {
                if allows(&parked.permissions, "iot:Receive", receive_resource) {
                    let (limit, writes) = (self.queue_limit, &mut published.writes);
                    parked.keep(client_id, next_seq, None, message.clone(), limit, writes);
                }
            }
            State::Online(client) => {
                let durable = *stored
                    && self.durable_live.load(Ordering::Relaxed)
                    && allows(&client.permissions, "iot:Receive", receive_resource);
                if durable {
                    let seq = *next_seq;
                    *next_seq += 1;
                    let write = SessionWrite::Queue { client_id: client_id.to_string(), seq, message: message.clone() };
                    published.writes.push(write);
                    let delivery =
                        Delivery { message: message.clone(), qos: QoS::AtLeastOnce, retain, stored: Some(seq) };
                    let (client_id, sender) = (client_id.to_string(), client.sender.clone());
                    published.stored_first.push(Pending { client_id, sender, delivery });
                } else {
                    let delivery = Delivery { message: message.clone(), qos: QoS::AtLeastOnce, retain, stored: None };
                    offer(client, delivery, receive_resource, &mut published.full);
                }
            }
        }
    }

    /// Lets go of the parked session of a client id another node takes (stored by
    /// now; the store is not touched); false when this node has none parked.
    pub fn release(&self, client_id: &str, now_ms: u64) -> bool {
        let mut table = self.lock(client_id);
        if table.sessions.get(client_id).is_none_or(|entry| entry.online().is_some()) {
            return false;
        }
        let Some(entry) = table.remove(client_id, now_ms) else { return false };
        drop(table);
        self.sync_groups(client_id, &shared_names(&entry.subscriptions));
        true
    }

    /// Lets go of every session, live or parked, without touching the store (a node
    /// cut off from its cluster, which counts it dead); answers the live
    /// connections' control slots, to be told to leave.
    pub fn let_go_all(&self, now_ms: u64) -> Vec<Control> {
        let mut live = Vec::new();
        for shard in self.shards.iter() {
            let mut table = shard.write().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<String> = table.sessions.keys().cloned().collect();
            let removed: Vec<(String, Entry)> =
                ids.into_iter().filter_map(|id| table.remove(&id, now_ms).map(|entry| (id, entry))).collect();
            drop(table);
            for (id, entry) in removed {
                self.sync_groups(&id, &shared_names(&entry.subscriptions));
                live.extend(entry.online().map(|client| client.control.clone()));
            }
        }
        live
    }

    /// The control slot of a client id's live connection here.
    pub fn control_of(&self, client_id: &str) -> Option<Control> {
        self.read(client_id).sessions.get(client_id).and_then(Entry::online).map(|client| client.control.clone())
    }

    /// The stored form of a live client's session, which is stored from now on (a
    /// node of a cluster stores live persistent sessions, so they outlive it); its
    /// expiry, `expiry_secs`, counts from when it is found without its node.
    pub fn live_record(&self, client_id: &str, expiry_secs: u64) -> Option<SessionWrite> {
        let mut table = self.lock(client_id);
        let entry = table.sessions.get_mut(client_id)?;
        let State::Online(client) = &entry.state else { return None };
        let subscriptions = stored_subscriptions(&entry.subscriptions);
        let record = SessionRecord {
            identity: client.identity.clone(),
            subscriptions,
            expires_at_ms: u64::MAX,
            live_expiry_secs: Some(expiry_secs),
            version: entry.version,
        };
        entry.stored = true;
        Some(SessionWrite::Save { client_id: client_id.to_string(), record })
    }

    /// The lifecycle version number this node last gave a client id (0 when it
    /// remembers none): a node taking the client id counts on from it.
    pub fn version_of(&self, client_id: &str) -> u64 {
        let table = self.read(client_id);
        match table.sessions.get(client_id) {
            Some(entry) => entry.version,
            None => table.departed.get(client_id).map_or(0, |(version, _)| *version),
        }
    }

    /// Another node of the cluster gave the client id `version`: its next connect
    /// here counts on from it.
    pub fn note_version(&self, client_id: &str, version: u64, now_ms: u64) {
        let mut table = self.lock(client_id);
        if let Some(entry) = table.sessions.get_mut(client_id) {
            entry.version = entry.version.max(version);
        } else if version > 0 {
            let remembered = table.departed.entry(client_id.to_string()).or_insert((0, now_ms));
            if remembered.0 < version {
                *remembered = (version, now_ms);
            }
        }
    }

    /// Whether this node holds a client id's session, live or parked.
    pub fn holds(&self, client_id: &str) -> bool {
        self.read(client_id).sessions.contains_key(client_id)
    }

    /// Client ids the router holds a session or a version number for (tests, metrics).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.every_shard().map(|table| table.sessions.len() + table.departed.len()).sum()
    }
}

/// The writes that remove stored unfinished messages nobody will get.
fn forget_unfinished(client_id: &str, unfinished: Vec<Unfinished>) -> Vec<SessionWrite> {
    SessionWrite::dequeues(client_id, unfinished.into_iter().filter_map(|(seq, _)| seq)).collect()
}

/// The writes that remove a session and its queue.
fn discard(client_id: &str, entry: Entry) -> Vec<SessionWrite> {
    let mut writes = Vec::new();
    if let State::Offline(parked) = entry.state {
        writes.extend(SessionWrite::dequeues(client_id, parked.queue.iter().map(|(seq, _)| *seq)));
    }
    if entry.stored {
        writes.push(SessionWrite::Forget { client_id: client_id.to_string() });
    }
    writes
}

fn stored_subscriptions(subscriptions: &HashMap<String, Subscription>) -> Vec<(String, u8)> {
    subscriptions.iter().map(|(f, s)| (f.clone(), s.to_byte())).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const RESOURCE: &str = "arn:aws:iot:r:1:topic/t/a";

    fn allow_all() -> PermissionsCell {
        let unrestricted = ferrocore_registry::Credentials::local_default().permissions("test", None).unwrap();
        Arc::new(RwLock::new(Arc::new(unrestricted)))
    }

    struct Client {
        deliveries: queue::Receiver<Delivery>,
        control: Control,
        connected: Connected,
    }

    fn connect(router: &Router, id: &str, connection: u64, clean_start: bool, depth: usize) -> Client {
        let (sender, deliveries) = queue::channel(depth);
        let control = Control::new();
        let control_receiver = control.clone();
        let entry = ClientEntry {
            client_id: id.into(),
            connection,
            identity: Identity::Certificate("c".into()),
            permissions: allow_all(),
            sender,
            control,
        };
        let connected = router.connect(entry, clean_start, 0);
        Client { deliveries, control: control_receiver, connected }
    }

    fn message(n: u64) -> Message {
        Message::new("t/a", Bytes::from(n.to_string()))
    }

    fn number(message: &Message) -> u64 {
        std::str::from_utf8(&message.payload).unwrap().parse().unwrap()
    }

    fn publish(router: &Router, n: u64) -> Published {
        router.publish(&Arc::new(message(n)), QoS::AtLeastOnce, false, None, RESOURCE, Scope::All)
    }

    fn drain(client: &mut Client) -> Vec<Delivery> {
        std::iter::from_fn(|| client.deliveries.try_recv()).collect()
    }

    const FAR: u64 = u64::MAX;

    /// Several shards, so that client ids of one test spread over them.
    fn sharded(queue_limit: usize) -> Router {
        Router::with_shards(queue_limit, 4)
    }

    #[test]
    fn a_publish_reaches_subscribers_in_every_shard_once_and_only_matching_ones() {
        let router = sharded(10);
        let mut clients: Vec<Client> = (0..32).map(|n| connect(&router, &format!("c{n}"), n, true, 16)).collect();
        for n in 0..32 {
            router.subscribe(
                &format!("c{n}"),
                if n % 2 == 0 { "t/#" } else { "other/#" },
                Subscription::with_qos(QoS::AtMostOnce),
            );
            // A second matching filter: still one copy.
            router.subscribe(&format!("c{n}"), "t/a", Subscription::with_qos(QoS::AtMostOnce));
        }
        let used: std::collections::HashSet<usize> = (0..32)
            .map(|n| {
                router.shards.iter().position(|shard| std::ptr::eq(shard, router.shard(&format!("c{n}")))).unwrap()
            })
            .collect();
        assert!(used.len() > 1, "the client ids spread over shards");
        publish(&router, 1);
        let counts: Vec<usize> = clients.iter_mut().map(|client| drain(client).len()).collect();
        assert!(counts.iter().all(|&count| count == 1), "{counts:?}");
        router.publish(
            &Arc::new(Message::new("other/x", Bytes::from("2"))),
            QoS::AtMostOnce,
            false,
            None,
            RESOURCE,
            Scope::All,
        );
        let counts: Vec<usize> = clients.iter_mut().map(|client| drain(client).len()).collect();
        assert_eq!(counts, (0..32).map(|n| n % 2).collect::<Vec<_>>(), "only the other/# subscribers");
    }

    #[test]
    fn a_scope_picks_the_unshared_subscribers_or_one_group() {
        let router = sharded(10);
        let mut plain = connect(&router, "plain", 1, true, 16);
        let mut member = connect(&router, "member", 2, true, 16);
        let mut other = connect(&router, "other", 3, true, 16);
        router.subscribe("plain", "t/#", Subscription::with_qos(QoS::AtLeastOnce));
        router.subscribe("member", "$share/g/t/#", Subscription::with_qos(QoS::AtLeastOnce));
        router.subscribe("other", "$share/h/t/#", Subscription::with_qos(QoS::AtLeastOnce));
        let mut send = |scope| {
            router.publish(&Arc::new(message(1)), QoS::AtLeastOnce, false, None, RESOURCE, scope);
            [&mut plain, &mut member, &mut other].map(|client| drain(client).len())
        };
        assert_eq!(send(Scope::All), [1, 1, 1], "positive control: a node alone serves everyone");
        assert_eq!(send(Scope::Unshared), [1, 0, 0]);
        assert_eq!(send(Scope::Group("$share/g/t/#")), [0, 1, 0]);
        assert_eq!(send(Scope::Group("$share/none/t/#")), [0, 0, 0]);
    }

    #[test]
    fn a_released_session_leaves_the_node_without_store_writes_and_a_live_one_stays() {
        let router = sharded(10);
        let mut client = connect(&router, "c", 1, false, 16);
        router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtLeastOnce));
        assert!(!router.release("c", 0), "a live connection is taken over first, not released");
        assert!(router.holds("c"));
        router.park("c", 1, FAR, Vec::new(), &mut client.deliveries);
        assert!(router.release("c", 0));
        assert!(!router.holds("c"));
        assert!(publish(&router, 1).writes.is_empty(), "nothing is queued here for it any more");
        assert!(!router.release("c", 0));
    }

    #[test]
    fn a_shared_subscription_spanning_shards_delivers_each_message_to_one_member_round_robin() {
        let router = sharded(10);
        const GROUP: &str = "$share/g/t/#";
        let mut members: Vec<Client> = (0..8).map(|n| connect(&router, &format!("m{n}"), n, false, 64)).collect();
        for n in 0..8 {
            assert_eq!(router.subscribe(&format!("m{n}"), GROUP, Subscription::with_qos(QoS::AtLeastOnce)), Some(true));
        }
        for n in 0..16 {
            publish(&router, n);
        }
        let counts: Vec<usize> = members.iter_mut().map(|member| drain(member).len()).collect();
        assert_eq!(counts, vec![2; 8], "each message once, spread evenly");

        // A member that reconnects with a clean start leaves the group; one that
        // unsubscribes too. The others keep getting every message, once.
        let _clean = connect(&router, "m0", 100, true, 64);
        assert!(router.unsubscribe("m1", GROUP));
        for n in 0..12 {
            publish(&router, n);
        }
        let counts: Vec<usize> = members.iter_mut().map(|member| drain(member).len()).collect();
        assert_eq!(counts, [0, 0, 2, 2, 2, 2, 2, 2]);

        // All members away: the first parked member with a QoS 1 subscription keeps it.
        for (n, member) in members.iter_mut().enumerate().skip(2) {
            router.park(&format!("m{n}"), n as u64, FAR, Vec::new(), &mut member.deliveries);
        }
        router.disconnect("m0", 100, Vec::new(), 0);
        let writes = publish(&router, 99).writes;
        let queued: Vec<&str> = writes
            .iter()
            .filter_map(|w| if let SessionWrite::Queue { client_id, .. } = w { Some(client_id.as_str()) } else { None })
            .collect();
        assert_eq!(queued.len(), 1, "one parked member keeps it: {queued:?}");
    }

    #[test]
    fn a_resuming_connection_gets_every_message_published_around_its_connect() {
        // A publisher races a client that resumes and parks its session over and over:
        // each message must end up exactly once in a replay, a live queue or the parked queue.
        let router = Arc::new(sharded(1_000_000));
        let mut first = connect(&router, "sub", 0, false, 100_000);
        router.subscribe("sub", "t/#", Subscription::with_qos(QoS::AtLeastOnce));
        router.park("sub", 0, FAR, Vec::new(), &mut first.deliveries);
        const MESSAGES: u64 = 20_000;
        let publisher = {
            let router = router.clone();
            std::thread::spawn(move || (0..MESSAGES).for_each(|n| drop(publish(&router, n))))
        };
        let mut seen = Vec::new();
        let mut connection = 1;
        while !publisher.is_finished() || connection < 50 {
            let mut client = connect(&router, "sub", connection, false, 100_000);
            assert!(client.connected.session_present);
            seen.extend(client.connected.replay.drain(..).map(|(_, m)| number(&m)));
            seen.extend(drain(&mut client).iter().map(|d| number(&d.message)));
            // Whatever is still queued for the connection goes back to the parked session.
            router.park("sub", connection, FAR, Vec::new(), &mut client.deliveries);
            connection += 1;
        }
        publisher.join().unwrap();
        let last = connect(&router, "sub", connection, false, 100_000);
        seen.extend(last.connected.replay.iter().map(|(_, m)| number(m)));
        seen.sort_unstable();
        assert_eq!(seen, (0..MESSAGES).collect::<Vec<_>>(), "lost or duplicated across hand-overs");
    }

    #[test]
    fn shared_groups_and_sessions_change_while_publishes_run() {
        // Publishers hold the groups' lock and take shard locks; subscribing takes the
        // groups' lock after its shard's. Both at once must neither deadlock nor lose
        // the steady member's deliveries.
        let router = Arc::new(sharded(10));
        let mut steady = connect(&router, "steady", 0, true, 1_000_000);
        router.subscribe("steady", "$share/g/t/#", Subscription::with_qos(QoS::AtMostOnce));
        let churn = {
            let router = router.clone();
            std::thread::spawn(move || {
                for n in 1..2000u64 {
                    let id = format!("churn{}", n % 7);
                    let _client = connect(&router, &id, n, n % 3 == 0, 4);
                    router.subscribe(&id, "$share/g/t/#", Subscription::with_qos(QoS::AtMostOnce));
                    router.subscribe(&id, "t/#", Subscription::with_qos(QoS::AtMostOnce));
                    if n % 2 == 0 {
                        router.unsubscribe(&id, "$share/g/t/#");
                    }
                    router.disconnect(&id, n, Vec::new(), 0);
                }
            })
        };
        let mut published = 0;
        while !churn.is_finished() {
            router.publish(&Arc::new(message(published)), QoS::AtMostOnce, false, None, RESOURCE, Scope::All);
            published += 1;
        }
        churn.join().unwrap();
        let after = 100;
        for n in 0..after {
            publish(&router, n);
        }
        let got = drain(&mut steady).len() as u64;
        assert!(got >= after, "the steady member gets every message once the others left: {got}");
        assert!(got <= published + after, "never more than one copy per message");
    }

    #[test]
    fn a_message_queued_for_a_connection_that_ends_stays_with_its_session() {
        let router = sharded(100);
        let mut client = connect(&router, "c", 1, false, 16);
        router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtLeastOnce));
        let published = router.publish(&Arc::new(message(1)), QoS::AtLeastOnce, false, Some("c"), RESOURCE, Scope::All);
        assert!(published.writes.is_empty(), "the live connection takes it");
        // The connection closes before it sent the delivery (e.g. it refused the next packet).
        let writes = router.park("c", 1, FAR, Vec::new(), &mut client.deliveries);
        assert!(writes.iter().any(|w| matches!(w, SessionWrite::Queue { seq: 0, .. })), "{writes:?}");
        assert!(writes.iter().any(|w| matches!(w, SessionWrite::Save { .. })));
        let resumed = connect(&router, "c", 2, false, 16);
        assert!(resumed.connected.session_present);
        assert_eq!(resumed.connected.replay, vec![(0, Arc::new(message(1)))]);
    }

    #[test]
    fn a_cluster_node_stores_deliveries_to_live_persistent_sessions_until_they_park() {
        let router = sharded(100);
        router.store_live_deliveries();
        let mut stored = connect(&router, "stored", 1, false, 16);
        let mut unstored = connect(&router, "unstored", 2, false, 16);
        for id in ["stored", "unstored"] {
            router.subscribe(id, "t/#", Subscription::with_qos(QoS::AtLeastOnce));
        }
        assert!(router.live_record("stored", 3600).is_some(), "the live persistent session is stored");
        let published = publish(&router, 7);
        let queued: Vec<_> = published.writes.iter().filter(|w| matches!(w, SessionWrite::Queue { .. })).collect();
        assert!(
            matches!(&queued[..], [SessionWrite::Queue { client_id, seq: 0, .. }] if client_id == "stored"),
            "one record, for the stored session only: {:?}",
            published.writes
        );
        assert!(stored.deliveries.try_recv().is_none(), "sent only once its record is committed");
        assert_eq!(unstored.deliveries.try_recv().unwrap().stored, None, "positive control: delivered, not stored");
        let [Pending { delivery, .. }] = &published.stored_first[..] else {
            panic!("{:?}", published.stored_first.len())
        };
        assert_eq!((delivery.stored, number(&delivery.message)), (Some(0), 7));
        // Parked with a delivery queued after its commit: its record is kept, not written again.
        for pending in publish(&router, 8).stored_first {
            pending.sender.try_send(pending.delivery).unwrap();
        }
        let writes = router.park("stored", 1, FAR, Vec::new(), &mut stored.deliveries);
        assert!(!writes.iter().any(|w| matches!(w, SessionWrite::Queue { .. })), "{writes:?}");
        let resumed = connect(&router, "stored", 3, false, 16);
        assert_eq!(resumed.connected.replay, vec![(1, Arc::new(message(8)))]);
    }

    #[test]
    fn a_node_alone_does_not_store_live_deliveries() {
        let router = sharded(100);
        let mut client = connect(&router, "c", 1, false, 16);
        router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtLeastOnce));
        router.live_record("c", 3600);
        assert!(publish(&router, 1).writes.is_empty());
        assert_eq!(client.deliveries.try_recv().unwrap().stored, None);
    }

    #[test]
    fn no_local_skips_the_publishers_own_subscription_and_retain_as_published_keeps_the_flag() {
        let router = sharded(100);
        let mut own = connect(&router, "own", 1, true, 16);
        let mut other = connect(&router, "other", 2, true, 16);
        let mut plain = connect(&router, "plain", 3, true, 16);
        let no_local = Subscription { qos: QoS::AtLeastOnce, no_local: true, retain_as_published: true };
        router.subscribe("own", "t/#", no_local);
        router.subscribe("other", "t/#", no_local);
        router.subscribe("plain", "t/a", Subscription::with_qos(QoS::AtMostOnce));
        router.publish(&Arc::new(message(1)), QoS::AtLeastOnce, true, Some("own"), RESOURCE, Scope::All);
        assert!(drain(&mut own).is_empty(), "No Local: not sent to its publisher");
        let got = drain(&mut other);
        assert_eq!(got.len(), 1, "the same subscription of another client gets it");
        assert!(got[0].retain, "Retain As Published keeps RETAIN=1");
        assert_eq!(got[0].qos, QoS::AtLeastOnce);
        let got = drain(&mut plain);
        assert!(!got[0].retain, "without Retain As Published a live copy has RETAIN=0");
        assert_eq!(got[0].qos, QoS::AtMostOnce);
        // Another client's publish reaches the No Local subscriber.
        router.publish(&Arc::new(message(2)), QoS::AtLeastOnce, false, Some("other"), RESOURCE, Scope::All);
        assert_eq!(drain(&mut own).len(), 1);
        assert_eq!(router.subscribe("own", "t/#", no_local), Some(false), "an existing subscription is not new");
        assert_eq!(router.subscribe("own", "t/b", no_local), Some(true));
    }

    #[test]
    fn subscribing_again_replaces_the_options_deliveries_use() {
        let router = sharded(10);
        let mut client = connect(&router, "c", 1, true, 16);
        assert_eq!(router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtMostOnce)), Some(true));
        publish(&router, 1);
        assert_eq!(drain(&mut client)[0].qos, QoS::AtMostOnce, "positive control: the first grant applies");
        assert_eq!(router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtLeastOnce)), Some(false));
        publish(&router, 2);
        let got = drain(&mut client);
        assert_eq!((got.len(), got[0].qos), (1, QoS::AtLeastOnce));
    }

    #[test]
    fn subscription_options_survive_storage() {
        for subscription in [
            Subscription::with_qos(QoS::AtMostOnce),
            Subscription { qos: QoS::AtLeastOnce, no_local: true, retain_as_published: false },
            Subscription { qos: QoS::AtLeastOnce, no_local: false, retain_as_published: true },
        ] {
            assert_eq!(Subscription::from_byte(subscription.to_byte()), subscription);
        }
        assert_eq!(Subscription::from_byte(1), Subscription::with_qos(QoS::AtLeastOnce), "stored plain QoS");
    }

    #[tokio::test]
    async fn the_first_signal_wakes_a_waiting_connection_and_stays_the_reason() {
        let control = Control::new();
        let waiter = tokio::spawn({
            let control = control.clone();
            async move { control.signalled().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(control.current(), None);
        control.signal(Signal::Revoked);
        control.signal(Signal::TakenOver);
        assert_eq!(waiter.await.unwrap(), Signal::Revoked);
        assert_eq!(control.current(), Some(Signal::Revoked));
        assert_eq!(control.signalled().await, Signal::Revoked, "a later wait sees it at once");
    }

    #[test]
    fn take_over_and_delete_connection_reach_a_connection_whose_queue_is_full() {
        let router = sharded(100);
        let old = connect(&router, "c", 1, true, 1);
        router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtMostOnce));
        publish(&router, 1);
        let full = publish(&router, 2);
        assert_eq!(full.full.len(), 1, "the old connection's queue is full");
        let mut new = connect(&router, "c", 2, true, 1);
        assert_eq!(old.control.current(), Some(Signal::TakenOver));
        assert_eq!(new.control.current(), None, "positive control: the new connection is not told to leave");
        router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtMostOnce));
        publish(&router, 3);
        publish(&router, 4);
        assert!(router.kick("c", true, false));
        assert_eq!(new.control.current(), Some(Signal::Kicked { clean_session: true, prevent_will: false }));
        // The first signal stays the reason.
        assert_eq!(old.control.current(), Some(Signal::TakenOver));
        assert_eq!(drain(&mut new).len(), 1);
    }

    #[test]
    fn a_parked_queue_appends_one_write_per_message_and_drops_the_oldest_past_its_limit() {
        let router = sharded(3);
        let mut client = connect(&router, "c", 1, false, 16);
        router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtLeastOnce));
        router.park("c", 1, FAR, Vec::new(), &mut client.deliveries);
        for n in 0..5 {
            let writes = publish(&router, n).writes;
            let queued = writes.iter().filter(|w| matches!(w, SessionWrite::Queue { .. })).count();
            let dropped: Vec<u64> = writes
                .iter()
                .filter_map(|w| if let SessionWrite::Dequeue { seq, .. } = w { Some(*seq) } else { None })
                .collect();
            assert_eq!(queued, 1, "one record per queued message");
            assert_eq!(dropped, if n >= 3 { vec![n - 3] } else { vec![] });
        }
        let resumed = connect(&router, "c", 2, false, 16);
        assert_eq!(resumed.connected.replay.iter().map(|(_, m)| number(m)).collect::<Vec<_>>(), vec![2, 3, 4]);
    }

    #[test]
    fn a_clean_start_discards_the_stored_session_and_its_queue() {
        let router = sharded(10);
        let mut client = connect(&router, "c", 1, false, 16);
        router.subscribe("c", "t/#", Subscription::with_qos(QoS::AtLeastOnce));
        router.park("c", 1, FAR, Vec::new(), &mut client.deliveries);
        publish(&router, 7);
        let clean = connect(&router, "c", 2, true, 16);
        assert!(!clean.connected.session_present);
        assert!(clean.connected.replay.is_empty());
        assert!(clean.connected.writes.contains(&SessionWrite::Forget { client_id: "c".into() }));
        assert!(clean.connected.writes.contains(&SessionWrite::Dequeue { client_id: "c".into(), seq: 0 }));
        assert!(publish(&router, 8).writes.is_empty(), "the old subscription is gone");
    }

    #[test]
    fn version_numbers_grow_per_client_id_and_are_forgotten_an_hour_after_it_left() {
        let router = sharded(10);
        for n in 0..1000u64 {
            let id = format!("c{n}");
            let client = connect(&router, &id, n, true, 1);
            assert_eq!(client.connected.version, 1);
            router.disconnect(&id, n, Vec::new(), 0);
        }
        let again = connect(&router, "c1", 5000, true, 1);
        assert_eq!(again.connected.version, 2, "monotonic while remembered");
        router.disconnect("c1", 5000, Vec::new(), 10);
        assert_eq!(router.remembered(), 1000);
        router.expire(VERSION_MEMORY_MS - 1);
        assert_eq!(router.remembered(), 1000, "positive control: kept within the hour");
        router.expire(VERSION_MEMORY_MS + 10);
        assert_eq!(router.remembered(), 0, "nothing kept for client ids gone an hour");
    }

    #[test]
    fn version_numbers_count_on_from_another_node() {
        let (here, there) = (Router::new(10), Router::new(10));
        for n in 0..3 {
            connect(&there, "moving", n, true, 1);
        }
        assert_eq!(there.version_of("moving"), 3);
        here.note_version("moving", there.version_of("moving"), 0);
        assert_eq!(connect(&here, "moving", 10, true, 1).connected.version, 4, "one more than the other node's");
        here.note_version("moving", 2, 0);
        here.disconnect("moving", 10, Vec::new(), 0);
        assert_eq!(connect(&here, "moving", 11, true, 1).connected.version, 5, "an older number changes nothing");
        here.note_version("fresh", 0, 0);
        assert_eq!(connect(&here, "fresh", 12, true, 1).connected.version, 1, "positive control: a new client id");
    }
}
