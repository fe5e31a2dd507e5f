//! Persistent sessions of disconnected clients, kept durably until they expire:
//! one record per session (identity, subscriptions, expiry) in `MqttSession`, and
//! one record per queued QoS 1 message in `MqttQueuedMessage`, appended when the
//! message is queued and deleted once it is delivered, so queuing costs one small
//! write whatever the queue's length. On a cluster node, live persistent sessions are
//! stored too, with a record per QoS 1 delivery until the client acknowledges it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ferrocore_store::{Collection, Expect, RecordStore, StoreError, Write};
use serde::{Deserialize, Serialize};

use crate::Identity;
use ferrocore_message::{Message, StoredExtras};

/// What a persistent session keeps besides its queue.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub identity: Identity,
    /// Filter → subscription options byte (QoS in bits 0–1, see `router::Subscription`);
    /// shared subscriptions keep their `$share/<group>/` prefix.
    pub subscriptions: Vec<(String, u8)>,
    /// Unix milliseconds after which the session is gone.
    pub expires_at_ms: u64,
    /// Set while the session's connection is live on a cluster node: its expiry
    /// interval, counted from when the session is found without its node.
    pub live_expiry_secs: Option<u64>,
    /// The lifecycle `versionNumber` of the client's last connect, so the node that
    /// takes the session counts on from it.
    pub version: u64,
}

/// A change to the stored sessions, made by the router under its lock and
/// committed by the caller before it acknowledges what caused it.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionWrite {
    Save {
        client_id: String,
        record: SessionRecord,
    },
    Forget {
        client_id: String,
    },
    Queue {
        client_id: String,
        seq: u64,
        message: Arc<Message>,
    },
    Dequeue {
        client_id: String,
        seq: u64,
    },
    /// The session moved here from the cluster node `node`, which stored it.
    Disown {
        client_id: String,
        node: String,
    },
}

impl SessionWrite {
    /// The writes that remove these stored queue records of a client.
    pub fn dequeues(client_id: &str, seqs: impl IntoIterator<Item = u64>) -> impl Iterator<Item = SessionWrite> {
        seqs.into_iter().map(move |seq| SessionWrite::Dequeue { client_id: client_id.to_string(), seq })
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    /// The certificate, or (with `access_key`) empty.
    certificate_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_key: Option<String>,
    subscriptions: Vec<(String, u8)>,
    /// Messages of sessions stored before queued messages had records of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    queue: Vec<QueuedRecord>,
    expires_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    live_expiry_secs: Option<u64>,
    #[serde(default)]
    version: u64,
    /// The cluster node that parked it (it queues the session's messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum QueuedRecord {
    /// Before MQTT 5 properties were kept: (topic, hex payload).
    Plain(String, String),
    Full {
        topic: String,
        /// Hex.
        payload: String,
        #[serde(default)]
        extras: StoredExtras,
    },
}

impl QueuedRecord {
    fn of(message: &Message) -> Self {
        Self::Full {
            topic: message.topic.clone(),
            payload: hex::encode(&message.payload),
            extras: StoredExtras::of(message),
        }
    }

    fn into_message(self) -> Option<Message> {
        match self {
            Self::Plain(topic, payload) => Some(Message::new(topic, Bytes::from(hex::decode(payload).ok()?))),
            Self::Full { topic, payload, extras } => {
                extras.into_message(topic, Bytes::from(hex::decode(payload).ok()?))
            }
        }
    }
}

impl SessionRecord {
    fn encode(&self, node: Option<&str>) -> Vec<u8> {
        let (certificate_id, access_key) = match &self.identity {
            Identity::Certificate(id) => (id.clone(), None),
            Identity::AccessKey(key) => (String::new(), Some(key.clone())),
        };
        let record = Record {
            certificate_id,
            access_key,
            subscriptions: self.subscriptions.clone(),
            queue: Vec::new(),
            expires_at_ms: self.expires_at_ms,
            live_expiry_secs: self.live_expiry_secs,
            version: self.version,
            node: node.map(str::to_string),
        };
        serde_json::to_vec(&record).expect("sessions always serialize")
    }

    /// The session, the messages stored inside it by older versions, and its node.
    /// A session stored while live is read as parked now: its node died or let it go.
    fn decode(body: &[u8], now_ms: u64) -> Option<(Self, Vec<Message>, Option<String>)> {
        let record: Record = serde_json::from_slice(body).ok()?;
        let legacy = record.queue.into_iter().map(QueuedRecord::into_message).collect::<Option<Vec<_>>>()?;
        let identity = match record.access_key {
            Some(key) => Identity::AccessKey(key),
            None => Identity::Certificate(record.certificate_id),
        };
        let expires_at_ms = match record.live_expiry_secs {
            Some(secs) => now_ms.saturating_add(secs.saturating_mul(1000)),
            None => record.expires_at_ms,
        };
        let session = Self {
            identity,
            subscriptions: record.subscriptions,
            expires_at_ms,
            live_expiry_secs: None,
            version: record.version,
        };
        Some((session, legacy, record.node))
    }
}

/// The key of a queued message: the client id's length (3 digits), the client id,
/// `/`, the sequence number (20 digits), so keys of one session sort in queue order
/// and no client id is a prefix of another's keys.
fn queued_key(client_id: &str, seq: u64) -> String {
    format!("{:03}{client_id}/{seq:020}", client_id.len())
}

fn parse_queued_key(key: &str) -> Option<(&str, u64)> {
    let length: usize = key.get(..3)?.parse().ok()?;
    let client_id = key.get(3..3 + length)?;
    let seq = key.get(3 + length..)?.strip_prefix('/')?.parse().ok()?;
    Some((client_id, seq))
}

/// A stored session as loaded, with its queue in order.
pub struct StoredSession {
    pub record: SessionRecord,
    pub queue: Vec<(u64, Message)>,
    /// The cluster node that stored it.
    pub node: Option<String>,
}

/// The key of a session's entry in the index by node (node ids hold no space).
fn node_key(node: &str, client_id: &str) -> String {
    format!("{node} {client_id}")
}

/// The setting that says the index by node holds every stored session.
const NODE_INDEX_BUILT: &str = "mqtt_session_node_index_built";

/// The durable side of persistent sessions.
pub struct SessionStore {
    store: Arc<dyn RecordStore>,
    /// In a cluster, this node's id: its sessions are the ones it parked.
    node: Option<String>,
}

impl SessionStore {
    pub fn new(store: Arc<dyn RecordStore>, node: Option<String>) -> Self {
        Self { store, node }
    }

    /// The stored session of one client id with its queue in order (a client that
    /// reconnects through another node of a cluster).
    pub async fn load_one(&self, client_id: &str) -> Result<Option<StoredSession>, StoreError> {
        let Some(record) = self.store.get(Collection::MqttSession, client_id).await? else {
            return Ok(None);
        };
        let Some((record, legacy, node)) = SessionRecord::decode(&record.body, crate::now_ms()) else {
            tracing::warn!(client_id, "skipping a stored session that does not decode");
            return Ok(None);
        };
        let mut queue: Vec<(u64, Message)> = legacy.into_iter().enumerate().map(|(i, m)| (i as u64, m)).collect();
        for (seq, stored) in self.queued(client_id).await? {
            let message =
                serde_json::from_slice::<QueuedRecord>(&stored.body).ok().and_then(QueuedRecord::into_message);
            queue.extend(message.map(|message| (seq, message)));
        }
        Ok(Some(StoredSession { record, queue, node }))
    }

    /// This node's id in a cluster.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Indexes by node the sessions stored before the index existed (once per store:
    /// the first cluster node to start does it).
    pub async fn build_node_index(&self) -> Result<(), StoreError> {
        if self.node.is_none() || self.store.get(Collection::Setting, NODE_INDEX_BUILT).await?.is_some() {
            return Ok(());
        }
        let mut entries = Vec::new();
        for record in self.scan(Collection::MqttSession).await? {
            if let Some((_, _, Some(node))) = SessionRecord::decode(&record.body, 0) {
                entries.push(Write::put(
                    Collection::MqttSessionNode,
                    node_key(&node, &record.key),
                    Expect::Anything,
                    vec![],
                ));
            }
        }
        tracing::info!(sessions = entries.len(), "indexing stored sessions by node");
        for chunk in entries.chunks(1000) {
            self.store.commit(chunk.to_vec()).await?;
        }
        let built = Write::put(Collection::Setting, NODE_INDEX_BUILT, Expect::Anything, b"true".to_vec());
        self.store.commit(vec![built]).await.map(drop)
    }

    /// The stored queue records of one client id, in order.
    async fn queued(&self, client_id: &str) -> Result<Vec<(u64, ferrocore_store::Record)>, StoreError> {
        let prefix = queued_key(client_id, 0);
        let prefix = &prefix[..prefix.len() - 20];
        let mut after = prefix.to_string();
        let mut queued = Vec::new();
        loop {
            let batch = self.store.list(Collection::MqttQueuedMessage, Some(&after), 500).await?;
            let Some(last) = batch.last() else { break };
            after = last.key.clone();
            for stored in batch {
                let Some((_, seq)) = parse_queued_key(&stored.key).filter(|_| stored.key.starts_with(prefix)) else {
                    return Ok(queued);
                };
                queued.push((seq, stored));
            }
        }
        Ok(queued)
    }

    async fn scan(&self, collection: Collection) -> Result<Vec<ferrocore_store::Record>, StoreError> {
        let mut records = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = self.store.list(collection, after.as_deref(), 1000).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.key.clone());
            records.extend(batch);
        }
        Ok(records)
    }

    /// The sessions a node of the cluster stored (it died, or it is this node
    /// starting), with their queues, found through the index by node; entries whose
    /// session moved on or is gone are deleted.
    pub async fn parked_by(&self, node: &str) -> Result<Vec<(String, StoredSession)>, StoreError> {
        let prefix = node_key(node, "");
        let (mut parked, mut stale) = (Vec::new(), Vec::new());
        let mut after = prefix.clone();
        'pages: loop {
            let batch = self.store.list(Collection::MqttSessionNode, Some(&after), 500).await?;
            let Some(last) = batch.last() else { break };
            after = last.key.clone();
            for entry in batch {
                let Some(client_id) = entry.key.strip_prefix(&prefix) else { break 'pages };
                match self.load_one(client_id).await? {
                    Some(session) if session.node.as_deref() == Some(node) => {
                        parked.push((client_id.to_string(), session));
                    }
                    _ => stale.push(Write::delete(Collection::MqttSessionNode, &entry.key, Expect::Anything)),
                }
            }
        }
        if !stale.is_empty() {
            self.store.commit(stale).await?;
        }
        Ok(parked)
    }

    /// Every stored session with its queue. Sessions stored by older versions (the
    /// queue inside the session record) are rewritten in the current form, and
    /// queued messages whose session is gone are deleted.
    pub async fn load_all(&self) -> Result<HashMap<String, StoredSession>, StoreError> {
        if let Some(node) = &self.node {
            // A cluster node's own sessions; another's are taken when its client connects here.
            return Ok(self.parked_by(node).await?.into_iter().collect());
        }
        let mut sessions: HashMap<String, StoredSession> = HashMap::new();
        let (mut writes, mut orphans) = (Vec::new(), Vec::new());
        for record in self.scan(Collection::MqttSession).await? {
            let Some((session, legacy, _)) = SessionRecord::decode(&record.body, crate::now_ms()) else {
                tracing::warn!(client_id = %record.key, "skipping a stored session that does not decode");
                continue;
            };
            let client_id = record.key;
            if !legacy.is_empty() {
                let queue: Vec<(u64, Message)> = legacy.into_iter().enumerate().map(|(i, m)| (i as u64, m)).collect();
                writes.extend(queue.iter().map(|(seq, message)| SessionWrite::Queue {
                    client_id: client_id.clone(),
                    seq: *seq,
                    message: Arc::new(message.clone()),
                }));
                writes.push(SessionWrite::Save { client_id: client_id.clone(), record: session.clone() });
                sessions.insert(client_id, StoredSession { record: session, queue, node: None });
            } else {
                sessions.insert(client_id, StoredSession { record: session, queue: Vec::new(), node: None });
            }
        }
        for record in self.scan(Collection::MqttQueuedMessage).await? {
            let parsed = parse_queued_key(&record.key);
            let message =
                serde_json::from_slice::<QueuedRecord>(&record.body).ok().and_then(QueuedRecord::into_message);
            match (parsed, message) {
                (Some((client_id, seq)), Some(message)) if sessions.contains_key(client_id) => {
                    if let Some(session) = sessions.get_mut(client_id) {
                        session.queue.push((seq, message));
                    }
                }
                _ => orphans.push(Write::delete(Collection::MqttQueuedMessage, &record.key, Expect::Anything)),
            }
        }
        for session in sessions.values_mut() {
            session.queue.sort_by_key(|(seq, _)| *seq);
        }
        if !orphans.is_empty() {
            tracing::info!(records = orphans.len(), "deleting queued messages whose session is gone");
            self.store.commit(orphans).await?;
        }
        self.apply(writes).await?;
        Ok(sessions)
    }

    /// Commits the writes in one batch; returns once they are durable.
    pub async fn apply(&self, writes: Vec<SessionWrite>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        // A forgotten session's queue goes with it: records of deliveries a cluster
        // node's live session stored are not all finished one by one when it ends.
        let mut forgotten_queues = Vec::new();
        for write in writes.iter().filter(|_| self.node.is_some()) {
            if let SessionWrite::Forget { client_id } = write {
                let queued = self.queued(client_id).await?;
                forgotten_queues.extend(queued.into_iter().map(|(seq, _)| (client_id.clone(), seq)));
            }
        }
        let forgotten_queues =
            forgotten_queues.into_iter().map(|(client_id, seq)| SessionWrite::Dequeue { client_id, seq });
        let mut indexed = Vec::new();
        let mut writes: Vec<Write> = writes
            .into_iter()
            .chain(forgotten_queues)
            .map(|write| match write {
                SessionWrite::Save { client_id, record } => {
                    if let Some(node) = &self.node {
                        let entry = node_key(node, &client_id);
                        indexed.push(Write::put(Collection::MqttSessionNode, entry, Expect::Anything, Vec::new()));
                    }
                    let body = record.encode(self.node.as_deref());
                    Write::put(Collection::MqttSession, &client_id, Expect::Anything, body)
                }
                SessionWrite::Forget { client_id } => {
                    if let Some(node) = &self.node {
                        let entry = node_key(node, &client_id);
                        indexed.push(Write::delete(Collection::MqttSessionNode, entry, Expect::Anything));
                    }
                    Write::delete(Collection::MqttSession, &client_id, Expect::Anything)
                }
                SessionWrite::Disown { client_id, node } => {
                    Write::delete(Collection::MqttSessionNode, node_key(&node, &client_id), Expect::Anything)
                }
                SessionWrite::Queue { client_id, seq, message } => {
                    let body = serde_json::to_vec(&QueuedRecord::of(&message)).expect("messages always serialize");
                    Write::put(Collection::MqttQueuedMessage, queued_key(&client_id, seq), Expect::Anything, body)
                }
                SessionWrite::Dequeue { client_id, seq } => {
                    Write::delete(Collection::MqttQueuedMessage, queued_key(&client_id, seq), Expect::Anything)
                }
            })
            .collect();
        writes.append(&mut indexed);
        self.store.commit(writes).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocore_store::SqliteStore;

    async fn store() -> (tempfile::TempDir, Arc<dyn RecordStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn RecordStore> = Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
        (dir, store)
    }

    fn record(identity: Identity) -> SessionRecord {
        SessionRecord {
            identity,
            subscriptions: vec![("a/#".into(), 1), ("$share/g/a".into(), 0x05)],
            expires_at_ms: 42,
            live_expiry_secs: None,
            version: 7,
        }
    }

    #[test]
    fn session_records_round_trip() {
        for identity in [Identity::Certificate("c".into()), Identity::AccessKey("AKID".into())] {
            let session = record(identity);
            assert_eq!(SessionRecord::decode(&session.encode(None), 0), Some((session, Vec::new(), None)));
        }
    }

    #[test]
    fn a_session_stored_while_live_expires_counting_from_when_it_is_read() {
        let live = SessionRecord { live_expiry_secs: Some(3600), ..record(Identity::Certificate("c".into())) };
        let (read, _, node) = SessionRecord::decode(&live.encode(Some("n1")), 1_000).unwrap();
        assert_eq!((read.expires_at_ms, read.live_expiry_secs, node.as_deref()), (3_601_000, None, Some("n1")));
        let parked = record(Identity::Certificate("c".into()));
        assert_eq!(SessionRecord::decode(&parked.encode(Some("n1")), 1_000).unwrap().0.expires_at_ms, 42);
    }

    #[test]
    fn queued_keys_sort_in_queue_order_and_never_mix_client_ids() {
        assert_eq!(parse_queued_key(&queued_key("a/b", 7)), Some(("a/b", 7)));
        assert!(queued_key("a", 9) < queued_key("a", 10));
        assert!(!queued_key("ab", 1).starts_with(&queued_key("a", 1)[..4]));
        assert_eq!(parse_queued_key("xyz"), None);
    }

    #[tokio::test]
    async fn queued_messages_are_stored_one_record_each_and_load_in_order() {
        let (_dir, store) = store().await;
        let sessions = SessionStore::new(store.clone(), None);
        let properties =
            ferrocore_mqtt::Properties { user_properties: vec![("k".into(), "v".into())], ..Default::default() };
        let second = Message::published("a/c", Bytes::from_static(b"x"), &properties, 7);
        sessions
            .apply(vec![
                SessionWrite::Save { client_id: "c1".into(), record: record(Identity::Certificate("c".into())) },
                SessionWrite::Queue { client_id: "c1".into(), seq: 10, message: Arc::new(second.clone()) },
                SessionWrite::Queue {
                    client_id: "c1".into(),
                    seq: 9,
                    message: Arc::new(Message::new("a/b", Bytes::from_static(b"\x00\xff"))),
                },
                SessionWrite::Queue {
                    client_id: "gone".into(),
                    seq: 1,
                    message: Arc::new(Message::new("a/b", Bytes::new())),
                },
            ])
            .await
            .unwrap();
        assert_eq!(store.list(Collection::MqttQueuedMessage, None, 10).await.unwrap().len(), 3);
        let loaded = sessions.load_all().await.unwrap();
        let queue = &loaded["c1"].queue;
        assert_eq!(queue.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(queue[1].1, second);
        // The message of a session that is gone was deleted; delivered ones go one by one.
        assert_eq!(store.list(Collection::MqttQueuedMessage, None, 10).await.unwrap().len(), 2);
        sessions.apply(vec![SessionWrite::Dequeue { client_id: "c1".into(), seq: 9 }]).await.unwrap();
        assert_eq!(sessions.load_all().await.unwrap()["c1"].queue.len(), 1);
    }

    #[tokio::test]
    async fn a_cluster_node_loads_its_own_sessions_and_takes_another_s_by_client_id() {
        let (_dir, store) = store().await;
        let (first, second) =
            (SessionStore::new(store.clone(), Some("n1".into())), SessionStore::new(store.clone(), Some("n2".into())));
        let queued = |client_id: &str, seq| SessionWrite::Queue {
            client_id: client_id.into(),
            seq,
            message: Arc::new(Message::new("t", Bytes::from(format!("{client_id}-{seq}")))),
        };
        first
            .apply(vec![
                SessionWrite::Save { client_id: "c".into(), record: record(Identity::Certificate("x".into())) },
                queued("c", 2),
                queued("c", 1),
                // A client id that sorts right after `c`'s queue keys never joins it.
                SessionWrite::Save { client_id: "c0".into(), record: record(Identity::Certificate("x".into())) },
                queued("c0", 0),
            ])
            .await
            .unwrap();
        assert_eq!(first.load_all().await.unwrap().len(), 2, "positive control: its own sessions");
        assert!(second.load_all().await.unwrap().is_empty(), "another node's sessions stay with it");
        assert_eq!(
            store.list(Collection::MqttQueuedMessage, None, 10).await.unwrap().len(),
            3,
            "none deleted as orphans"
        );
        let taken = second.load_one("c").await.unwrap().unwrap();
        let payloads: Vec<_> = taken.queue.iter().map(|(seq, m)| (*seq, m.payload.clone())).collect();
        assert_eq!(payloads, vec![(1, Bytes::from("c-1")), (2, Bytes::from("c-2"))]);
        assert!(second.load_one("unknown").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sessions_are_found_by_node_through_the_index_which_follows_them_when_they_move() {
        let (_dir, store) = store().await;
        let (first, second) =
            (SessionStore::new(store.clone(), Some("n1".into())), SessionStore::new(store.clone(), Some("n2".into())));
        let save = |client_id: &str| SessionWrite::Save {
            client_id: client_id.into(),
            record: record(Identity::Certificate("x".into())),
        };
        first.apply(vec![save("a"), save("b"), save("c")]).await.unwrap();
        let ids = |found: Vec<(String, StoredSession)>| found.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(second.parked_by("n1").await.unwrap()), ["a", "b", "c"]);
        // n2 takes `a` (the entry under n1 goes), `b` is forgotten.
        second.apply(vec![save("a"), SessionWrite::Disown { client_id: "a".into(), node: "n1".into() }]).await.unwrap();
        first.apply(vec![SessionWrite::Forget { client_id: "b".into() }]).await.unwrap();
        assert_eq!(ids(second.parked_by("n1").await.unwrap()), ["c"]);
        assert_eq!(ids(first.parked_by("n2").await.unwrap()), ["a"], "positive control: it moved");
        // An entry left behind (a session stored again elsewhere without its Disown) is
        // skipped and deleted when read.
        second.apply(vec![save("c")]).await.unwrap();
        assert!(second.parked_by("n1").await.unwrap().is_empty());
        let entries: Vec<String> =
            store.list(Collection::MqttSessionNode, None, 10).await.unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(entries, ["n2 a", "n2 c"]);
    }

    #[tokio::test]
    async fn sessions_stored_before_the_node_index_are_indexed_once() {
        let (_dir, store) = store().await;
        let body = record(Identity::Certificate("x".into())).encode(Some("n1"));
        store.commit(vec![Write::put(Collection::MqttSession, "old", Expect::Anything, body)]).await.unwrap();
        let node = SessionStore::new(store.clone(), Some("n2".into()));
        assert!(node.parked_by("n1").await.unwrap().is_empty(), "not indexed yet");
        node.build_node_index().await.unwrap();
        let found: Vec<String> = node.parked_by("n1").await.unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(found, ["old"]);
        assert!(store.get(Collection::Setting, NODE_INDEX_BUILT).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn sessions_stored_with_their_queue_inside_are_migrated() {
        let (_dir, store) = store().await;
        let old = br#"{"certificate_id":"c","subscriptions":[["a",1]],"queue":[["a","6869"],{"topic":"b","payload":"00"}],"expires_at_ms":9}"#;
        store.commit(vec![Write::put(Collection::MqttSession, "c1", Expect::Anything, old.to_vec())]).await.unwrap();
        let sessions = SessionStore::new(store.clone(), None);
        let loaded = sessions.load_all().await.unwrap();
        let expected = vec![
            (0, Message::new("a", Bytes::from_static(b"hi"))),
            (1, Message::new("b", Bytes::from_static(b"\x00"))),
        ];
        assert_eq!(loaded["c1"].queue, expected);
        assert_eq!(loaded["c1"].record.identity, Identity::Certificate("c".into()));
        let rewritten = store.get(Collection::MqttSession, "c1").await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&rewritten.body).contains("queue"));
        assert_eq!(store.list(Collection::MqttQueuedMessage, None, 10).await.unwrap().len(), 2);
        assert_eq!(sessions.load_all().await.unwrap()["c1"].queue, expected);
    }
}
