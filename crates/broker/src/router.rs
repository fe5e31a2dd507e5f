//! Who is connected and what they subscribed to. Deliveries are checked against
//! each subscriber's current permissions (iot:Receive) before they are queued.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use ferrocore_mqtt::{QoS, topic};
use ferrocore_registry::Permissions;
use tokio::sync::mpsc;

use crate::Identity;
use crate::message::Message;
use crate::sessions::StoredSession;

/// A connection's permissions, replaced when the registry changes.
pub type PermissionsCell = Arc<RwLock<Arc<Permissions>>>;

pub fn current(cell: &PermissionsCell) -> Arc<Permissions> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What a connection task is told to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// `retain` is set only on the stored copy sent at subscribe time.
    Deliver { message: Message, qos: QoS, retain: bool },
    /// Another connection took over this client id.
    TakenOver,
    /// Its certificate or the policy that let it connect was withdrawn.
    Revoked,
    /// DeleteConnection: leave, discarding the session when `clean_session`,
    /// without the will when `prevent_will`.
    Kicked { clean_session: bool, prevent_will: bool },
}

/// A connected client, as the router and the revalidation task see it.
#[derive(Clone)]
pub struct ClientEntry {
    pub client_id: String,
    pub connection: u64,
    pub identity: Identity,
    pub permissions: PermissionsCell,
    pub sender: mpsc::Sender<Outgoing>,
}

struct Client {
    entry: ClientEntry,
    subscriptions: HashMap<String, QoS>,
}

/// A persistent session whose client is away.
struct Offline {
    session: StoredSession,
    permissions: PermissionsCell,
}

/// The online members of one shared subscription (`$share/<group>/<filter>`).
struct SharedGroup {
    filter: String,
    members: Vec<String>,
    /// Where the round-robin over members continues.
    next: usize,
}

/// The connected clients and an index of their subscriptions: topic filters
/// without wildcards by exact topic, the others scanned once per distinct filter,
/// shared subscriptions by their whole `$share/<group>/<filter>` string.
#[derive(Default)]
struct Table {
    clients: HashMap<String, Client>,
    exact: HashMap<String, HashSet<String>>,
    wildcard: HashMap<String, HashSet<String>>,
    shared: HashMap<String, SharedGroup>,
}

/// The filter of a shared subscription, for subscriptions the gateway accepted.
fn shared_filter(subscription: &str) -> Option<&str> {
    topic::shared_subscription(subscription).and_then(Result::ok).map(|(_, filter)| filter)
}

impl Table {
    fn index(&mut self, filter: &str) -> &mut HashMap<String, HashSet<String>> {
        if filter.contains(['+', '#']) { &mut self.wildcard } else { &mut self.exact }
    }

    fn add_filter(&mut self, client_id: &str, filter: &str) {
        if let Some(inner) = shared_filter(filter) {
            let group = self.shared.entry(filter.to_string()).or_insert_with(|| SharedGroup {
                filter: inner.to_string(),
                members: Vec::new(),
                next: 0,
            });
            if !group.members.iter().any(|m| m == client_id) {
                group.members.push(client_id.to_string());
            }
            return;
        }
        self.index(filter).entry(filter.to_string()).or_default().insert(client_id.to_string());
    }

    fn remove_filter(&mut self, client_id: &str, filter: &str) {
        if shared_filter(filter).is_some() {
            if let Some(group) = self.shared.get_mut(filter) {
                group.members.retain(|m| m != client_id);
                if group.members.is_empty() {
                    self.shared.remove(filter);
                }
            }
            return;
        }
        let index = self.index(filter);
        if let Some(ids) = index.get_mut(filter) {
            ids.remove(client_id);
            if ids.is_empty() {
                index.remove(filter);
            }
        }
    }

    fn insert(&mut self, client: Client) {
        let id = client.entry.client_id.clone();
        for filter in client.subscriptions.keys() {
            self.add_filter(&id, filter);
        }
        self.clients.insert(id, client);
    }

    fn remove(&mut self, client_id: &str) -> Option<Client> {
        let client = self.clients.remove(client_id)?;
        for filter in client.subscriptions.keys() {
            self.remove_filter(client_id, filter);
        }
        Some(client)
    }

    /// Each client subscribed to `topic_name`, with the highest QoS it was granted.
    fn subscribers(&self, topic_name: &str) -> HashMap<&str, QoS> {
        let mut granted: HashMap<&str, QoS> = HashMap::new();
        let exact = self.exact.get(topic_name).map(|ids| (topic_name, ids));
        let wildcard = self.wildcard.iter().filter(|(filter, _)| topic::matches(filter, topic_name));
        for (filter, ids) in exact.into_iter().chain(wildcard.map(|(f, ids)| (f.as_str(), ids))) {
            for id in ids {
                let Some(qos) = self.clients.get(id).and_then(|c| c.subscriptions.get(filter)) else { continue };
                let best = granted.entry(id.as_str()).or_insert(*qos);
                *best = (*best).max(*qos);
            }
        }
        granted
    }
}

/// Queues a message for a client when its iot:Receive allows it; false when it does not.
fn offer(
    client: &Client,
    message: &Message,
    qos: QoS,
    receive_resource: &str,
    full: &mut Vec<(mpsc::Sender<Outgoing>, Outgoing)>,
) -> bool {
    if !current(&client.entry.permissions).allows("iot:Receive", receive_resource) {
        metrics::counter!("ferrocore_mqtt_authorization_denied_total", "action" => "iot:Receive").increment(1);
        return false;
    }
    let delivery = Outgoing::Deliver { message: message.clone(), qos, retain: false };
    if let Err(mpsc::error::TrySendError::Full(delivery)) = client.entry.sender.try_send(delivery) {
        full.push((client.entry.sender.clone(), delivery));
    }
    true
}

#[derive(Default)]
pub struct Router {
    clients: Mutex<Table>,
    /// Lifecycle `versionNumber` per client id: one more on every connect.
    versions: Mutex<HashMap<String, u64>>,
    offline: Mutex<HashMap<String, Offline>>,
}

/// Sessions changed by a publish, to be made durable before it is acknowledged.
pub type ChangedSessions = Vec<(String, StoredSession)>;

/// What a publish left to do outside the router's lock: sessions to store, and
/// deliveries whose subscriber queue was full (the publisher waits a little for
/// room, so a flood slows down to what subscribers take instead of being dropped).
#[derive(Default)]
pub struct Published {
    pub changed: ChangedSessions,
    pub full: Vec<(mpsc::Sender<Outgoing>, Outgoing)>,
}

impl Router {
    /// Registers a connection with the subscriptions of a resumed session, and
    /// answers its lifecycle version number and whether a session was present. An
    /// older connection with the same client id is told to leave; when `resume`, its
    /// subscriptions carry over.
    pub fn connect(&self, entry: ClientEntry, resumed: Option<HashMap<String, QoS>>, resume: bool) -> (u64, bool) {
        let version = {
            let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            let version = versions.entry(entry.client_id.clone()).or_insert(0);
            *version += 1;
            *version
        };
        let client_id = entry.client_id.clone();
        let mut table = self.lock();
        let previous = table.remove(&client_id);
        let mut present = resumed.is_some();
        let mut subscriptions = resumed.unwrap_or_default();
        if let Some(previous) = previous {
            let _ = previous.entry.sender.try_send(Outgoing::TakenOver);
            if resume {
                present = true;
                subscriptions.extend(previous.subscriptions);
            }
        }
        table.insert(Client { entry, subscriptions });
        (version, present)
    }

    /// Loads the sessions of disconnected clients (at start-up).
    pub fn load_offline(&self, sessions: Vec<(String, StoredSession, PermissionsCell)>) {
        let mut offline = self.offline_lock();
        for (client_id, session, permissions) in sessions {
            offline.insert(client_id, Offline { session, permissions });
        }
    }

    /// Takes a client's stored session (expired or not) off the offline list.
    pub fn take_session(&self, client_id: &str) -> Option<StoredSession> {
        self.offline_lock().remove(client_id).map(|offline| offline.session)
    }

    /// Parks a persistent session whose connection ended, unless a newer
    /// connection took the client id; answers the session to store.
    /// `unacknowledged` (QoS 1 messages sent but not acknowledged) are redelivered first.
    pub fn park(
        &self,
        client_id: &str,
        connection: u64,
        identity: &Identity,
        expires_at_ms: u64,
        unacknowledged: Vec<Message>,
    ) -> Option<StoredSession> {
        let mut table = self.lock();
        if table.clients.get(client_id).is_none_or(|c| c.entry.connection != connection) {
            return None;
        }
        let client = table.remove(client_id)?;
        let session = StoredSession {
            identity: identity.clone(),
            subscriptions: client.subscriptions.iter().map(|(f, q)| (f.clone(), *q as u8)).collect(),
            queue: unacknowledged,
            expires_at_ms,
        };
        self.offline_lock()
            .insert(client_id.to_string(), Offline { session: session.clone(), permissions: client.entry.permissions });
        Some(session)
    }

    /// Drops expired sessions; answers their client ids.
    pub fn expire(&self, now_ms: u64) -> Vec<String> {
        let mut offline = self.offline_lock();
        let expired: Vec<String> =
            offline.iter().filter(|(_, o)| o.session.expires_at_ms <= now_ms).map(|(id, _)| id.clone()).collect();
        for id in &expired {
            offline.remove(id);
        }
        expired
    }

    fn offline_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Offline>> {
        self.offline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the client, unless a newer connection already took its id.
    pub fn disconnect(&self, client_id: &str, connection: u64) {
        let mut table = self.lock();
        if table.clients.get(client_id).is_some_and(|c| c.entry.connection == connection) {
            table.remove(client_id);
        }
    }

    pub fn clients(&self) -> Vec<ClientEntry> {
        self.lock().clients.values().map(|c| c.entry.clone()).collect()
    }

    pub fn subscribe(&self, client_id: &str, filter: &str, qos: QoS) {
        let mut table = self.lock();
        if let Some(client) = table.clients.get_mut(client_id)
            && client.subscriptions.insert(filter.to_string(), qos).is_none()
        {
            table.add_filter(client_id, filter);
        }
    }

    /// Queues the retained copy of a topic for one client, if its iot:Receive allows it.
    pub fn deliver_retained(&self, client_id: &str, message: &Message, qos: QoS, receive_resource: &str) {
        let table = self.lock();
        let Some(client) = table.clients.get(client_id) else { return };
        if !current(&client.entry.permissions).allows("iot:Receive", receive_resource) {
            return;
        }
        let _ = client.entry.sender.try_send(Outgoing::Deliver { message: message.clone(), qos, retain: true });
    }

    /// Tells a connected client to leave (DeleteConnection); false when it is not connected.
    pub fn kick(&self, client_id: &str, clean_session: bool, prevent_will: bool) -> bool {
        let table = self.lock();
        let Some(client) = table.clients.get(client_id) else { return false };
        // A full queue must not keep the order from arriving: wait for room on a task.
        let sender = client.entry.sender.clone();
        tokio::spawn(async move { sender.send(Outgoing::Kicked { clean_session, prevent_will }).await });
        true
    }

    pub fn has_offline(&self, client_id: &str) -> bool {
        self.offline_lock().contains_key(client_id)
    }

    /// Forgets the persistent session of a disconnected client; false when it has none.
    pub fn discard_offline(&self, client_id: &str) -> bool {
        self.offline_lock().remove(client_id).is_some()
    }

    /// Whether the client may add (or renew) `filter` within `limit` subscriptions.
    pub fn can_subscribe(&self, client_id: &str, filter: &str, limit: usize) -> bool {
        self.lock()
            .clients
            .get(client_id)
            .is_some_and(|client| client.subscriptions.contains_key(filter) || client.subscriptions.len() < limit)
    }

    pub fn unsubscribe(&self, client_id: &str, filter: &str) -> bool {
        let mut table = self.lock();
        let removed = table.clients.get_mut(client_id).is_some_and(|client| client.subscriptions.remove(filter).is_some());
        if removed {
            table.remove_filter(client_id, filter);
        }
        removed
    }

    /// Queues a message for every subscriber allowed to receive it, and for one
    /// online member of each matching shared subscription (round-robin). QoS 1
    /// messages matching a QoS 1 subscription of a disconnected persistent session
    /// are kept for it (AWS's rule) — for a shared subscription only when no member
    /// is online — and those sessions are returned to be stored.
    pub fn publish(&self, message: &Message, qos: QoS, receive_resource: &str) -> Published {
        let topic_name = message.topic.as_str();
        let mut full = Vec::new();
        let mut served_groups = HashSet::new();
        {
            let mut table = self.lock();
            let table = &mut *table;
            for (client_id, granted) in table.subscribers(topic_name) {
                if let Some(client) = table.clients.get(client_id) {
                    offer(client, message, qos.min(granted), receive_resource, &mut full);
                }
            }
            let Table { clients, shared, .. } = table;
            for (subscription, group) in shared.iter_mut() {
                if !topic::matches(&group.filter, topic_name) {
                    continue;
                }
                let members = group.members.len();
                let served = (0..members).find(|step| {
                    let member = &group.members[(group.next + step) % members];
                    clients.get(member).is_some_and(|client| {
                        let granted = client.subscriptions.get(subscription).copied().unwrap_or(QoS::AtMostOnce);
                        offer(client, message, qos.min(granted), receive_resource, &mut full)
                    })
                });
                if let Some(step) = served {
                    group.next = (group.next + step + 1) % members;
                    served_groups.insert(subscription.clone());
                }
            }
        }
        let changed = if qos == QoS::AtLeastOnce {
            self.queue_offline(message, receive_resource, &served_groups)
        } else {
            Vec::new()
        };
        Published { changed, full }
    }

    /// Keeps a QoS 1 message for the disconnected persistent sessions that want it:
    /// their QoS 1 subscriptions, and one session per shared subscription that no
    /// online member took.
    fn queue_offline(&self, message: &Message, receive_resource: &str, served_groups: &HashSet<String>) -> ChangedSessions {
        let topic_name = message.topic.as_str();
        let mut changed = Vec::new();
        let mut queued_groups: HashSet<String> = HashSet::new();
        let mut offline = self.offline_lock();
        for (client_id, away) in offline.iter_mut() {
            let mut wants = false;
            for (subscription, granted) in &away.session.subscriptions {
                if *granted == 0 {
                    continue;
                }
                match shared_filter(subscription) {
                    Some(filter) => {
                        if topic::matches(filter, topic_name)
                            && !served_groups.contains(subscription)
                            && !queued_groups.contains(subscription)
                        {
                            wants = true;
                        }
                    }
                    None => wants |= !subscription.starts_with("$share/") && topic::matches(subscription, topic_name),
                }
            }
            if wants && current(&away.permissions).allows("iot:Receive", receive_resource) {
                for subscription in away.session.subscriptions.keys() {
                    if shared_filter(subscription).is_some_and(|filter| topic::matches(filter, topic_name)) {
                        queued_groups.insert(subscription.clone());
                    }
                }
                away.session.queue.push(message.clone());
                changed.push((client_id.clone(), away.session.clone()));
            }
        }
        changed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}
