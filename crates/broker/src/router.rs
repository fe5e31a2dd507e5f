//! Who is connected and what they subscribed to. Deliveries are checked against
//! each subscriber's current permissions (iot:Receive) before they are queued.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use ferrocore_mqtt::{QoS, topic};
use ferrocore_registry::Permissions;
use tokio::sync::mpsc;

use crate::sessions::{Queued, StoredSession};

/// A connection's permissions, replaced when the registry changes.
pub type PermissionsCell = Arc<RwLock<Arc<Permissions>>>;

pub fn current(cell: &PermissionsCell) -> Arc<Permissions> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What a connection task is told to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// `retain` is set only on the stored copy sent at subscribe time.
    Deliver { topic: String, payload: Bytes, qos: QoS, retain: bool },
    /// Another connection took over this client id.
    TakenOver,
    /// Its certificate or the policy that let it connect was withdrawn.
    Revoked,
}

/// A connected client, as the router and the revalidation task see it.
#[derive(Clone)]
pub struct ClientEntry {
    pub client_id: String,
    pub connection: u64,
    pub certificate_id: String,
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

/// The connected clients and an index of their subscriptions: topic filters
/// without wildcards by exact topic, the others scanned once per distinct filter.
#[derive(Default)]
struct Table {
    clients: HashMap<String, Client>,
    exact: HashMap<String, HashSet<String>>,
    wildcard: HashMap<String, HashSet<String>>,
}

impl Table {
    fn index(&mut self, filter: &str) -> &mut HashMap<String, HashSet<String>> {
        if filter.contains(['+', '#']) { &mut self.wildcard } else { &mut self.exact }
    }

    fn add_filter(&mut self, client_id: &str, filter: &str) {
        self.index(filter).entry(filter.to_string()).or_default().insert(client_id.to_string());
    }

    fn remove_filter(&mut self, client_id: &str, filter: &str) {
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
        certificate_id: &str,
        expires_at_ms: u64,
        unacknowledged: Vec<Queued>,
    ) -> Option<StoredSession> {
        let mut table = self.lock();
        if table.clients.get(client_id).is_none_or(|c| c.entry.connection != connection) {
            return None;
        }
        let client = table.remove(client_id)?;
        let session = StoredSession {
            certificate_id: certificate_id.to_string(),
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
    pub fn deliver_retained(&self, client_id: &str, topic_name: &str, payload: &Bytes, qos: QoS, receive_resource: &str) {
        let table = self.lock();
        let Some(client) = table.clients.get(client_id) else { return };
        if !current(&client.entry.permissions).allows("iot:Receive", receive_resource) {
            return;
        }
        let delivery = Outgoing::Deliver { topic: topic_name.to_string(), payload: payload.clone(), qos, retain: true };
        let _ = client.entry.sender.try_send(delivery);
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

    /// Queues a message for every subscriber allowed to receive it; QoS 1 messages
    /// matching a QoS 1 subscription of a disconnected persistent session are kept
    /// for it (AWS's rule), and those sessions are returned to be stored.
    pub fn publish(&self, topic_name: &str, payload: &Bytes, qos: QoS, receive_resource: &str) -> Published {
        let mut changed = Vec::new();
        let mut full = Vec::new();
        if qos == QoS::AtLeastOnce {
            let mut offline = self.offline_lock();
            for (client_id, away) in offline.iter_mut() {
                let wants = away.session.subscriptions.iter().any(|(filter, q)| *q >= 1 && topic::matches(filter, topic_name));
                if wants && current(&away.permissions).allows("iot:Receive", receive_resource) {
                    away.session.queue.push(Queued { topic: topic_name.to_string(), payload: payload.clone() });
                    changed.push((client_id.clone(), away.session.clone()));
                }
            }
        }
        let table = self.lock();
        for (client_id, granted) in table.subscribers(topic_name) {
            let Some(client) = table.clients.get(client_id) else { continue };
            if !current(&client.entry.permissions).allows("iot:Receive", receive_resource) {
                metrics::counter!("ferrocore_mqtt_authorization_denied_total", "action" => "iot:Receive").increment(1);
                continue;
            }
            let delivery =
                Outgoing::Deliver { topic: topic_name.to_string(), payload: payload.clone(), qos: qos.min(granted), retain: false };
            if let Err(mpsc::error::TrySendError::Full(delivery)) = client.entry.sender.try_send(delivery) {
                full.push((client.entry.sender.clone(), delivery));
            }
        }
        Published { changed, full }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}
