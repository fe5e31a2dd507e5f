//! Persistent sessions of disconnected clients: their subscriptions and the QoS 1
//! messages queued for them, kept durably until the session expires.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ferrocore_mqtt::QoS;
use ferrocore_store::{Collection, Expect, RecordStore, StoreError, Write};
use serde::{Deserialize, Serialize};

/// A message waiting for a disconnected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub topic: String,
    pub payload: Bytes,
}

/// What a persistent session keeps while its client is away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSession {
    pub certificate_id: String,
    /// Filter → granted QoS (0 or 1).
    pub subscriptions: HashMap<String, u8>,
    pub queue: Vec<Queued>,
    /// Unix milliseconds after which the session is gone.
    pub expires_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Record {
    certificate_id: String,
    subscriptions: Vec<(String, u8)>,
    /// (topic, hex payload)
    queue: Vec<(String, String)>,
    expires_at_ms: u64,
}

impl StoredSession {
    fn encode(&self) -> Vec<u8> {
        let record = Record {
            certificate_id: self.certificate_id.clone(),
            subscriptions: self.subscriptions.iter().map(|(f, q)| (f.clone(), *q)).collect(),
            queue: self.queue.iter().map(|m| (m.topic.clone(), hex::encode(&m.payload))).collect(),
            expires_at_ms: self.expires_at_ms,
        };
        serde_json::to_vec(&record).expect("sessions always serialize")
    }

    fn decode(body: &[u8]) -> Option<Self> {
        let record: Record = serde_json::from_slice(body).ok()?;
        let queue = record
            .queue
            .into_iter()
            .map(|(topic, payload)| Some(Queued { topic, payload: Bytes::from(hex::decode(payload).ok()?) }))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            certificate_id: record.certificate_id,
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
        let session = StoredSession {
            certificate_id: "c".into(),
            subscriptions: [("a/#".to_string(), 1)].into(),
            queue: vec![Queued { topic: "a/b".into(), payload: Bytes::from_static(b"\x00\xffhi") }],
            expires_at_ms: 42,
        };
        assert_eq!(StoredSession::decode(&session.encode()), Some(session));
    }
}
