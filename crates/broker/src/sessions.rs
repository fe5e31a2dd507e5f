//! Persistent sessions of disconnected clients: their subscriptions and the QoS 1
//! messages queued for them, kept durably until the session expires.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ferrocore_mqtt::QoS;
use ferrocore_store::{Collection, Expect, RecordStore, StoreError, Write};
use serde::{Deserialize, Serialize};

use crate::Identity;
use crate::message::{Message, StoredExtras};

/// What a persistent session keeps while its client is away.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub identity: Identity,
    /// Filter → granted QoS (0 or 1); shared subscriptions keep their `$share/<group>/` prefix.
    pub subscriptions: HashMap<String, u8>,
    pub queue: Vec<Message>,
    /// Unix milliseconds after which the session is gone.
    pub expires_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Record {
    /// The certificate, or (with `access_key`) empty.
    certificate_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_key: Option<String>,
    subscriptions: Vec<(String, u8)>,
    queue: Vec<QueuedRecord>,
    expires_at_ms: u64,
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

impl StoredSession {
    fn encode(&self) -> Vec<u8> {
        let (certificate_id, access_key) = match &self.identity {
            Identity::Certificate(id) => (id.clone(), None),
            Identity::AccessKey(key) => (String::new(), Some(key.clone())),
        };
        let record = Record {
            certificate_id,
            access_key,
            subscriptions: self.subscriptions.iter().map(|(f, q)| (f.clone(), *q)).collect(),
            queue: self
                .queue
                .iter()
                .map(|m| QueuedRecord::Full {
                    topic: m.topic.clone(),
                    payload: hex::encode(&m.payload),
                    extras: StoredExtras::of(m),
                })
                .collect(),
            expires_at_ms: self.expires_at_ms,
        };
        serde_json::to_vec(&record).expect("sessions always serialize")
    }

    fn decode(body: &[u8]) -> Option<Self> {
        let record: Record = serde_json::from_slice(body).ok()?;
        let queue = record
            .queue
            .into_iter()
            .map(|queued| match queued {
                QueuedRecord::Plain(topic, payload) => Some(Message::new(topic, Bytes::from(hex::decode(payload).ok()?))),
                QueuedRecord::Full { topic, payload, extras } => {
                    extras.into_message(topic, Bytes::from(hex::decode(payload).ok()?))
                }
            })
            .collect::<Option<Vec<_>>>()?;
        let identity = match record.access_key {
            Some(key) => Identity::AccessKey(key),
            None => Identity::Certificate(record.certificate_id),
        };
        Some(Self {
            identity,
            subscriptions: record.subscriptions.into_iter().collect(),
            queue,
            expires_at_ms: record.expires_at_ms,
        })
    }

    pub fn qos_of(value: u8) -> QoS {
        if value >= 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce }
    }
}

/// The durable side of persistent sessions.
pub struct SessionStore {
    store: Arc<dyn RecordStore>,
}

impl SessionStore {
    pub fn new(store: Arc<dyn RecordStore>) -> Self {
        Self { store }
    }

    pub async fn load_all(&self) -> Result<HashMap<String, StoredSession>, StoreError> {
        let mut sessions = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let batch = self.store.list(Collection::MqttSession, after.as_deref(), 500).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.key.clone());
            for record in batch {
                if let Some(session) = StoredSession::decode(&record.body) {
                    sessions.insert(record.key, session);
                }
            }
        }
        Ok(sessions)
    }

    /// Writes the given sessions; returns once they are durable.
    pub async fn save(&self, sessions: Vec<(String, StoredSession)>) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let writes = sessions
            .iter()
            .map(|(client_id, session)| Write::put(Collection::MqttSession, client_id, Expect::Anything, session.encode()))
            .collect();
        self.store.commit(writes).await
    }

    pub async fn delete(&self, client_ids: Vec<String>) -> Result<(), StoreError> {
        if client_ids.is_empty() {
            return Ok(());
        }
        let writes = client_ids.iter().map(|id| Write::delete(Collection::MqttSession, id, Expect::Anything)).collect();
        self.store.commit(writes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_sessions_round_trip() {
        let mut properties = ferrocore_mqtt::Properties::default();
        properties.user_properties = vec![("k".into(), "v".into())];
        properties.message_expiry_interval = Some(60);
        let session = StoredSession {
            identity: Identity::Certificate("c".into()),
            subscriptions: [("a/#".to_string(), 1), ("$share/g/a".to_string(), 1)].into(),
            queue: vec![
                Message::new("a/b", Bytes::from_static(b"\x00\xffhi")),
                Message::published("a/c", Bytes::from_static(b"x"), &properties, 7),
            ],
            expires_at_ms: 42,
        };
        assert_eq!(StoredSession::decode(&session.encode()), Some(session.clone()));
        let by_key = StoredSession { identity: Identity::AccessKey("AKID".into()), ..session };
        assert_eq!(StoredSession::decode(&by_key.encode()), Some(by_key));
    }

    #[test]
    fn sessions_stored_before_properties_still_load() {
        let old = br#"{"certificate_id":"c","subscriptions":[["a",1]],"queue":[["a","6869"]],"expires_at_ms":9}"#;
        let session = StoredSession::decode(old).unwrap();
        assert_eq!(session.identity, Identity::Certificate("c".into()));
        assert_eq!(session.queue, vec![Message::new("a", Bytes::from_static(b"hi"))]);
    }
}
